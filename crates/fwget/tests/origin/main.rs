//! End to end against a real fwrepo origin on 127.0.0.1:0: two synthetic releases published
//! with `fwrepo-repo`, served by `fwrepo-server` with token issuance; the `fwget` binary
//! logs in, refreshes, plans and updates. Also: plan agreement with `POST /v1/catalog/plan`,
//! resume after `kill -9` behind a throttling proxy, chunk-pair deltas against ranges, nginx
//! serving an export (`static_host.rs`) and a partner mirror synced from the origin
//! (`mirror.rs`).

mod mirror;
mod static_host;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use fwrepo_chunk::{Chunker, Digest};
use fwrepo_entitle::{Entitlements, Issuer, IssuerConfig, IssuerKeyring, Revocations, UnixTime, Verifier};
use fwrepo_repo::keys::{self, Keyring, Role};
use fwrepo_repo::{Manifest, Repo};
use fwrepo_server::{MetadataSource, ServerConfig, ServerState};
use fwrepo_store::{InitOptions, OpenOptions, Store};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISS: &str = "fwrepo-test";
const AUD: &str = "fwrepo";
/// The API credential of partner P-1, who may mirror the test model.
const PARTNER_CREDENTIAL: &str = "partner-secret-0001";

struct RepoMetadata(Arc<Store>);

impl MetadataSource for RepoMetadata {
    fn get(&self, name: &str) -> Option<Bytes> {
        fwrepo_repo::read_metadata(self.0.db(), name).ok().flatten().map(Bytes::from)
    }
}

struct Origin {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    tmp: tempfile::TempDir,
    store: Arc<Store>,
    releases: Vec<fwrepo_synth::Release>,
    model: String,
}

fn origin() -> Origin {
    let tmp = tempfile::tempdir().unwrap();
    let (data, key_dir) = (tmp.path().join("data"), tmp.path().join("keys"));
    let opts = InitOptions {
        chunk_sizes: fwrepo_store::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 },
        ..InitOptions::default()
    };
    Store::init(&data, &opts).unwrap();
    keys::generate(&key_dir, &Role::ALL, 1).unwrap();
    let mut families = fwrepo_repo::column_families();
    families.extend(fwrepo_server::column_families());
    families.sort();
    families.dedup();
    let store =
        Arc::new(Store::open_with(&data, &OpenOptions { read_only: false, extra_column_families: families }).unwrap());
    let repo = Repo::over(store.clone());
    repo.init_metadata(&Keyring::load(&key_dir, &Role::ALL).unwrap(), 1, Utc::now()).unwrap();
    let online = Keyring::load(&key_dir, &Role::ONLINE).unwrap();
    let mut releases = Vec::new();
    for (n, r) in fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small()).take(2).enumerate() {
        let dir = tmp.path().join(format!("rel-{n}"));
        r.write_to(&dir).unwrap();
        repo.publish(&Manifest::load(&dir.join("release.toml")).unwrap(), &online, &key_dir, Utc::now()).unwrap();
        releases.push(r);
    }
    let model = releases[1].components[0].models[0].clone();
    let records = Entitlements::new(store.db().clone());
    let csv = format!("serial,model,warranty_end\nS1,{model},2099-12-31\nS9,{model},2001-01-01\n");
    records.import("serials.csv", csv.as_bytes(), UnixTime::now()).unwrap();
    let partners = format!(
        "partner,name,level,status,models,may_mirror,credential_sha256\nP-1,Mirror Co,authorized,active,{model},true,{}\n",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(PARTNER_CREDENTIAL.as_bytes()))
    );
    records.import("partners.csv", partners.as_bytes(), UnixTime::now()).unwrap();

    let ring = IssuerKeyring::from_seeds(&[[7; 32]]).unwrap();
    let issuer = Issuer::new(IssuerConfig::new(ISS, AUD), ring).unwrap();
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let state = ServerState::new(&config, store.clone(), Arc::new(RepoMetadata(store.clone())), verifier())
        .unwrap()
        .with_issuer(issuer, Entitlements::new(store.db().clone()));
    let state = Arc::new(state);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bound = rt.block_on(fwrepo_server::bind(config)).unwrap();
    let addr = bound.local_addr();
    rt.spawn(async move { bound.run(state, std::future::pending()).await });
    std::fs::write(tmp.path().join("1.root.json"), repo.metadata_file("1.root.json").unwrap().unwrap()).unwrap();
    Origin { rt, addr, tmp, store, releases, model }
}

/// A verifier of the origin's tokens (a mirror checks them offline with the same keys).
fn verifier() -> Verifier {
    let ring = IssuerKeyring::from_seeds(&[[7; 32]]).unwrap();
    Verifier::new(ring.verifying_keys(), Revocations::new(), AUD).with_issuer(ISS)
}

fn fwget(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fwget")).arg("--dir").arg(dir).args(args).output().unwrap()
}

/// Runs fwget with `--json` (after the subcommand, to check global flags go anywhere),
/// requires success and returns its object.
fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = fwget(dir, &a);
    assert!(out.status.success(), "fwget {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn init_client(o: &Origin, repo_url: &str) -> PathBuf {
    let dir = o.tmp.path().join(format!("client-{}", rand_suffix()));
    let root = o.tmp.path().join("1.root.json");
    ok_json(&dir, &["init", "--repo", repo_url, "--root", root.to_str().unwrap()]);
    ok_json(&dir, &["login", "--serial", "S1"]);
    dir
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Chunks of every file in `dir` (what a client holds).
fn chunks_in(dir: &Path) -> HashSet<Digest> {
    let chunker = Chunker::new(fwrepo_chunk::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 });
    let mut out = HashSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        out.extend(chunker.chunks(&bytes).map(|r| Digest::of(&bytes[r])));
    }
    out
}

#[test]
fn init_login_refresh_plan_update_and_the_second_update_fetches_only_new_chunks() {
    let o = origin();
    let dir = init_client(&o, &format!("http://{}", o.addr));
    let token = std::fs::metadata(dir.join("token.json")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(token.permissions().mode() & 0o777, 0o600);

    let r = ok_json(&dir, &["refresh"]);
    assert!(r["targets"].as_u64().unwrap() >= 2);
    let models = ok_json(&dir, &["models"]);
    assert!(models["models"].as_array().unwrap().iter().any(|m| m == o.model.as_str()));
    let rels = ok_json(&dir, &["releases", &o.model]);
    assert_eq!(rels["releases"][0]["id"], o.releases[1].id.as_str(), "newest first");

    let out = o.tmp.path().join("installed");
    let first =
        ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap(), "--release", &o.releases[0].id]);
    let files1 = first["files"].as_array().unwrap();
    assert!(!files1.is_empty());
    for f in files1 {
        assert_eq!(f["seed_bytes"], 0);
    }
    let held = chunks_in(&out);

    // The plan against release two, from what is installed, then the update.
    let plan = ok_json(&dir, &["plan", "--model", &o.model, "--installed", out.to_str().unwrap()]);
    assert_eq!(plan["release"], o.releases[1].id.as_str());
    let second = ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap()]);
    let files2 = second["files"].as_array().unwrap();
    assert_eq!(files2.len() as u64, plan["totals"]["download_files"].as_u64().unwrap());
    let (mut ideal, mut runs, mut wire, mut requests) = (0u64, 0u64, 0u64, 0u64);
    let chunker = Chunker::new(fwrepo_chunk::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 });
    let mut seen = HashSet::new();
    for f in files2 {
        let bytes = std::fs::read(f["path"].as_str().unwrap()).unwrap();
        assert_eq!(bytes.len() as u64, f["length"].as_u64().unwrap());
        let mut prev_missing = false;
        for r in chunker.chunks(&bytes) {
            let id = Digest::of(&bytes[r.clone()]);
            let missing = !held.contains(&id) && seen.insert(id);
            if missing {
                ideal += r.len() as u64;
                if !prev_missing {
                    runs += 1;
                }
            }
            prev_missing = missing;
        }
        wire += f["wire_bytes"].as_u64().unwrap();
        requests += f["requests"].as_u64().unwrap();
    }
    let full: u64 = files2.iter().map(|f| f["length"].as_u64().unwrap()).sum();
    // Per file: one chunk index request plus at most one range per run of new chunks, and
    // bytes close to the new chunks (indexes and heads included).
    assert!(requests <= runs + files2.len() as u64, "{requests} requests for {runs} runs");
    let index_bytes = files2.len() as u64 * 16 * 1024;
    assert!(
        wire as f64 <= 1.05 * (ideal + index_bytes) as f64 + 1024.0 * requests as f64,
        "wire {wire}, new chunks {ideal}, full {full}"
    );
    assert!(wire < full / 2, "a delta update costs less than half the files: {wire} of {full}");
    assert!(second["wire_bytes"].as_u64().unwrap() >= wire, "totals include metadata and every head");

    // A third run has nothing to do.
    let third = ok_json(&dir, &["update", "--model", &o.model, "--out", out.to_str().unwrap()]);
    assert!(third["files"].as_array().unwrap().is_empty());
}

#[test]
fn an_expired_warranty_is_not_entitled_and_logout_forgets_the_token() {
    let o = origin();
    let dir = o.tmp.path().join("client");
    let root = o.tmp.path().join("1.root.json");
    ok_json(&dir, &["init", "--repo", &format!("http://{}", o.addr), "--root", root.to_str().unwrap()]);
    let out = fwget(&dir, &["--json", "login", "--serial", "S9"]);
    assert_eq!(out.status.code(), Some(fwget::exit::NOT_ENTITLED), "{}", String::from_utf8_lossy(&out.stderr));
    ok_json(&dir, &["login", "--serial", "S1"]);
    assert!(dir.join("token.json").exists());
    let v = ok_json(&dir, &["logout"]);
    assert_eq!(v["logged_out"], true);
    assert!(!dir.join("token.json").exists());
    // Without a token the gated blobs are refused.
    ok_json(&dir, &["refresh"]);
    let target = format!("{}/{}", o.releases[0].id, o.releases[0].components[0].file);
    let out = fwget(&dir, &["fetch", &target, "--out", o.tmp.path().join("o").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(fwget::exit::NOT_ENTITLED), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn unreachable_origin_is_a_network_failure() {
    let o = origin();
    let dir = o.tmp.path().join("client");
    let root = o.tmp.path().join("1.root.json");
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    ok_json(&dir, &["init", "--repo", &format!("http://127.0.0.1:{port}"), "--root", root.to_str().unwrap()]);
    let out = fwget(&dir, &["refresh"]);
    assert_eq!(out.status.code(), Some(fwget::exit::NETWORK), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Component name → installed version.
type Inventory = Vec<(String, String)>;

#[test]
fn local_plans_agree_with_the_servers_plan() {
    let o = origin();
    let dir = init_client(&o, &format!("http://{}", o.addr));
    ok_json(&dir, &["refresh"]);
    let (r0, r1) = (&o.releases[0], &o.releases[1]);
    let for_model = |r: &fwrepo_synth::Release| -> Vec<(String, String)> {
        r.components
            .iter()
            .filter(|c| c.models.contains(&o.model))
            .map(|c| (c.name.clone(), c.version.clone()))
            .collect()
    };
    let (c0, c1) = (for_model(r0), for_model(r1));
    let table: Vec<(Inventory, Option<&str>)> = vec![
        (vec![], None),
        (c0.clone(), None),
        (c1.clone(), None),
        (c1.clone(), Some(r0.id.as_str())),
        (vec![(c0[0].0.clone(), "0.1".into()), ("Not A Component".into(), "1".into())], None),
        (vec![(c1[0].0.clone(), "999.0".into())], Some(r1.id.as_str())),
        (vec![(c1[0].0.clone(), format!("{}.0", c1[0].1))], None),
    ];
    let peer = fwrepo_fetch::Fetcher::new(
        fwrepo_fetch::HttpTransport::new(&format!("http://{}", o.addr), &fwrepo_fetch::HttpOptions::default()).unwrap(),
        fwrepo_fetch::FetchOptions::default(),
    );
    for (inv, release) in table {
        let inventory: serde_json::Map<String, Value> =
            inv.iter().map(|(n, v)| (n.clone(), Value::from(v.clone()))).collect();
        let inv_path = o.tmp.path().join(format!("inv-{}.json", rand_suffix()));
        std::fs::write(&inv_path, serde_json::to_vec(&inventory).unwrap()).unwrap();
        let mut args = vec!["plan", "--model", &o.model, "--inventory", inv_path.to_str().unwrap()];
        if let Some(r) = release {
            args.extend(["--release", r]);
        }
        let local = ok_json(&dir, &args);
        let mut body = serde_json::json!({ "model": o.model, "inventory": inventory });
        if let Some(r) = release {
            body["release"] = Value::from(r);
        }
        let (status, bytes) = o.rt.block_on(peer.post_json("/v1/catalog/plan", &body, 1 << 20)).unwrap();
        assert_eq!(status, 200);
        let server: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(local, server, "inventory {inv:?} release {release:?}");
    }
}

/// A TCP proxy that forwards to `to`, at most `rate` bytes/s toward the client, counting them.
fn throttled_proxy(rt: &tokio::runtime::Runtime, to: SocketAddr, rate: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    rt.spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(to).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    c.fetch_add(n as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate)).await;
                }
            });
        }
    });
    (addr, count)
}

#[test]
fn kill_dash_nine_at_several_points_then_resume_verifies_and_costs_about_one_download() {
    let o = origin();
    let (proxy, received) = throttled_proxy(&o.rt, o.addr, 1_500_000);
    let dir = init_client(&o, &format!("http://{proxy}"));
    ok_json(&dir, &["refresh"]);
    let out = o.tmp.path().join("out");
    let target_release = &o.releases[0].id;
    let start = received.load(Ordering::Relaxed);
    let mut killed = 0;
    for ms in [400u64, 900, 1500] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fwget"))
            .arg("--dir")
            .arg(&dir)
            .args(["--quiet", "update", "--model", &o.model, "--release", target_release, "--out"])
            .arg(&out)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            // SIGKILL: no chance to clean up.
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Whatever is under a final name verifies: it equals a component of the release.
        for e in std::fs::read_dir(&out).into_iter().flatten() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".fwget-") {
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            assert!(o.releases[0].components.iter().any(|c| c.data == bytes), "{name} unverified under its final name");
        }
    }
    assert!(killed >= 1, "the throttle is slow enough to kill a download");
    let last =
        ok_json(&dir, &["update", "--model", &o.model, "--release", target_release, "--out", out.to_str().unwrap()]);
    let total = received.load(Ordering::Relaxed) - start;
    let mut want = 0u64;
    for c in o.releases[0].components.iter().filter(|c| c.models.contains(&o.model)) {
        let bytes = std::fs::read(out.join(&c.file)).unwrap_or_else(|e| {
            let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
            panic!("{}: {e}; out holds {names:?}; last run {last}", c.file)
        });
        assert_eq!(bytes, c.data, "{} verifies", c.file);
        want += c.data.len() as u64;
    }
    assert!(last["files"].as_array().is_some());
    // Every run re-reads metadata and chunk indexes and loses at most the chunks in flight.
    assert!(
        total as f64 <= want as f64 * 1.25 + 200_000.0,
        "{total} bytes through the proxy for {want} bytes of files"
    );
}

/// Sums `key` over the `files` of an fwget `--json` answer.
fn file_sum(v: &Value, key: &str) -> u64 {
    v["files"].as_array().unwrap().iter().map(|f| f[key].as_u64().unwrap()).sum()
}

#[test]
fn second_update_with_deltas_costs_fewer_wire_bytes_than_chunk_ranges_and_is_byte_exact() {
    let o = origin();
    let url = format!("http://{}", o.addr);
    let (with, without) = (init_client(&o, &url), init_client(&o, &url));
    let (out_d, out_r) = (o.tmp.path().join("with-deltas"), o.tmp.path().join("ranges-only"));
    let (sd, sr) = (out_d.to_str().unwrap(), out_r.to_str().unwrap());
    let rel1 = o.releases[0].id.as_str();
    ok_json(&with, &["update", "--model", &o.model, "--out", sd, "--release", rel1]);
    ok_json(&without, &["update", "--model", &o.model, "--out", sr, "--release", rel1, "--no-deltas"]);

    let d = ok_json(&with, &["update", "--model", &o.model, "--out", sd]);
    let r = ok_json(&without, &["update", "--model", &o.model, "--out", sr, "--no-deltas"]);
    assert!(!d["files"].as_array().unwrap().is_empty());
    let (wire_d, wire_r) = (file_sum(&d, "wire_bytes"), file_sum(&r, "wire_bytes"));
    assert!(wire_d < wire_r, "deltas {wire_d} bytes on the wire, ranges {wire_r}");
    assert!(file_sum(&d, "delta_bytes") > 0);
    assert!(file_sum(&d, "delta_bytes") <= wire_d);
    assert_eq!(file_sum(&r, "delta_bytes"), 0, "--no-deltas asks for ranges only");
    assert_eq!(file_sum(&d, "seed_bytes"), file_sum(&r, "seed_bytes"), "the same chunks come from seeds");
    // Byte-exact: every file is release two's component as published.
    let rel2 = &o.releases[1];
    for f in d["files"].as_array().unwrap() {
        let path = PathBuf::from(f["path"].as_str().unwrap());
        let name = path.file_name().unwrap().to_str().unwrap();
        let c = rel2.components.iter().find(|c| c.file.rsplit('/').next() == Some(name)).unwrap();
        assert!(std::fs::read(&path).unwrap() == c.data, "{name} differs from the published bytes");
        assert!(std::fs::read(out_r.join(name)).unwrap() == c.data, "{name} (ranges) differs");
    }
}

#[test]
fn a_seed_chunk_changed_underneath_is_not_used_as_a_base_and_the_update_still_verifies() {
    let o = origin();
    let dir = init_client(&o, &format!("http://{}", o.addr));
    let out = o.tmp.path().join("installed");
    let s = out.to_str().unwrap();
    let (rel1, rel2) = (&o.releases[0], &o.releases[1]);
    ok_json(&dir, &["update", "--model", &o.model, "--out", s, "--release", &rel1.id]);
    // Nothing to download: this run only indexes the installed files as seeds.
    ok_json(&dir, &["update", "--model", &o.model, "--out", s, "--release", &rel1.id]);

    // In one installed file, damage a chunk the update will name as a base, in place and
    // keeping size, inode and mtime: the seed index still believes it.
    let chunker = Chunker::new(fwrepo_chunk::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 });
    let cut = |b: &[u8]| -> Vec<(Digest, u32, u64)> {
        chunker.chunks(b).map(|r| (Digest::of(&b[r.clone()]), r.len() as u32, r.start as u64)).collect()
    };
    let mut damaged = None;
    for new in &rel2.components {
        let name = new.file.rsplit('/').next().unwrap();
        let Some(old) = rel1.components.iter().find(|c| c.name == new.name && c.data != new.data) else { continue };
        let old_path = out.join(old.file.rsplit('/').next().unwrap());
        if !old_path.exists() {
            continue;
        }
        let (oc, nc) = (cut(&old.data), cut(&new.data));
        let pairs = |v: &[(Digest, u32, u64)]| v.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>();
        let bases = fwrepo_chunk::bases::choose_bases(&pairs(&nc), &pairs(&oc));
        if let Some(base) = bases.iter().flatten().next() {
            let at = oc.iter().find(|c| c.0 == *base).unwrap().2 as usize;
            damaged = Some((old_path, at, name.to_owned()));
            break;
        }
    }
    let (path, at, target_name) = damaged.expect("release two changes a component of release one");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at] ^= 0xff;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&bytes[at..at + 1], at as u64).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);

    let second = ok_json(&dir, &["update", "--model", &o.model, "--out", s, "--release", &rel2.id]);
    let warnings = second["warnings"].to_string();
    assert!(warnings.contains(path.file_name().unwrap().to_str().unwrap()), "{warnings}");
    assert!(file_sum(&second, "delta_bytes") > 0);
    for f in second["files"].as_array().unwrap() {
        let p = PathBuf::from(f["path"].as_str().unwrap());
        let name = p.file_name().unwrap().to_str().unwrap();
        let c = rel2.components.iter().find(|c| c.file.rsplit('/').next() == Some(name)).unwrap();
        assert!(std::fs::read(&p).unwrap() == c.data, "{name} differs from the published bytes");
    }
    assert!(out.join(&target_name).exists());
}
