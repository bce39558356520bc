//! A hostile upstream (an in-memory peer told to misbehave): every case fails the sync naming
//! what was wrong, leaves the previously switched state exactly as it was, and a later sync
//! against the honest upstream succeeds.

use std::os::unix::fs::PermissionsExt;

use fwrepo_chunk::{ChunkIndex, Chunker, ChunkerParams, Digest};
use fwrepo_fetch::{Fault, FetchOptions, MemoryTransport, RetryPolicy};
use fwrepo_mirror::{Mirror, MirrorConfig};
use fwrepo_tuf::{Config, Repository, RoleSpec, RootSpec, SigningKey, TargetFile, TargetPath};

/// Firmware-like (incompressible) bytes, the same for the same seed.
pub(crate) use fwrepo_synth::seeded_bytes as data;

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from(std::time::SystemTime::now())
}

pub(crate) fn quick() -> FetchOptions {
    FetchOptions {
        retry: RetryPolicy {
            attempts: 2,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(2),
        },
        request_timeout: std::time::Duration::from_secs(2),
        idle_timeout: std::time::Duration::from_millis(300),
        ..FetchOptions::default()
    }
}

/// What the token service answers: `token`, scope `mirror`, every model, living `expires_in`
/// seconds.
pub(crate) fn token_reply(token: &str, expires_in: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "token": token, "token_type": "Bearer", "scope": "mirror", "models": ["*"], "expires_in": expires_in,
    }))
    .unwrap()
}

pub(crate) struct Upstream {
    pub(crate) keys: Vec<SigningKey>,
    pub(crate) repo: Repository,
    pub(crate) peer: MemoryTransport,
    root_v1: Vec<u8>,
    timestamp_v1: Vec<u8>,
}

impl Upstream {
    pub(crate) fn new() -> Upstream {
        let keys: Vec<SigningKey> = (1..=4).map(|n| SigningKey::from_seed(&[n; 32])).collect();
        let one = |k: &SigningKey| RoleSpec::new(vec![k.public_key()], 1);
        let spec =
            RootSpec { root: one(&keys[0]), timestamp: one(&keys[1]), snapshot: one(&keys[2]), targets: one(&keys[3]) };
        let ring: Vec<&SigningKey> = keys.iter().collect();
        let repo = Repository::init(&spec, &ring, now(), Config::default()).unwrap();
        let peer = MemoryTransport::new();
        let files = repo.files();
        let root_v1 = files.iter().find(|f| f.name == "1.root.json").unwrap().bytes.clone();
        let timestamp_v1 = files.iter().find(|f| f.name == "timestamp.json").unwrap().bytes.clone();
        for f in &files {
            peer.insert(format!("/metadata/{}", f.name), f.bytes.clone());
        }
        peer.insert("/v1/tokens", token_reply("t0k3n", 3600));
        Upstream { keys, repo, peer, root_v1, timestamp_v1 }
    }

    /// Publishes firmware `bytes` of release `release` for model M1; returns the blob path.
    pub(crate) fn publish(&mut self, release: &str, name: &str, bytes: &[u8]) -> String {
        let chunker = Chunker::new(ChunkerParams::default());
        let index = ChunkIndex {
            blob_len: bytes.len() as u64,
            chunks: chunker.chunks(bytes).map(|r| (Digest::of(&bytes[r.clone()]), r.len() as u32)).collect(),
        };
        let blob = Digest::of(bytes);
        self.peer.insert(format!("/v1/blobs/{blob}"), bytes.to_vec());
        self.peer.insert(format!("/v1/blobs/{blob}/chunks"), index.to_bytes());
        let custom = serde_json::json!({
            "blake3": blob.to_hex(), "chunk_index": index.id().to_hex(), "release": release,
            "component": { "name": name, "kind": "firmware", "version": "1.0", "models": ["M1"] },
            "release_info": { "name": format!("SPP {release}"), "date": "2026-01-01" },
        });
        let mut t = TargetFile::describing(bytes, None);
        t.custom = Some(custom);
        let ring: Vec<&SigningKey> = self.keys.iter().collect();
        let path = TargetPath::new(format!("{release}/{name}.bin")).unwrap();
        let files = self.repo.add_targets([(path, t)], &ring, now()).unwrap();
        for f in &files {
            self.peer.insert(format!("/metadata/{}", f.name), f.bytes.clone());
        }
        format!("/v1/blobs/{blob}")
    }
}

pub(crate) fn mirror(dir: &std::path::Path, up: &Upstream) -> Mirror {
    let root = dir.join("1.root.json");
    std::fs::write(&root, &up.root_v1).unwrap();
    let cred = dir.join("cred");
    std::fs::write(&cred, "secret\n").unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = MirrorConfig {
        upstream: "http://upstream.invalid".into(),
        token_url: "http://upstream.invalid".into(),
        credential_file: cred,
        models: Vec::new(),
        gc_grace_s: fwrepo_mirror::config::DEFAULT_GC_GRACE_S,
    };
    Mirror::init(&dir.join("mirror"), &config, &root, &[]).unwrap()
}

pub(crate) fn served_timestamp(m: &Mirror) -> Option<Vec<u8>> {
    fwrepo_repo::read_metadata(m.store().db(), "timestamp.json").unwrap()
}

pub(crate) async fn sync(m: &Mirror, up: &Upstream) -> fwrepo_mirror::Result<fwrepo_mirror::SyncReport> {
    m.sync_over(up.peer.clone(), None::<MemoryTransport>, &quick()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstream_leaves_the_previous_state_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::new();
    let v1 = data(1, 300_000);
    up.publish("2026.01.0", "bios", &v1);
    let m = mirror(dir.path(), &up);
    let first = sync(&m, &up).await.unwrap();
    assert_eq!(first.targets_new, 1);
    let old_timestamp = bytes::Bytes::from(up.timestamp_v1.clone());

    let mut v2 = v1.clone();
    v2[150_000..150_100].fill(0xAA);
    v2.extend_from_slice(&data(2, 50_000));
    let blob2 = up.publish("2026.02.0", "bios", &v2);
    let index2 = format!("{blob2}/chunks");
    let served = served_timestamp(&m);
    let wrong_index = up.peer.file(&format!("/v1/blobs/{}/chunks", Digest::of(&v1))).unwrap();

    let cases: Vec<(&str, String, Fault, &str)> = vec![
        ("flipped_chunk_byte", blob2.clone(), Fault::FlipByte { offset: 10 }, "does not hash to its id"),
        ("truncated_range", blob2.clone(), Fault::Truncate { keep: 100 }, "body ended"),
        ("server_error", blob2.clone(), Fault::Status(500), "HTTP 500"),
        ("dropped_connection", blob2.clone(), Fault::DropAfter { bytes: 1000 }, "transport error"),
        ("stalled_body", blob2.clone(), Fault::Stall { after: 10 }, "nothing received"),
        (
            "chunk_index_not_the_signed_one",
            index2.clone(),
            Fault::Replace(wrong_index.clone()),
            "chunk index hashes to",
        ),
        ("older_timestamp", "/metadata/timestamp.json".into(), Fault::Replace(old_timestamp.clone()), "timestamp"),
    ];
    for (attack, path, fault, needle) in cases {
        up.peer.fault(path, fault, None);
        let err = sync(&m, &up).await.expect_err(attack).to_string();
        assert!(err.contains(needle), "{attack}: {err:?} lacks {needle:?}");
        assert_eq!(served_timestamp(&m), served, "{attack}: the served metadata changed");
        let release = "2026.02.0".parse().unwrap();
        assert!(fwrepo_catalog::Catalog::new(m.store().db().clone()).release(&release).unwrap().is_none(), "{attack}");
        let status = m.status().unwrap();
        assert!(status.consecutive_failures > 0 && status.last_error.is_some(), "{attack}");
        up.peer.clear_faults();
    }

    // The honest upstream: the sync succeeds and fetches only what is still missing.
    let ok = sync(&m, &up).await.unwrap();
    assert_eq!(ok.targets_new, 1);
    assert!(ok.chunk_bytes_fetched < v2.len() as u64, "{ok:?}");
    assert_ne!(served_timestamp(&m), served);
    assert_eq!(m.status().unwrap().consecutive_failures, 0);
    assert_eq!(m.store().read_all(&Digest::of(&v2)).unwrap().concat(), v2);
    // Unchanged upstream: only a conditional timestamp request.
    let again = sync(&m, &up).await.unwrap();
    assert_eq!(again.chunks_fetched, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exchange_fails_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upstream::new();
    up.publish("2026.01.0", "bios", &data(3, 10_000));
    let m = mirror(dir.path(), &up);
    up.peer.insert("/v1/tokens", br#"{"token":"t","scope":"download","models":["*"]}"#.to_vec());
    let err = sync(&m, &up).await.unwrap_err().to_string();
    assert!(err.contains("syncing needs scope mirror"), "{err}");
    assert!(served_timestamp(&m).is_none());
}
