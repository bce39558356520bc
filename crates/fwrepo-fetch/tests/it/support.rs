//! Fixtures: a signed repository published into a `MemoryTransport` laid out as fwrepo's
//! server lays it out, an in-memory metadata store and a chunk sink that re-checks what it gets.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use fwrepo_chunk::{ChunkIndex, Chunker, ChunkerParams, Digest};
use fwrepo_fetch::{
    BoxError, ChunkSink, FetchOptions, FetchedMetadata, Fetcher, MemoryTransport, MetadataStore, RemoteBlob,
    RetryPolicy, Routes, StoredMetadata, Transport, VerifiedChunk,
};
use fwrepo_tuf::{
    Config, Limits, MetadataFile, Repository, RoleName, RoleSpec, RootSpec, SigningKey, TargetFile, TargetPath,
};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// Small chunks, so test blobs of a few hundred KiB have dozens of them.
pub fn params() -> ChunkerParams {
    ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 }
}

/// Firmware-like (incompressible) bytes, the same for the same seed.
pub use fwrepo_synth::seeded_bytes as data;

pub fn index_of(bytes: &[u8]) -> ChunkIndex {
    let chunker = Chunker::new(params());
    ChunkIndex {
        blob_len: bytes.len() as u64,
        chunks: chunker.chunks(bytes).map(|r| (Digest::of(&bytes[r.clone()]), r.len() as u32)).collect(),
    }
}

pub struct Keys(Vec<SigningKey>);

impl Keys {
    fn ring(&self) -> Vec<&SigningKey> {
        self.0.iter().collect()
    }
}

/// A repository and the peer it publishes to.
pub struct Origin {
    pub keys: Keys,
    pub repo: Repository,
    pub peer: MemoryTransport,
    pub root_v1: Vec<u8>,
}

impl Origin {
    pub fn new() -> Origin {
        let keys = Keys((1..=4).map(|n| SigningKey::from_seed(&[n; 32])).collect());
        let one = |k: &SigningKey| RoleSpec::new(vec![k.public_key()], 1);
        let spec = RootSpec {
            root: one(&keys.0[0]),
            timestamp: one(&keys.0[1]),
            snapshot: one(&keys.0[2]),
            targets: one(&keys.0[3]),
        };
        let repo = Repository::init(&spec, &keys.ring(), t0(), Config::default()).unwrap();
        let peer = MemoryTransport::new();
        let files = repo.files();
        let root_v1 = files.iter().find(|f| f.name == "1.root.json").unwrap().bytes.clone();
        let o = Origin { keys, repo, peer, root_v1 };
        o.publish_metadata(&files);
        o
    }

    pub fn publish_metadata(&self, files: &[MetadataFile]) {
        for f in files {
            self.peer.insert(format!("/metadata/{}", f.name), f.bytes.clone());
        }
    }

    /// Publishes `bytes` as target `path`: blob, chunk index and signed description.
    pub fn publish(&mut self, path: &str, bytes: &[u8]) -> TargetPath {
        let index = index_of(bytes);
        let blob = Digest::of(bytes);
        self.peer.insert(format!("/v1/blobs/{blob}"), bytes.to_vec());
        self.peer.insert(format!("/v1/blobs/{blob}/chunks"), index.to_bytes());
        let mut t = TargetFile::describing(bytes, None);
        t.custom = Some(serde_json::json!({ "blake3": blob.to_hex(), "chunk_index": index.id().to_hex() }));
        self.sign(path, t)
    }

    /// Signs `file` as target `path` as it is (a test may make it lie).
    pub fn sign(&mut self, path: &str, file: TargetFile) -> TargetPath {
        let p = TargetPath::new(path).unwrap();
        let files = self.repo.add_targets([(p.clone(), file)], &self.keys.ring(), t0()).unwrap();
        self.publish_metadata(&files);
        p
    }

    pub fn fetcher(&self) -> Fetcher<MemoryTransport> {
        Fetcher::new(self.peer.clone(), quick())
    }
}

/// Options for tests: no real waiting between retries, short timeouts.
pub fn quick() -> FetchOptions {
    FetchOptions {
        retry: RetryPolicy {
            attempts: 3,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(2),
        },
        request_timeout: std::time::Duration::from_secs(2),
        idle_timeout: std::time::Duration::from_secs(2),
        min_chunk: params().min_size,
        routes: Routes::default(),
        ..FetchOptions::default()
    }
}

/// Metadata kept in memory, with the names saved in order.
#[derive(Default)]
pub struct MemStore {
    pub files: Mutex<HashMap<RoleName, StoredMetadata>>,
    pub saved: Mutex<Vec<FetchedMetadata>>,
}

impl MetadataStore for MemStore {
    fn load(&self, role: &RoleName) -> Result<Option<StoredMetadata>, BoxError> {
        Ok(self.files.lock().unwrap().get(role).cloned())
    }
    fn save(&self, f: &FetchedMetadata) -> Result<(), BoxError> {
        self.files
            .lock()
            .unwrap()
            .insert(f.role.clone(), StoredMetadata { bytes: f.bytes.clone(), etag: f.etag.clone() });
        self.saved.lock().unwrap().push(f.clone());
        Ok(())
    }
}

/// Chunks received, re-hashed on arrival: any unverified byte fails the test.
#[derive(Default)]
pub struct MemSink {
    pub chunks: Mutex<HashMap<Digest, (Bytes, Vec<fwrepo_fetch::Placement>)>>,
    pub puts: Mutex<u64>,
}

impl ChunkSink for MemSink {
    fn put(&self, c: &VerifiedChunk) -> Result<(), BoxError> {
        assert_eq!(Digest::of(c.bytes()), *c.id(), "a sink was handed an unverified chunk");
        let old = self.chunks.lock().unwrap().insert(*c.id(), (c.bytes().clone(), c.placements().to_vec()));
        assert!(old.is_none(), "chunk {} handed over twice", c.id());
        *self.puts.lock().unwrap() += 1;
        Ok(())
    }
}

impl MemSink {
    pub fn has(&self, id: &Digest) -> bool {
        self.chunks.lock().unwrap().contains_key(id)
    }
    pub fn len(&self) -> usize {
        self.chunks.lock().unwrap().len()
    }

    /// Blob `b` assembled from what the sink got plus `seed` (chunks held before).
    pub fn assemble(&self, blob: &RemoteBlob, seed: &HashMap<Digest, Vec<u8>>) -> Vec<u8> {
        let got = self.chunks.lock().unwrap();
        let mut out = Vec::with_capacity(blob.len() as usize);
        for (id, _) in &blob.index.chunks {
            match got.get(id) {
                Some((b, _)) => out.extend_from_slice(b),
                None => out.extend_from_slice(&seed[id]),
            }
        }
        out
    }
}

/// The chunks of `bytes` by id: what a client "has" from an old version.
pub fn seed_of(bytes: &[u8]) -> HashMap<Digest, Vec<u8>> {
    Chunker::new(params()).chunks(bytes).map(|r| (Digest::of(&bytes[r.clone()]), bytes[r].to_vec())).collect()
}

/// Refreshes from the pinned root and resolves `paths` to verified remote blobs.
pub async fn remote_blobs<T: Transport>(
    f: &Fetcher<T>,
    root: &[u8],
    store: &MemStore,
    paths: &[&TargetPath],
) -> Vec<RemoteBlob> {
    let mut r = f.refresh(root, store, t0(), Limits::default()).await.unwrap();
    let mut out = Vec::new();
    for p in paths {
        let info = f.find_target(&mut r.updater, p, store).await.unwrap().expect("signed");
        out.push(f.remote_blob(&info).await.unwrap());
    }
    out
}

/// `old` with a few edits: a patch, an insertion and a deletion.
pub fn edited(old: &[u8]) -> Vec<u8> {
    let mut v = old.to_vec();
    v[50_000..50_016].copy_from_slice(b"VERSION 2.10 (A)");
    v.splice(120_000..120_000, data(99, 3000));
    v.drain(200_000..202_000);
    v
}
