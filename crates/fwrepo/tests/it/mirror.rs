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

/// `fwrepo mirror init` of `DIR/NAME` from `upstream` with the partner credential `cred`: the
/// mirror's path and what the command did.
fn try_init_mirror(dir: &Path, name: &str, upstream: &str, root: &str, cred: &str, extra: &[&str]) -> (String, Output) {
    let mirror = dir.join(name).display().to_string();
    let mut args =
        vec!["mirror", "init", "--data", &mirror, "--upstream", upstream, "--root", root, "--credential-file", cred];
    args.extend_from_slice(extra);
    let out = fwrepo(&args);
    (mirror, out)
}

/// [`try_init_mirror`], which must succeed.
fn init_mirror(dir: &Path, name: &str, upstream: &str, root: &str, cred: &str, extra: &[&str]) -> String {
    let (mirror, out) = try_init_mirror(dir, name, upstream, root, cred, extra);
    ok(&out);
    mirror
}

/// What every test starts from: a temporary dir holding an origin ([`Origin::new`]), the
/// origin's version-1 root fetched as a partner gets it, and partner P-1's credential file.
struct Setup {
    dir: tempfile::TempDir,
    origin: Origin,
    root: String,
    cred: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let origin = Origin::new(dir.path());
        let root = fetch_root(&origin, dir.path());
        let cred = credential_file(dir.path(), "partner.credential", CREDENTIAL);
        Setup { dir, origin, root, cred }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A mirror `DIR/NAME` of the origin with P-1's credential and the `mirror init` flags
    /// `extra`.
    fn mirror(&self, name: &str, extra: &[&str]) -> String {
        init_mirror(self.path(), name, &self.origin.url(), &self.root, &self.cred, extra)
    }

    /// The mirror `DIR/mirror` of the origin, synced once.
    fn synced_mirror(&self) -> String {
        let mirror = self.mirror("mirror", &[]);
        sync_json(&mirror);
        mirror
    }
}

/// `fwrepo serve --mirror` of `mirror` once its first background sync and collection are
/// done.
fn serve_synced(mirror: &str) -> Server {
    let since = unix_now();
    let served = serve_mirror(mirror);
    wait_background_sync(mirror, since);
    served
}

/// The first firmware of the origin's first release for the customer's model (the one P-1
/// may mirror) and its blob path.
fn customer_firmware(origin: &Origin) -> (&fwrepo_synth::Component, String) {
    let model = &origin.releases[0].components[0].models[0];
    let comp = origin.releases[0].components.iter().find(|c| c.models.contains(model)).unwrap();
    (comp, format!("/v1/blobs/{}", blake3::hash(&comp.data).to_hex()))
}

/// `bearer` downloads `path` whole from `addr`: the status and the body.
fn download(addr: &str, path: &str, bearer: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = http(addr, "GET", path, &[("Authorization", bearer)], b"");
    (status, body)
}

/// `fwrepo serve --mirror` of `mirror`, its background sync an hour apart (the first one runs
/// at start).
fn serve_mirror(mirror: &str) -> Server {
    serve(&["--data", mirror, "--mirror", "--listen", "127.0.0.1:0", "--refresh-secs", "1", "--sync-interval", "1h"])
}

fn status_json(mirror: &str) -> serde_json::Value {
    serde_json::from_str(ok(&fwrepo(&["mirror", "status", "--data", mirror, "--json"])).trim()).unwrap()
}

/// Waits until the background sync a mirror server starts with, and the collection after it,
/// have finished (the data dir's writer lock is free again), so a test's own sync does not
/// meet them.
fn wait_background_sync(mirror: &str, since: i64) {
    wait_for("the background sync and gc", || {
        // `mirror status` opens the data dir as its writer: it fails while they run.
        let out = fwrepo(&["mirror", "status", "--data", mirror, "--json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["last_gc"]
                .as_i64()
                .is_some_and(|t| t >= since)
    });
    wait_for("the writer lock", || {
        let f = std::fs::File::open(Path::new(mirror).join("LOCK")).unwrap();
        // SAFETY: flock on a descriptor this function owns; released when `f` closes.
        unsafe {
            use std::os::unix::io::AsRawFd;
            libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
        }
    });
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A `mirror` token of partner P-1 from the origin, as a bearer header value.
fn mirror_bearer(origin: &Origin) -> String {
    let (status, _, body) = http(
        &origin.server.addr,
        "POST",
        "/v1/tokens",
        &[("Content-Type", "application/json")],
        format!(r#"{{"partner_credential":"{CREDENTIAL}","scope":"mirror"}}"#).as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    format!("Bearer {}", v["token"].as_str().unwrap())
}

/// The chunks of `blobs` (their chunk indexes as the origin serves them) that the mirror's
/// store lacks, counted once, and their bytes: what a sync of them must fetch, no more, no less.
fn lacking(mirror: &str, origin: &Origin, bearer: &str, blobs: &[String]) -> (u64, u64) {
    let mut lens = std::collections::HashMap::new();
    let mut wanted = Vec::new();
    for b in blobs {
        let (status, _, body) =
            http(&origin.server.addr, "GET", &format!("/v1/blobs/{b}/chunks"), &[("Authorization", bearer)], b"");
        assert_eq!(status, 200, "chunk index of {b}");
        for (id, len) in fwrepo_store::ChunkIndex::parse(&body).unwrap().chunks {
            lens.insert(id, u64::from(len));
            wanted.push(id);
        }
    }
    let store = fwrepo_store::Store::open_read_only(Path::new(mirror)).unwrap();
    let missing = store.missing_chunks(&wanted).unwrap();
    (missing.len() as u64, missing.iter().map(|id| lens[id]).sum())
}

/// The in-scope firmware of release `n` that release `n - 1` does not have, as blob ids.
fn new_blobs(origin: &Origin, n: usize, model: &str) -> Vec<String> {
    let old: std::collections::HashSet<_> =
        origin.releases[..n].iter().flat_map(|r| r.components.iter().map(|c| blake3::hash(&c.data))).collect();
    let mut out: Vec<String> = origin.releases[n]
        .components
        .iter()
        .filter(|c| c.models.iter().any(|m| m == model) && !old.contains(&blake3::hash(&c.data)))
        .map(|c| blake3::hash(&c.data).to_hex().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The blob id of target `path` in the metadata `mirror` serves.
fn auth_blob(mirror: &str, path: &str) -> String {
    let opts = fwrepo_store::OpenOptions { read_only: true, extra_column_families: fwrepo_repo::column_families() };
    let store = std::sync::Arc::new(fwrepo_store::Store::open_with(Path::new(mirror), &opts).unwrap());
    let targets = fwrepo_repo::Repo::over(store).targets().unwrap();
    let t = targets.iter().find(|(p, _)| p.as_str() == path).unwrap_or_else(|| panic!("no target {path}")).1;
    t.custom.as_ref().unwrap()["blake3"].as_str().unwrap().to_owned()
}

fn fsck_clean(data: &str) {
    let out = fwrepo(&["fsck", "--data", data]);
    assert!(out.status.success(), "fsck: {}", String::from_utf8_lossy(&out.stdout));
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
    let setup = Setup::new();
    let mirror = setup.mirror("mirror", &[]);
    let Setup { dir, mut origin, .. } = setup;

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
    // A customer's `download` token cannot sync: the auth documents a sync needs are for
    // `mirror` tokens only.
    let customer = origin.customer_token();
    let revocations = format!("/v1/blobs/{}", auth_blob(&mirror, "auth/revocations.json"));
    let auth = [("Authorization", customer.as_str())];
    assert_eq!(http(&origin.server.addr, "GET", &revocations, &auth, b"").0, 403);
    let partner = [("Authorization", mirror_bearer.as_str())];
    assert_eq!(http(&origin.server.addr, "GET", &revocations, &partner, b"").0, 200);

    // Nothing changed upstream: 2.root.json (404) and a conditional timestamp request (304);
    // the token is reused.
    let again = sync_json(&mirror);
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(again["chunks_fetched"], 0);
    assert_eq!(again["requests"], 2, "{again}");
    assert!(again["wire_bytes"].as_u64().unwrap() < 1024, "{again}");

    let served = serve_synced(&mirror);
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

    // A second release: exactly the chunks the mirror's store lacks are fetched, each once.
    let next = origin.series.next().unwrap();
    origin.publish(dir.path(), next);
    let new_ids = new_blobs(&origin, 1, &model);
    let (lack_chunks, lack_bytes) = lacking(&mirror, &origin, &mirror_bearer, &new_ids);
    let second = sync_json(&mirror);
    let new_blobs: Vec<&fwrepo_synth::Component> = origin.releases[1]
        .components
        .iter()
        .filter(|c| c.models.contains(&model) && !distinct.contains(&blake3::hash(&c.data)))
        .collect();
    assert!(!new_blobs.is_empty(), "the series changes a component of the model");
    let new_bytes: usize = new_blobs.iter().map(|c| c.data.len()).sum();
    assert_eq!(second["targets_new"].as_u64().unwrap(), new_ids.len() as u64, "{second}");
    assert_eq!(second["chunks_fetched"].as_u64().unwrap(), lack_chunks, "{second}");
    assert_eq!(second["chunk_bytes_fetched"].as_u64().unwrap(), lack_bytes, "{second}");
    assert!(lack_bytes > 0 && (lack_bytes as usize) < new_bytes, "lacked {lack_bytes} of {new_bytes} new bytes");
    assert_eq!(lacking(&mirror, &origin, &mirror_bearer, &new_ids), (0, 0));
    // The new chunks came as deltas against the stored previous versions: fewer bytes than
    // the chunks themselves.
    let deltas = second["delta_bytes"].as_u64().unwrap();
    assert!(deltas > 0 && deltas < lack_bytes, "{deltas} bytes of deltas for {lack_bytes} bytes of chunks: {second}");
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
    let s = Setup::new();
    let cred = credential_file(s.path(), "reseller.credential", DOWNLOADER);
    let mirror = init_mirror(s.path(), "mirror", &s.origin.url(), &s.root, &cred, &[]);
    let out = fwrepo(&["mirror", "sync", "--data", &mirror]);
    assert_one_line_error(&out, "mirror scope not permitted");
    // Nothing was switched to.
    let status = status_json(&mirror);
    assert_eq!(status["timestamp_version"], 0);
    assert!(status["last_success"].is_null());
}

#[test]
fn mirror_init_refuses_a_readable_credential_and_a_newer_root() {
    let s = Setup::new();
    let init = |root: &str| try_init_mirror(s.path(), "mirror", &s.origin.url(), root, &s.cred, &[]);
    std::fs::set_permissions(&s.cred, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mirror, out) = init(&s.root);
    assert_one_line_error(&out, "chmod 600");
    std::fs::set_permissions(&s.cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A root whose signature does not verify is refused.
    let mut bad = std::fs::read_to_string(&s.root).unwrap();
    bad = bad.replacen("\"version\":1", "\"version\":2", 1);
    let bad_path = s.path().join("bad.root.json");
    std::fs::write(&bad_path, bad).unwrap();
    let (_, out) = init(bad_path.to_str().unwrap());
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

#[test]
fn mirror_of_a_mirror_gets_its_token_from_the_origin() {
    let s = Setup::new();
    let (origin, root, cred) = (&s.origin, &s.root, &s.cred);
    let first = s.mirror("first", &[]);
    let synced = sync_json(&first);
    let served_first = serve_synced(&first);
    let first_url = format!("http://{}", served_first.addr);

    // An upstream mirror issues no tokens: the sync says where they come from.
    let lost = init_mirror(s.path(), "lost", &first_url, root, cred, &[]);
    let out = fwrepo(&["mirror", "sync", "--data", &lost, "--timeout-secs", "5"]);
    assert_one_line_error(&out, &format!("{}/v1/tokens", origin.url()));

    // With the token from the origin, the second mirror gets everything from the first.
    let second = init_mirror(s.path(), "second", &first_url, root, cred, &["--token-url", &origin.url()]);
    let r = sync_json(&second);
    assert_eq!(r["targets_new"], synced["targets_new"], "{r}");
    assert_eq!(r["chunks_fetched"], synced["chunks_fetched"], "{r}");
    assert_eq!(r["timestamp_version"], synced["timestamp_version"], "{r}");
    fsck_clean(&second);

    let served_second = serve_synced(&second);
    let addr = served_second.addr.as_str();
    let (_, _, ts) = http(addr, "GET", "/metadata/timestamp.json", &[], b"");
    assert_eq!(ts, origin.timestamp(), "the origin's timestamp, byte for byte");
    let (comp, path) = customer_firmware(origin);
    assert_eq!(download(addr, &path, &origin.customer_token()), (200, comp.data.clone()));
}

#[test]
fn a_revoked_partner_cannot_sync_and_its_mirror_keeps_serving() {
    let s = Setup::new();
    let origin = &s.origin;
    let mirror = s.synced_mirror();
    let served = serve_synced(&mirror);
    origin.changing(|| {
        ok(&fwrepo(&["token", "revoke", "--data", &origin.data, "--subject", "partner:P-1", "--keys", &origin.keys]))
    });
    let out = fwrepo(&["mirror", "sync", "--data", &mirror, "--timeout-secs", "5"]);
    assert_one_line_error(&out, "token from");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 401") || stderr.contains("HTTP 403"), "{stderr}");
    assert_eq!(status_json(&mirror)["consecutive_failures"], 1);

    // The customers of the mirror are not affected.
    let (comp, path) = customer_firmware(origin);
    assert_eq!(download(&served.addr, &path, &origin.customer_token()), (200, comp.data.clone()));
    assert_eq!(http(&served.addr, "GET", "/readyz", &[], b"").0, 200);
}

/// A loopback TCP relay to `target` that counts the `POST /v1/tokens` requests through it.
struct TokenCounter {
    url: String,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenCounter {
    fn new(target: &str) -> TokenCounter {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (target, counted) = (target.to_owned(), count.clone());
        // Ends with the test process; each relayed connection ends when either side closes.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let mut server = TcpStream::connect(&target).unwrap();
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut s2, &mut c2));
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        // Request heads are small: a request line never straddles two reads here.
                        let seen = buf[..n].windows(16).filter(|w| w == b"POST /v1/tokens ").count();
                        counted.fetch_add(seen, Ordering::SeqCst);
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        TokenCounter { url, count }
    }

    fn requests(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_sync_reuses_its_token_until_the_origin_refuses_it() {
    let s = Setup::new();
    let origin = &s.origin;
    let mirror = s.synced_mirror();
    let token_file = Path::new(&mirror).join("mirror-token.json");
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);

    // The token service moves (here: behind a relay that counts): the stored token is not
    // the new one's, so the next sync exchanges once, the one after that not at all.
    let tokens = TokenCounter::new(&origin.server.addr);
    let config = Path::new(&mirror).join("mirror.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replace(&format!("token_url = \"{}\"", origin.url()), &format!("token_url = \"{}\"", tokens.url));
    assert_ne!(moved, text);
    std::fs::write(&config, moved).unwrap();
    sync_json(&mirror);
    assert_eq!(tokens.requests(), 1, "a token of another token service was used");
    let again = sync_json(&mirror);
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(tokens.requests(), 1, "an unchanged upstream cost a token exchange");

    // The origin revokes the partner: the stored token is refused, one fresh exchange is
    // refused too, and the sync fails saying so.
    origin.changing(|| {
        ok(&fwrepo(&["token", "revoke", "--data", &origin.data, "--subject", "partner:P-1", "--keys", &origin.keys]))
    });
    let out = fwrepo(&["mirror", "sync", "--data", &mirror, "--timeout-secs", "5"]);
    assert_one_line_error(&out, &format!("token from {}", tokens.url));
    assert_eq!(tokens.requests(), 2, "one fresh exchange after the refused token");
    assert!(!token_file.exists());
    assert_eq!(status_json(&mirror)["consecutive_failures"], 1);
}

#[test]
fn a_narrowed_mirror_answers_not_carried_for_other_models() {
    let s = Setup::new();
    let origin = &s.origin;
    // P-1 may mirror one model; the customer's serial is for that model too. Narrow the
    // mirror to a model of the release the partner may not mirror: nothing of the customer's
    // model is carried.
    let model = origin.releases[0].components[0].models[0].clone();
    let other = origin.releases[0]
        .components
        .iter()
        .flat_map(|c| c.models.iter())
        .find(|m| **m != model)
        .expect("the release has firmware for more than one model")
        .clone();
    let mirror = s.mirror("mirror", &["--models", &other]);
    let r = sync_json(&mirror);
    assert_eq!(r["targets_in_scope"], 2, "only the auth documents: {r}");
    let served = serve_synced(&mirror);
    let (_, path) = customer_firmware(origin);
    let bearer = origin.customer_token();
    let (status, body) = download(&served.addr, &path, &bearer);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "not_carried", "{v}");
    // The origin has it.
    assert_eq!(download(&origin.server.addr, &path, &bearer).0, 200);
}

#[test]
fn a_mirror_whose_timestamp_expired_is_not_ready() {
    let s = Setup::new();
    let origin = &s.origin;
    // The origin re-signs its timestamp with a few seconds of validity.
    // Long enough for the setup below on a loaded machine.
    const VALID_S: i64 = 30;
    origin.changing(|| {
        let config = fwrepo_tuf::Config {
            expiries: fwrepo_tuf::Expiries {
                timestamp: chrono::TimeDelta::seconds(VALID_S),
                ..fwrepo_tuf::Expiries::default()
            },
            ..fwrepo_tuf::Config::default()
        };
        let repo = fwrepo_repo::Repo::open(Path::new(&origin.data)).unwrap().with_config(config);
        let keys = Path::new(&origin.keys);
        let ring = fwrepo_repo::Keyring::load(keys, &fwrepo_repo::Role::ONLINE).unwrap();
        repo.refresh(&ring, keys, chrono::DateTime::from(std::time::SystemTime::now())).unwrap();
    });
    let signed_at = unix_now();
    let mirror = s.synced_mirror();
    let served = serve_mirror(&mirror);
    if unix_now() < signed_at + VALID_S - 2 {
        assert_eq!(http(&served.addr, "GET", "/readyz", &[], b"").0, 200);
    }
    let deadline = signed_at + VALID_S + 15;
    while http(&served.addr, "GET", "/readyz", &[], b"").0 != 503 {
        assert!(unix_now() < deadline, "still ready after the served timestamp expired");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(unix_now() >= signed_at + VALID_S - 3, "not ready before the timestamp expired");
    // Still serving what it has: metadata is public.
    assert_eq!(http(&served.addr, "GET", "/metadata/timestamp.json", &[], b"").0, 200);
}

/// Starts `fwrepo ARGS` and SIGKILLs it after `delay` unless it ended before; whether it ended.
fn kill_after(args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(bin()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let ended = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    child.wait().unwrap();
    ended
}

/// The served state is complete: every in-scope target the served metadata names is stored,
/// every stored blob and chunk verifies.
fn served_complete(mirror: &str) {
    assert_eq!(status_json(mirror)["missing"], serde_json::json!([]));
    fsck_clean(mirror);
}

#[test]
fn sync_killed_at_random_points_resumes_without_fetching_twice() {
    use rand::{Rng, SeedableRng};
    let setup = Setup::new();
    let mirror = setup.mirror("mirror", &[]);
    let Setup { dir, mut origin, .. } = setup;
    let t = Instant::now();
    let first = sync_json(&mirror);
    let took = t.elapsed();
    let model = origin.releases[0].components[0].models[0].clone();
    for _ in 0..2 {
        let next = origin.series.next().unwrap();
        origin.publish(dir.path(), next);
    }
    let bearer = mirror_bearer(&origin);
    let mut new_ids = new_blobs(&origin, 1, &model);
    new_ids.extend(new_blobs(&origin, 2, &model));
    new_ids.sort();
    new_ids.dedup();
    let (lack_chunks, _) = lacking(&mirror, &origin, &bearer, &new_ids);
    assert!(lack_chunks > 0);
    let before = first["timestamp_version"].as_u64().unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut ended = 0;
    for _ in 0..6 {
        let delay = took.mul_f64(rng.random_range(0.0..1.5));
        ended += u32::from(kill_after(&["mirror", "sync", "--data", &mirror, "--timeout-secs", "5"], delay));
        served_complete(&mirror);
        let now = status_json(&mirror)["timestamp_version"].as_u64().unwrap();
        assert!(now == before || now == before + 2, "served timestamp {now}: neither the old nor the new state");
        if now > before {
            break;
        }
    }
    // A clean sync fetches exactly what the killed ones had not stored yet.
    let (still_chunks, still_bytes) = lacking(&mirror, &origin, &bearer, &new_ids);
    assert!(still_chunks <= lack_chunks);
    let clean = sync_json(&mirror);
    assert_eq!(clean["chunks_fetched"].as_u64().unwrap(), still_chunks, "{clean} ({ended} rounds ended by themselves)");
    assert_eq!(clean["chunk_bytes_fetched"].as_u64().unwrap(), still_bytes, "{clean}");
    assert_eq!(lacking(&mirror, &origin, &bearer, &new_ids), (0, 0));
    assert_eq!(clean["timestamp_version"].as_u64().unwrap(), before + 2, "{clean}");
    served_complete(&mirror);
}

#[test]
fn mirror_gc_killed_at_random_points_never_breaks_the_served_state() {
    use rand::{Rng, SeedableRng};
    let setup = Setup::new();
    let mirror = setup.mirror("mirror", &["--gc-grace", "1h"]);
    let Setup { dir, mut origin, .. } = setup;
    sync_json(&mirror);
    let old_revocations = auth_blob(&mirror, "auth/revocations.json");
    // A new revocation list replaces the old one: the old blob is no longer named.
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
    let next = origin.series.next().unwrap();
    origin.publish(dir.path(), next);
    sync_json(&mirror);
    assert_ne!(auth_blob(&mirror, "auth/revocations.json"), old_revocations);
    let stats = |m: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&fwrepo(&["stats", "--data", m, "--json"]))).unwrap()
    };
    let blobs = stats(&mirror)["blobs"].as_u64().unwrap();

    // Within the grace period (mirror.toml: 1 h) nothing goes.
    let r: serde_json::Value =
        serde_json::from_str(ok(&fwrepo(&["mirror", "gc", "--data", &mirror, "--json"])).trim()).unwrap();
    assert_eq!(r["blobs_in_grace"], 1, "{r}");
    assert_eq!(r["blobs_expired"], 0, "{r}");
    assert_eq!(stats(&mirror)["blobs"].as_u64().unwrap(), blobs);

    // Garbage that shares chunks with served firmware, collected with no grace by collections
    // killed at random points.
    let model = origin.releases[0].components[0].models[0].clone();
    let live = origin.releases[1].components.iter().find(|c| c.models.contains(&model)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for round in 0..5u64 {
        let mut junk = live.data.clone();
        junk.extend(crate::image(100 + round, 2 << 20));
        let file = dir.path().join(format!("junk{round}.bin"));
        std::fs::write(&file, &junk).unwrap();
        ok(&fwrepo(&["ingest", "--data", &mirror, file.to_str().unwrap()]));
        let delay = Duration::from_millis(rng.random_range(0..400));
        kill_after(&["mirror", "gc", "--data", &mirror, "--grace", "0s"], delay);
        served_complete(&mirror);
    }
    let r: serde_json::Value =
        serde_json::from_str(ok(&fwrepo(&["mirror", "gc", "--data", &mirror, "--grace", "0s", "--json"])).trim())
            .unwrap();
    assert_eq!(r["blobs_in_grace"], 0, "{r}");
    served_complete(&mirror);
    // What is left is what the served metadata names: the replaced list and the junk are gone,
    // the firmware the junk shared chunks with is whole.
    assert_eq!(r["blobs_live"].as_u64().unwrap(), blobs - 1, "{r}");
    assert_eq!(stats(&mirror)["blobs"].as_u64().unwrap(), blobs - 1);
    assert!(!fwrepo(&["cat", "--data", &mirror, &old_revocations]).status.success());
    let id = blake3::hash(&live.data).to_hex().to_string();
    assert_eq!(ok_bytes(&fwrepo(&["cat", "--data", &mirror, &id])), live.data);
}

fn ok_bytes(out: &Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.clone()
}
