//! Fixtures: a signed repository with firmware targets laid out as fwrepo's origin serves
//! them (metadata, blobs, chunk indexes, the token service) in a `MemoryTransport`, and an
//! fwget client over it with a client directory of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fwget::client::Client;
use fwget::delta::Peer;
use fwget::dir::{ClientDir, Config};
use fwrepo_chunk::{ChunkIndex, Chunker, ChunkerParams, Digest};
use fwrepo_fetch::{FetchOptions, Fetcher, MemoryTransport, RetryPolicy, Routes};
use fwrepo_tuf::{
    ChunkerSizes, Component, FwCustom, MetadataFile, ReleaseInfo, Repository, RoleSpec, RootSpec, SigningKey,
    TargetFile, TargetPath,
};

pub const DL380: &str = "ProLiant DL380 Gen9";
pub const DL360: &str = "ProLiant DL360 Gen9";

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

pub fn params() -> ChunkerParams {
    ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 }
}

/// Firmware-like (incompressible) bytes, the same for the same seed.
pub use fwrepo_synth::seeded_bytes as data;

/// `old` with a patch, an insertion and a deletion.
pub fn edited(old: &[u8]) -> Vec<u8> {
    let mut v = old.to_vec();
    v[50_000..50_016].copy_from_slice(b"VERSION 2.10 (A)");
    v.splice(120_000..120_000, data(99, 3000));
    v.drain(200_000..202_000);
    v
}

pub fn index_of(bytes: &[u8]) -> ChunkIndex {
    let chunker = Chunker::new(params());
    ChunkIndex {
        blob_len: bytes.len() as u64,
        chunks: chunker.chunks(bytes).map(|r| (Digest::of(&bytes[r.clone()]), r.len() as u32)).collect(),
    }
}

/// A component to publish.
pub struct Comp<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub models: &'a [&'a str],
    pub bytes: &'a [u8],
}

pub struct Origin {
    keys: Vec<SigningKey>,
    pub repo: Repository,
    pub peer: MemoryTransport,
    pub root_v1: Vec<u8>,
}

impl Origin {
    pub fn new() -> Origin {
        let keys: Vec<SigningKey> = (1..=4).map(|n| SigningKey::from_seed(&[n; 32])).collect();
        let one = |k: &SigningKey| RoleSpec::new(vec![k.public_key()], 1);
        let spec =
            RootSpec { root: one(&keys[0]), timestamp: one(&keys[1]), snapshot: one(&keys[2]), targets: one(&keys[3]) };
        let ring: Vec<&SigningKey> = keys.iter().collect();
        let repo = Repository::init(&spec, &ring, now(), fwrepo_tuf::Config::default()).unwrap();
        let files = repo.files();
        let root_v1 = files.iter().find(|f| f.name == "1.root.json").unwrap().bytes.clone();
        let o = Origin { keys, repo, peer: MemoryTransport::new(), root_v1 };
        o.publish_metadata(&files);
        o.peer.insert(
            "/v1/tokens",
            serde_json::to_vec(&serde_json::json!({
                "token": "tok-1", "token_type": "Bearer", "expires_at": now().timestamp() + 86_400,
            }))
            .unwrap(),
        );
        o
    }

    pub fn publish_metadata(&self, files: &[MetadataFile]) {
        for f in files {
            self.peer.insert(format!("/metadata/{}", f.name), f.bytes.clone());
        }
    }

    /// Publishes release `id` with `comps`; returns their target paths.
    pub fn release(&mut self, id: &str, date: &str, comps: &[Comp<'_>]) -> Vec<TargetPath> {
        let mut targets = Vec::new();
        let mut paths = Vec::new();
        for c in comps {
            let index = index_of(c.bytes);
            let blob = Digest::of(c.bytes);
            self.peer.insert(format!("/v1/blobs/{blob}"), c.bytes.to_vec());
            self.peer.insert(format!("/v1/blobs/{blob}/chunks"), index.to_bytes());
            let custom = FwCustom {
                blake3: blob.to_hex(),
                chunk_index: index.id().to_hex(),
                release: id.into(),
                component: Component {
                    name: c.name.into(),
                    kind: "firmware".into(),
                    version: c.version.into(),
                    models: c.models.iter().map(|m| m.to_string()).collect(),
                },
                release_info: Some(ReleaseInfo { name: format!("Service Pack {id}"), date: date.into() }),
                chunker: Some(ChunkerSizes { min_size: 2048, avg_size: 8192, max_size: 32768 }),
            };
            let slug: String = c
                .name
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch.to_ascii_lowercase() } else { '-' })
                .collect();
            let path = TargetPath::new(format!("firmware/{id}/{slug}-{}.bin", c.version)).unwrap();
            targets.push((path.clone(), TargetFile::describing(c.bytes, Some(&custom))));
            paths.push(path);
        }
        let ring: Vec<&SigningKey> = self.keys.iter().collect();
        let files = self.repo.add_targets(targets, &ring, now()).unwrap();
        self.publish_metadata(&files);
        paths
    }
}

pub fn quick() -> FetchOptions {
    FetchOptions {
        retry: RetryPolicy { attempts: 3, base: Duration::from_millis(1), max: Duration::from_millis(2) },
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(500),
        min_chunk: params().min_size,
        routes: Routes::default(),
        ..FetchOptions::default()
    }
}

/// A client dir initialized for `origin`, with `mirrors` (name, transport) tried first.
pub fn client(tmp: &std::path::Path, origin: &Origin, mirrors: &[(&str, MemoryTransport)]) -> Client<MemoryTransport> {
    let dir = ClientDir::new(tmp.join("client"));
    if !dir.config_path().exists() {
        let config = Config {
            repo: "mem://origin".into(),
            static_host: false,
            mirrors: mirrors.iter().map(|(n, _)| n.to_string()).collect(),
            cacert: None,
        };
        dir.init(&config, &origin.root_v1).unwrap();
    }
    Client {
        dir,
        origin: Peer { name: "mem://origin".into(), fetcher: Fetcher::new(origin.peer.clone(), quick()) },
        mirrors: mirrors
            .iter()
            .map(|(n, t)| Peer { name: n.to_string(), fetcher: Fetcher::new(t.clone(), quick()) })
            .collect(),
        static_host: false,
    }
}

/// A mirror: a copy of everything the origin serves now.
pub fn mirror_of(origin: &Origin, paths: &[String]) -> MemoryTransport {
    let m = MemoryTransport::new();
    for p in paths {
        m.insert(p.clone(), origin.peer.file(p).unwrap());
    }
    m
}

pub fn blob_path(bytes: &[u8]) -> String {
    format!("/v1/blobs/{}", Digest::of(bytes))
}

pub fn index_path(bytes: &[u8]) -> String {
    format!("/v1/blobs/{}/chunks", Digest::of(bytes))
}

/// Body bytes the transport served for ranges of `blob` since the log began.
pub fn range_requests(t: &MemoryTransport, bytes: &[u8]) -> usize {
    let p = blob_path(bytes);
    t.requests().iter().filter(|r| r.path == p).count()
}
