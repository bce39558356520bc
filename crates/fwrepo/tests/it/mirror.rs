//! A partner mirror end to end on loopback: an origin (`fwrepo serve --keys`), a mirror data
//! dir synced from it (`fwrepo mirror init | sync`), and `fwrepo serve --mirror` serving its
//! customers with the origin's tokens.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{Server, header, http};
use crate::{assert_one_line_error, bin, fwrepo};

const CREDENTIAL: &str = "partner-secret-0001";
const DOWNLOADER: &str = "partner-secret-0002";

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serve(args: &[&str]) -> Server {
    let mut child =
        Command::new(bin()).arg("serve").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("://").next().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line:?}");
    Server { child, addr }
}

struct Origin {
    data: String,
    keys: String,
    series: fwrepo_synth::Series,
    releases: Vec<fwrepo_synth::Release>,
    server: Server,
}

impl Origin {
    /// A signed origin with one release, a customer serial for its first model, a partner that
    /// may mirror that model and one that may not, auth documents published.
    fn new(dir: &Path) -> Origin {
        let data = dir.join("origin").display().to_string();
        let keys = dir.join("keys").display().to_string();
        ok(&fwrepo(&["keys", "generate", "--out", &keys]));
        ok(&fwrepo(&["keys", "rotate-issuer", "--keys", &keys]));
        ok(&fwrepo(&["init", "--data", &data, "--keys", &keys]));
        let mut series = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small());
        let first = series.next().unwrap();
        let model = first.components[0].models[0].clone();
        let records = dir.join("records");
        std::fs::create_dir_all(&records).unwrap();
        let serials = records.join("serials.csv");
        std::fs::write(&serials, format!("serial,model,warranty_end\nSRV0000001,{model},2099-12-31\n")).unwrap();
        let partners = records.join("partners.csv");
        std::fs::write(
            &partners,
            format!(
                "partner,name,level,status,models,may_mirror,credential_sha256\n\
                 P-1,Mirror Co,authorized,active,{model},true,{}\n\
                 P-2,Reseller,authorized,active,{model},false,{}\n",
                sha256_hex(CREDENTIAL.as_bytes()),
                sha256_hex(DOWNLOADER.as_bytes())
            ),
        )
        .unwrap();
        ok(&fwrepo(&[
            "entitlements",
            "import",
            "--data",
            &data,
            serials.to_str().unwrap(),
            partners.to_str().unwrap(),
        ]));
        let mut origin = Origin {
            server: serve(&["--data", &data, "--keys", &keys, "--listen", "127.0.0.1:0", "--refresh-secs", "1"]),
            data,
            keys,
            series,
            releases: Vec::new(),
        };
        origin.publish(dir, first);
        origin.changing(|| ok(&fwrepo(&["auth", "publish", "--data", &data_of(&origin), "--keys", &keys_of(&origin)])));
        origin
    }

    fn timestamp(&self) -> Vec<u8> {
        http(&self.server.addr, "GET", "/metadata/timestamp.json", &[], b"").2
    }

    /// Runs `f` (a write at the origin) and waits until the origin server serves its result.
    fn changing<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = self.timestamp();
        let r = f();
        wait_for("the origin to serve the new metadata", || self.timestamp() != before);
        r
    }

    fn publish(&mut self, dir: &Path, release: fwrepo_synth::Release) {
        let rdir = dir.join(format!("release{}", self.releases.len()));
        release.write_to(&rdir).unwrap();
        let manifest = rdir.join("release.toml");
        self.changing(|| {
            ok(&fwrepo(&["publish", "--data", &self.data, "--keys", &self.keys, manifest.to_str().unwrap()]))
        });
        self.releases.push(release);
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn customer_token(&self) -> String {
        let (status, _, body) = http(
            &self.server.addr,
            "POST",
            "/v1/tokens",
            &[("Content-Type", "application/json")],
            br#"{"serial":"SRV0000001"}"#,
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        format!("Bearer {}", v["token"].as_str().unwrap())
    }
}

fn data_of(o: &Origin) -> String {
    o.data.clone()
}

fn keys_of(o: &Origin) -> String {
    o.keys.clone()
}

fn credential_file(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

fn fetch_root(origin: &Origin, dir: &Path) -> String {
    let (status, _, root) = http(&origin.server.addr, "GET", "/metadata/1.root.json", &[], b"");
    assert_eq!(status, 200);
    let path = dir.join("1.root.json");
    std::fs::write(&path, root).unwrap();
    path.display().to_string()
}

fn sync_json(mirror: &str) -> serde_json::Value {
    let out = fwrepo(&["mirror", "sync", "--data", mirror, "--json", "--timeout-secs", "5"]);
    serde_json::from_str(ok(&out).trim()).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn origin_to_mirror_to_customer_incremental_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut origin = Origin::new(dir.path());
    let root = fetch_root(&origin, dir.path());
    let cred = credential_file(dir.path(), "partner.credential", CREDENTIAL);
    let mirror = dir.path().join("mirror").display().to_string();
    ok(&fwrepo(&[
        "mirror",
        "init",
        "--data",
        &mirror,
        "--upstream",
        &origin.url(),
        "--root",
        &root,
        "--credential-file",
        &cred,
    ]));

    // First sync: everything in scope crosses the wire once.
    let first = sync_json(&mirror);
    for key in ["wire_bytes", "chunk_bytes_fetched", "chunks_fetched", "targets_new", "timestamp_version", "seconds"] {
        assert!(first.get(key).is_some(), "--json lacks {key}: {first}");
    }
    let model = origin.releases[0].components[0].models[0].clone();
    let in_scope: Vec<&fwrepo_synth::Component> =
        origin.releases[0].components.iter().filter(|c| c.models.contains(&model)).collect();
    let distinct: std::collections::HashSet<_> = in_scope.iter().map(|c| blake3::hash(&c.data)).collect();
    // The firmware of the model plus the two auth documents.
    assert_eq!(first["targets_new"].as_u64().unwrap(), distinct.len() as u64 + 2, "{first}");
    assert!(first["chunks_fetched"].as_u64().unwrap() > 0);
    // Scope: the partner may mirror one model; firmware of other models is not synced, and its
    // mirror token cannot fetch it from the origin.
    let other = origin.releases[0]
        .components
        .iter()
        .find(|c| !c.models.contains(&model))
        .expect("the seeded release has firmware for other models");
    assert_eq!(first["targets_in_scope"].as_u64().unwrap(), distinct.len() as u64 + 2, "{first}");
    let (status, _, body) = http(
        &origin.server.addr,
        "POST",
        "/v1/tokens",
        &[("Content-Type", "application/json")],
        format!(r#"{{"partner_credential":"{CREDENTIAL}","scope":"mirror"}}"#).as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mirror_bearer = format!("Bearer {}", v["token"].as_str().unwrap());
    let other_path = format!("/v1/blobs/{}", blake3::hash(&other.data).to_hex());
    let ranged = [("Authorization", mirror_bearer.as_str()), ("Range", "bytes=0-99")];
    assert_eq!(http(&origin.server.addr, "GET", &other_path, &ranged, b"").0, 403);
    assert_eq!(http(&origin.server.addr, "GET", &format!("{other_path}/chunks"), &ranged[..1], b"").0, 403);
    // Chunks cross as delta frames (zstd-compressed where no base is held), counted on the wire.
    assert!(first["wire_bytes"].as_u64().unwrap() >= first["delta_bytes"].as_u64().unwrap());

    // Nothing changed upstream: a conditional timestamp request and the token exchange.
    let again = sync_json(&mirror);
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(again["chunks_fetched"], 0);
    assert!(again["wire_bytes"].as_u64().unwrap() < 4096, "{again}");

    let served = serve(&[
        "--data",
        &mirror,
        "--mirror",
        "--listen",
        "127.0.0.1:0",
        "--refresh-secs",
        "1",
        "--sync-interval",
        "1h",
    ]);
    let maddr = served.addr.as_str();
    let bearer = origin.customer_token();

    // The same metadata bytes as the origin.
    let (_, _, m_ts) = http(maddr, "GET", "/metadata/timestamp.json", &[], b"");
    let (_, _, o_ts) = http(&origin.server.addr, "GET", "/metadata/timestamp.json", &[], b"");
    assert_eq!(m_ts, o_ts);

    // A customer downloads, whole and ranged, with the origin's token.
    let comp = in_scope[0];
    let path = format!("/v1/blobs/{}", blake3::hash(&comp.data).to_hex());
    let (status, _, body) = http(maddr, "GET", &path, &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200);
    assert_eq!(body, comp.data);
    let (status, h, body) = http(maddr, "GET", &path, &[("Authorization", &bearer), ("Range", "bytes=10-1009")], b"");
    assert_eq!(status, 206);
    assert_eq!(body, &comp.data[10..1010]);
    assert_eq!(header(&h, "content-range"), Some(format!("bytes 10-1009/{}", comp.data.len()).as_str()));

    // The mirror issues no tokens and names the origin.
    let (status, _, body) =
        http(maddr, "POST", "/v1/tokens", &[("Content-Type", "application/json")], br#"{"serial":"SRV0000001"}"#);
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains(&origin.url()), "{}", String::from_utf8_lossy(&body));

    // Metrics and readiness of the mirror.
    let (status, _, metrics) = http(maddr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("fwrepo_mirror_last_success_seconds"));
    assert_eq!(http(maddr, "GET", "/readyz", &[], b"").0, 200);

    // A second release: only the chunks the mirror lacks are fetched.
    let next = origin.series.next().unwrap();
    origin.publish(dir.path(), next);
    let second = sync_json(&mirror);
    let new_blobs: Vec<&fwrepo_synth::Component> = origin.releases[1]
        .components
        .iter()
        .filter(|c| c.models.contains(&model) && !distinct.contains(&blake3::hash(&c.data)))
        .collect();
    assert!(!new_blobs.is_empty(), "the series changes a component of the model");
    let new_bytes: usize = new_blobs.iter().map(|c| c.data.len()).sum();
    let fetched = second["chunk_bytes_fetched"].as_u64().unwrap();
    assert!(fetched > 0 && (fetched as usize) < new_bytes, "fetched {fetched} of {new_bytes} new bytes: {second}");
    // The new chunks came as deltas against the stored previous versions: fewer bytes than
    // the chunks themselves.
    let deltas = second["delta_bytes"].as_u64().unwrap();
    assert!(deltas > 0 && deltas < fetched, "{deltas} bytes of deltas for {fetched} bytes of chunks: {second}");
    assert_eq!(second["timestamp_version"].as_u64().unwrap(), first["timestamp_version"].as_u64().unwrap() + 1);
    let changed = new_blobs[0];
    let new_path = format!("/v1/blobs/{}", blake3::hash(&changed.data).to_hex());
    wait_for("the new release at the mirror", || {
        let (status, _, body) = http(maddr, "GET", &new_path, &[("Authorization", &bearer)], b"");
        status == 200 && body == changed.data
    });
    // Nothing is fetched twice.
    let third = sync_json(&mirror);
    assert_eq!(third["chunks_fetched"], 0, "{third}");

    // A revocation at the origin reaches the mirror at its next sync.
    origin.changing(|| {
        ok(&fwrepo(&[
            "token",
            "revoke",
            "--data",
            &origin.data,
            "--subject",
            "serial:SRV0000001",
            "--keys",
            &origin.keys,
        ]))
    });
    assert_eq!(http(maddr, "GET", &path, &[("Authorization", &bearer)], b"").0, 200, "revoked before the sync");
    sync_json(&mirror);
    wait_for("the revocation at the mirror", || http(maddr, "GET", &path, &[("Authorization", &bearer)], b"").0 == 401);

    // Upstream down: the sync fails naming it, the mirror keeps serving.
    let status_before = ok(&fwrepo(&["mirror", "status", "--data", &mirror, "--json"]));
    let s: serde_json::Value = serde_json::from_str(status_before.trim()).unwrap();
    assert!(s["last_success"].as_i64().is_some());
    assert_eq!(s["missing"], serde_json::json!([]));
    drop(origin);
    let out = fwrepo(&["mirror", "sync", "--data", &mirror, "--timeout-secs", "2"]);
    assert_one_line_error(&out, "sync failed");
    assert_eq!(http(maddr, "GET", "/metadata/timestamp.json", &[], b"").0, 200);
    let s: serde_json::Value =
        serde_json::from_str(ok(&fwrepo(&["mirror", "status", "--data", &mirror, "--json"])).trim()).unwrap();
    assert_eq!(s["consecutive_failures"], 1, "{s}");
}

#[test]
fn a_partner_that_may_not_mirror_cannot_sync() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::new(dir.path());
    let root = fetch_root(&origin, dir.path());
    let cred = credential_file(dir.path(), "reseller.credential", DOWNLOADER);
    let mirror = dir.path().join("mirror").display().to_string();
    ok(&fwrepo(&[
        "mirror",
        "init",
        "--data",
        &mirror,
        "--upstream",
        &origin.url(),
        "--root",
        &root,
        "--credential-file",
        &cred,
    ]));
    let out = fwrepo(&["mirror", "sync", "--data", &mirror]);
    assert_one_line_error(&out, "mirror scope not permitted");
    // Nothing was switched to.
    let s: serde_json::Value =
        serde_json::from_str(ok(&fwrepo(&["mirror", "status", "--data", &mirror, "--json"])).trim()).unwrap();
    assert_eq!(s["timestamp_version"], 0);
    assert!(s["last_success"].is_null());
}

#[test]
fn mirror_init_refuses_a_readable_credential_and_a_newer_root() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::new(dir.path());
    let root = fetch_root(&origin, dir.path());
    let cred = credential_file(dir.path(), "partner.credential", CREDENTIAL);
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mirror = dir.path().join("mirror").display().to_string();
    let out = fwrepo(&[
        "mirror",
        "init",
        "--data",
        &mirror,
        "--upstream",
        &origin.url(),
        "--root",
        &root,
        "--credential-file",
        &cred,
    ]);
    assert_one_line_error(&out, "chmod 600");
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A root whose signature does not verify is refused.
    let mut bad = std::fs::read_to_string(&root).unwrap();
    bad = bad.replacen("\"version\":1", "\"version\":2", 1);
    let bad_path = dir.path().join("bad.root.json");
    std::fs::write(&bad_path, bad).unwrap();
    let out = fwrepo(&[
        "mirror",
        "init",
        "--data",
        &mirror,
        "--upstream",
        &origin.url(),
        "--root",
        bad_path.to_str().unwrap(),
        "--credential-file",
        &cred,
    ]);
    assert_one_line_error(&out, "root");
    assert!(!Path::new(&mirror).join("mirror.toml").exists());
}

#[test]
fn example_mirror_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/fwrepo-mirror.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config = fwrepo_server::ServerConfig::from_toml(path, &text).unwrap();
    assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(config.tls_key.as_deref(), Some(Path::new("/etc/fwrepo/tls/mirror.key")));
    assert_eq!(config.audit_log.as_deref(), Some(Path::new("/var/log/fwrepo/mirror-audit.jsonl")));
}
