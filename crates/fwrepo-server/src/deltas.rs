//! `POST /v1/blobs/<id>/deltas`: chunk-pair deltas (`fwrepo_chunk::delta` is the wire form).
//!
//! # The gate, on both sides of a delta
//!
//! The blob passes the download gate exactly as for ranges (`service::authenticate`, then
//! `service::authorize`: 401, 403, 404 alike). Every target must be a chunk of the blob's chunk
//! index (400 `target_not_in_blob` naming the entry). A delta also tells how the target relates
//! to its bases, so a base counts only when it is a chunk of some blob the token is entitled
//! to; an entry naming any other base (not entitled, unknown) has all its bases dropped before
//! anything else happens, so that entry is answered with the very bytes of a request that
//! named none. An entry may name at most `MAX_BASES` bases of at most `MAX_BASE_BYTES` in all
//! (413 otherwise, checked on entitled bases only, so the limit tells nothing either).
//!
//! Which blobs hold a chunk comes from [`ChunkOwners`]: an in-memory map chunk id → the
//! distinct model lists of the catalog's blobs that contain it (and its length), built from the catalog and the
//! store's chunk indexes on the first request that names a base, and rebuilt after a refresh
//! only when the catalog's release list changed (releases are immutable once published). By
//! its layout (estimated, not measured) it costs about 50 bytes per distinct chunk (a 32-byte
//! key, a 4-byte set index and a 4-byte length in a `HashMap`), so a million chunks take
//! ~50 MB, and a build
//! reads every catalog blob's chunk index once; the alternative, a `chunk → blobs` column
//! family written at ingest, would have to be kept right by ingest, gc and mirror sync alike.
//!
//! # Cost
//!
//! In order: a delta `fwrepo publish` precomputed (`Store::precomputed_delta`, no compression),
//! then the in-memory cache keyed by (bases, target) under a byte budget (oldest out first),
//! then computation on blocking threads under a semaphore of `[deltas] workers` permits, never
//! on the async runtime's threads. A request with something to compute takes one of
//! `max_queued_requests` slots first; when none is free it is answered 503 with `Retry-After`
//! at once, so load never queues without limit. The slot stays taken until the request's last
//! computation ends, even when the client went away.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use fwrepo_chunk::delta::{
    self, BasesKey, DeltaRequest, Encoding, FRAME_HEADER_LEN, MAX_BASE_BYTES, MAX_BASES, MAX_ENTRIES,
};
use fwrepo_entitle::{Claims, Scope};
use fwrepo_store::{ChunkId, Digest, Store};
use http::{HeaderValue, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::Body;
use crate::config::DeltaConfig;
use crate::error::ApiError;
use crate::reply::Reply;
use crate::service::{
    Ctx, RequestHead, audit_record, authenticate, authorize, blob_audit_path, not_held, read_json_limited,
};
use crate::state::ServerState;

/// The reply's media type.
pub const CONTENT_TYPE: &str = "application/vnd.fwrepo.chunk-deltas";

/// Most target-chunk bytes one request may ask for (the client splits larger batches).
pub const MAX_TARGET_BYTES: u64 = 16 << 20;

/// Largest request body: `MAX_ENTRIES` entries naming a target and `MAX_BASES` bases in hex,
/// with room for whitespace.
const MAX_BODY: usize = MAX_ENTRIES * (128 + 96 * MAX_BASES) + 1024;

/// Bytes charged to the cache per entry beyond its payload (key, map and queue slots).
const CACHE_ENTRY_OVERHEAD: u64 = 128;

/// What a reply frame depends on: the bases (in order) and the target.
type Key = (BasesKey, ChunkId);

/// The endpoint's shared state: pool, queue bound, cache, chunk owners and counters.
pub(crate) struct Deltas {
    level: i32,
    workers: Arc<Semaphore>,
    worker_count: usize,
    queue: Arc<Semaphore>,
    retry_after_s: u64,
    cache: Mutex<Cache>,
    owners: Mutex<Option<(Digest, Arc<ChunkOwners>)>>,
    /// Set by a refresh: the catalog may have changed, check before trusting `owners`.
    owners_stale: AtomicBool,
    /// Serializes rebuilds of `owners` (one at a time, the others wait and reuse it).
    rebuild: Mutex<()>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    entries: AtomicU64,
    bytes_out: AtomicU64,
    bases_dropped: AtomicU64,
    precomputed: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    computations: AtomicU64,
    compute_us: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    refused_busy: AtomicU64,
    owner_rebuilds: AtomicU64,
    owner_chunks: AtomicU64,
}

impl Deltas {
    pub(crate) fn new(config: &DeltaConfig) -> Deltas {
        let worker_count = config.worker_count();
        Deltas {
            level: config.level,
            workers: Arc::new(Semaphore::new(worker_count)),
            worker_count,
            queue: Arc::new(Semaphore::new(config.max_queued_requests)),
            retry_after_s: config.retry_after_s,
            cache: Mutex::new(Cache::new(config.cache_bytes)),
            owners: Mutex::new(None),
            owners_stale: AtomicBool::new(true),
            rebuild: Mutex::new(()),
            counters: Arc::new(Counters::default()),
        }
    }

    /// The catalog may have changed (a refresh round ran).
    pub(crate) fn catalog_may_have_changed(&self) {
        self.owners_stale.store(true, Relaxed);
    }

    /// The `/metrics` lines of the endpoint.
    pub(crate) fn render(&self, out: &mut String) {
        let c = &self.counters;
        let (cache_bytes, cache_entries, cache_budget) = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            (cache.bytes, cache.map.len(), cache.budget)
        };
        let lines: [(&str, &str, &str, u64); 16] = [
            ("fwrepo_delta_entries_total", "counter", "Delta entries answered.", c.entries.load(Relaxed)),
            ("fwrepo_delta_bytes_out_total", "counter", "Bytes of delta replies.", c.bytes_out.load(Relaxed)),
            (
                "fwrepo_delta_bases_dropped_total",
                "counter",
                "Named bases answered as no base (not a chunk of a blob the token may see, or unknown).",
                c.bases_dropped.load(Relaxed),
            ),
            (
                "fwrepo_delta_precomputed_total",
                "counter",
                "Entries answered from deltas publish precomputed.",
                c.precomputed.load(Relaxed),
            ),
            (
                "fwrepo_delta_cache_hits_total",
                "counter",
                "Entries answered from the cache.",
                c.cache_hits.load(Relaxed),
            ),
            (
                "fwrepo_delta_cache_misses_total",
                "counter",
                "Entries neither precomputed nor cached.",
                c.cache_misses.load(Relaxed),
            ),
            (
                "fwrepo_delta_computations_total",
                "counter",
                "Deltas compressed on demand.",
                c.computations.load(Relaxed),
            ),
            (
                "fwrepo_delta_compute_microseconds_total",
                "counter",
                "Time spent compressing deltas, in microseconds.",
                c.compute_us.load(Relaxed),
            ),
            (
                "fwrepo_delta_computations_active",
                "gauge",
                "Deltas being compressed now.",
                c.active.load(Relaxed) as u64,
            ),
            (
                "fwrepo_delta_computations_active_max",
                "gauge",
                "Most deltas compressed at once since start.",
                c.max_active.load(Relaxed) as u64,
            ),
            ("fwrepo_delta_workers", "gauge", "Deltas that may be compressed at once.", self.worker_count as u64),
            (
                "fwrepo_delta_refused_busy_total",
                "counter",
                "Delta requests answered 503 because the queue was full.",
                c.refused_busy.load(Relaxed),
            ),
            ("fwrepo_delta_cache_bytes", "gauge", "Bytes held by the delta cache.", cache_bytes),
            ("fwrepo_delta_cache_budget_bytes", "gauge", "Byte budget of the delta cache.", cache_budget),
            ("fwrepo_delta_cache_entries", "gauge", "Deltas held by the cache.", cache_entries as u64),
            (
                "fwrepo_delta_owner_chunks",
                "gauge",
                "Chunks in the chunk-owner map that checks bases.",
                c.owner_chunks.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let name = "fwrepo_delta_owner_rebuilds_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times the chunk-owner map was built.\n# TYPE {name} counter\n{name} {}",
            c.owner_rebuilds.load(Relaxed)
        );
    }

    /// The chunk-owner map for the catalog as the server sees it now (built or rebuilt on a
    /// blocking thread when needed).
    async fn owners(&self, state: &Arc<ServerState>) -> Result<Arc<ChunkOwners>, ApiError> {
        if !self.owners_stale.load(Relaxed)
            && let Some((_, o)) = &*self.owners.lock().unwrap_or_else(|p| p.into_inner())
        {
            return Ok(Arc::clone(o));
        }
        let st = Arc::clone(state);
        tokio::task::spawn_blocking(move || st.deltas().refresh_owners(&st)).await.map_err(ApiError::internal)?
    }

    fn refresh_owners(&self, state: &ServerState) -> Result<Arc<ChunkOwners>, ApiError> {
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.owners.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !self.owners_stale.load(Relaxed)
            && let Some((_, o)) = &current
        {
            return Ok(Arc::clone(o));
        }
        // Cleared before reading, so a refresh during the build marks it stale again.
        self.owners_stale.store(false, Relaxed);
        let catalog = state.catalog();
        let releases = catalog.release_ids().map_err(ApiError::internal)?;
        let mut fp = Vec::with_capacity(releases.len() * 16);
        for r in &releases {
            fp.extend_from_slice(r.as_str().as_bytes());
            fp.push(0);
        }
        let fingerprint = Digest::of(&fp);
        if let Some((f, o)) = &current
            && *f == fingerprint
        {
            return Ok(Arc::clone(o));
        }
        let owners = Arc::new(ChunkOwners::build(state, &releases)?);
        self.counters.owner_rebuilds.fetch_add(1, Relaxed);
        self.counters.owner_chunks.store(owners.chunks.len() as u64, Relaxed);
        *self.owners.lock().unwrap_or_else(|p| p.into_inner()) = Some((fingerprint, Arc::clone(&owners)));
        Ok(owners)
    }

    fn cached(&self, key: &Key) -> Option<(Encoding, Bytes)> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(key)
    }
}

/// Chunk id → the model lists of the catalog blobs that hold it.
pub(crate) struct ChunkOwners {
    /// Distinct model lists of blobs (as `catalog.blob_models` gives them).
    groups: Vec<Vec<String>>,
    /// Distinct sets of group indexes.
    sets: Vec<Box<[u32]>>,
    /// Chunk → (set index, length).
    chunks: HashMap<ChunkId, (u32, u32)>,
}

impl ChunkOwners {
    fn build(state: &ServerState, releases: &[fwrepo_catalog::ReleaseId]) -> Result<ChunkOwners, ApiError> {
        let catalog = state.catalog();
        let store = state.store();
        let mut blobs = HashSet::new();
        for id in releases {
            if let Some(release) = catalog.release(id).map_err(ApiError::internal)? {
                blobs.extend(release.components.iter().map(|c| c.blob));
            }
        }
        let mut group_ids: HashMap<Vec<String>, u32> = HashMap::new();
        let mut groups = Vec::new();
        let mut set_ids: HashMap<Box<[u32]>, u32> = HashMap::new();
        let mut sets: Vec<Box<[u32]>> = Vec::new();
        let mut chunks: HashMap<ChunkId, (u32, u32)> = HashMap::new();
        for blob in blobs {
            let index = match store.chunk_index(&blob) {
                Ok(i) => i,
                // Named but not held (a mirror that does not carry it): it lends no bases.
                Err(fwrepo_store::Error::UnknownBlob { .. }) => continue,
                Err(e) => return Err(ApiError::internal(e)),
            };
            let mut models: Vec<String> =
                catalog.blob_models(&blob).map_err(ApiError::internal)?.iter().map(|m| m.as_str().to_owned()).collect();
            models.sort();
            let g = *group_ids.entry(models.clone()).or_insert_with(|| {
                groups.push(models);
                (groups.len() - 1) as u32
            });
            for (id, len) in &index.chunks {
                let next = match chunks.get(id) {
                    None => intern(&mut set_ids, &mut sets, Box::new([g])),
                    Some(&(s, _)) if sets[s as usize].contains(&g) => continue,
                    Some(&(s, _)) => {
                        let mut v = sets[s as usize].to_vec();
                        v.push(g);
                        v.sort_unstable();
                        intern(&mut set_ids, &mut sets, v.into_boxed_slice())
                    }
                };
                chunks.insert(*id, (next, *len));
            }
        }
        Ok(ChunkOwners { groups, sets, chunks })
    }

    /// The length of `chunk` when it is in some blob `claims` may download; `memo` keeps
    /// per-group answers for one request.
    fn entitled(&self, claims: &Claims, chunk: &ChunkId, memo: &mut HashMap<u32, bool>) -> Option<u32> {
        let &(set, len) = self.chunks.get(chunk)?;
        self.sets[set as usize]
            .iter()
            .any(|&g| {
                *memo.entry(g).or_insert_with(|| claims.authorize(Scope::Download, &self.groups[g as usize]).is_ok())
            })
            .then_some(len)
    }
}

/// The index of `set` in `sets`, added if new.
fn intern(ids: &mut HashMap<Box<[u32]>, u32>, sets: &mut Vec<Box<[u32]>>, set: Box<[u32]>) -> u32 {
    *ids.entry(set.clone()).or_insert_with(|| {
        sets.push(set);
        (sets.len() - 1) as u32
    })
}

/// Computed deltas under a byte budget, oldest out first.
struct Cache {
    map: HashMap<Key, (Encoding, Bytes)>,
    order: VecDeque<Key>,
    bytes: u64,
    budget: u64,
}

impl Cache {
    fn new(budget: u64) -> Cache {
        Cache { map: HashMap::new(), order: VecDeque::new(), bytes: 0, budget }
    }

    fn get(&self, key: &Key) -> Option<(Encoding, Bytes)> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: Key, value: (Encoding, Bytes)) {
        let cost = value.1.len() as u64 + CACHE_ENTRY_OVERHEAD;
        if cost > self.budget / 4 || self.map.contains_key(&key) {
            return;
        }
        while self.bytes + cost > self.budget {
            let Some(old) = self.order.pop_front() else { break };
            if let Some((_, b)) = self.map.remove(&old) {
                self.bytes -= b.len() as u64 + CACHE_ENTRY_OVERHEAD;
            }
        }
        self.bytes += cost;
        self.order.push_back(key);
        self.map.insert(key, value);
    }
}

/// Where a target chunk lies in the blob.
#[derive(Clone, Copy)]
struct Span {
    start: u64,
    len: u32,
}

/// The handler.
pub(crate) async fn handle<B>(
    state: &Arc<ServerState>,
    parts: &RequestHead<'_>,
    body: B,
    id: &str,
    path: &str,
    ctx: &mut Ctx,
) -> Result<Reply, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let claims = authenticate(state, parts)?;
    let blob = id.parse::<Digest>().ok();
    ctx.audit = Some(audit_record(parts, ctx.client, &claims, blob, blob_audit_path(blob, "/deltas", path)));
    let (blob, facts) = authorize(state, &claims, blob)?;
    if facts.len.is_none() {
        return Err(not_held(state));
    }
    let request: DeltaRequest = read_json_limited(state, parts, body, MAX_BODY).await.map_err(|e| match e {
        ApiError::PayloadTooLarge => ApiError::TooLarge(format!("a delta request body is at most {MAX_BODY} bytes")),
        e => e,
    })?;
    let mut entries = request.entries;
    if entries.len() > MAX_ENTRIES {
        return Err(ApiError::TooLarge(format!("at most {MAX_ENTRIES} entries per request")));
    }

    // Every target must be a chunk of the blob.
    let index = state.store().chunk_index(&blob)?;
    let mut spans: HashMap<ChunkId, Span> = HashMap::with_capacity(index.chunks.len());
    let mut at = 0u64;
    for (id, len) in &index.chunks {
        spans.entry(*id).or_insert(Span { start: at, len: *len });
        at += u64::from(*len);
    }
    let mut total = 0u64;
    let mut targets = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let span = *spans.get(&e.target).ok_or(ApiError::TargetNotInBlob(i))?;
        total += u64::from(span.len);
        targets.push(span);
    }
    if total > MAX_TARGET_BYTES {
        return Err(ApiError::TooLarge(format!("at most {MAX_TARGET_BYTES} bytes of target chunks per request")));
    }

    // Every base must be a chunk of a blob the token may see; an entry naming any other is
    // answered as one that named none.
    let deltas = state.deltas();
    if let Some((i, e)) = entries.iter().enumerate().find(|(_, e)| e.bases.len() > MAX_BASES) {
        return Err(ApiError::TooLarge(format!("entry {i} names {} bases, at most {MAX_BASES}", e.bases.len())));
    }
    if entries.iter().any(|e| !e.bases.is_empty()) {
        let owners = deltas.owners(state).await?;
        let mut memo = HashMap::new();
        for (i, e) in entries.iter_mut().enumerate() {
            let mut bytes = 0usize;
            for b in &e.bases {
                match owners.entitled(&claims, b, &mut memo) {
                    Some(len) => bytes += len as usize,
                    None => {
                        bytes = 0;
                        e.bases.clear();
                        deltas.counters.bases_dropped.fetch_add(1, Relaxed);
                        break;
                    }
                }
            }
            if bytes > MAX_BASE_BYTES {
                return Err(ApiError::TooLarge(format!(
                    "entry {i} names {bytes} bytes of bases, at most {MAX_BASE_BYTES}"
                )));
            }
        }
    }
    let keys: Vec<Key> = entries.iter().map(|e| (BasesKey::of(&e.bases), e.target)).collect();
    let no_bases = BasesKey::of(&[]);

    // Precomputed, cached, or to compute (each distinct key once).
    let store = state.store();
    let mut found: HashMap<Key, (Encoding, Bytes)> = HashMap::new();
    let mut todo: Vec<(Key, Vec<ChunkId>, Span)> = Vec::new();
    for ((key, span), entry) in keys.iter().zip(&targets).zip(&entries) {
        if found.contains_key(key) || todo.iter().any(|(k, _, _)| k == key) {
            continue;
        }
        if key.0 != no_bases
            && let Some(d) = store.precomputed_delta(&key.0, &key.1)?
        {
            deltas.counters.precomputed.fetch_add(1, Relaxed);
            found.insert(*key, d);
            continue;
        }
        match deltas.cached(key) {
            Some(d) => {
                deltas.counters.cache_hits.fetch_add(1, Relaxed);
                found.insert(*key, d);
            }
            None => {
                deltas.counters.cache_misses.fetch_add(1, Relaxed);
                todo.push((*key, entry.bases.clone(), *span));
            }
        }
    }
    if !todo.is_empty() {
        let slot = Arc::clone(&deltas.queue).try_acquire_owned().map_err(|_| {
            deltas.counters.refused_busy.fetch_add(1, Relaxed);
            ApiError::Unavailable { retry_after_s: deltas.retry_after_s }
        })?;
        let slot = Arc::new(slot);
        let mut jobs = tokio::task::JoinSet::new();
        for (key, bases, span) in todo {
            let st = Arc::clone(state);
            let slot = Arc::clone(&slot);
            jobs.spawn(async move {
                let _slot = slot;
                let d = st.deltas();
                let permit = Arc::clone(&d.workers).acquire_owned().await.map_err(ApiError::internal)?;
                let st2 = Arc::clone(&st);
                let out = tokio::task::spawn_blocking(move || compute(&st2, &blob, key, &bases, span, permit))
                    .await
                    .map_err(ApiError::internal)??;
                Ok::<_, ApiError>((key, out))
            });
        }
        while let Some(r) = jobs.join_next().await {
            let (key, out) = r.map_err(ApiError::internal)??;
            found.insert(key, out);
        }
    }

    let mut chunks = Vec::with_capacity(keys.len() * 2);
    let mut len = 0u64;
    for key in &keys {
        let (enc, payload) = found.get(key).cloned().ok_or_else(|| ApiError::internal("delta entry not resolved"))?;
        let mut head = Vec::with_capacity(FRAME_HEADER_LEN);
        delta::write_frame(&mut head, enc, &[]);
        head[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        len += (FRAME_HEADER_LEN + payload.len()) as u64;
        chunks.push(Bytes::from(head));
        chunks.push(payload);
    }
    deltas.counters.entries.fetch_add(keys.len() as u64, Relaxed);
    deltas.counters.bytes_out.fetch_add(len, Relaxed);
    let mut resp = Reply::new(Body::from_chunks(chunks));
    let h = resp.headers_mut();
    h.append(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.append(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.append(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(resp)
}

/// Compresses one delta on a blocking thread holding a worker permit, and caches it.
fn compute(
    state: &ServerState,
    blob: &Digest,
    key: Key,
    bases: &[ChunkId],
    span: Span,
    permit: OwnedSemaphorePermit,
) -> Result<(Encoding, Bytes), ApiError> {
    let d = state.deltas();
    let store: Arc<Store> = state.store();
    let parts = store.read_range(blob, span.start..span.start + u64::from(span.len))?;
    let target: Bytes = match parts.len() {
        1 => parts.into_iter().next().expect("one part"),
        _ => Bytes::from(parts.concat()),
    };
    // The owner map said the store holds them; gc may have taken one since. Then this one
    // answer goes without bases, and is not cached under the bases' key.
    let mut prefix = Vec::new();
    let all_read = store.read_bases(bases, &mut prefix)?;
    let active = d.counters.active.fetch_add(1, Relaxed) + 1;
    d.counters.max_active.fetch_max(active, Relaxed);
    let started = Instant::now();
    let encoded = delta::encode(&target, (!prefix.is_empty()).then_some(prefix.as_slice()), d.level);
    d.counters.active.fetch_sub(1, Relaxed);
    drop(permit);
    d.counters.computations.fetch_add(1, Relaxed);
    d.counters.compute_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    let (enc, payload) = encoded.map_err(ApiError::internal)?;
    let out = (enc, Bytes::from(payload));
    if all_read {
        d.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, out.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_stays_within_its_byte_budget_and_drops_oldest_first() {
        let mut c = Cache::new(10_000);
        let key = |n: u8| (BasesKey::of(&[]), Digest::of(&[n]));
        for n in 0..50u8 {
            c.insert(key(n), (Encoding::Raw, Bytes::from(vec![n; 1000])));
            assert!(c.bytes <= c.budget, "{} > {}", c.bytes, c.budget);
        }
        assert!(c.get(&key(0)).is_none());
        assert!(c.get(&key(49)).is_some());
        // Too big for a quarter of the budget: not cached at all.
        c.insert(key(200), (Encoding::Raw, Bytes::from(vec![0; 5000])));
        assert!(c.get(&key(200)).is_none());
    }
}
