//! One sync: the stored token or a token exchange, TUF refresh from the pinned root, the chunks the store lacks for
//! every target in scope (as chunk-pair deltas against the previous version of the same
//! component where the store holds one and the upstream has the endpoint, else as ranges),
//! blob assembly, then the one-batch switch.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use fwrepo_chunk::bases::{choose_bases, shared_chunks};
use fwrepo_db::WriteBatch;
use fwrepo_fetch::{
    BaseSource, Bases, BoxError, ChunkSink, FetchOptions, FetchedMetadata, Fetcher, HttpOptions, HttpTransport,
    MetadataStore, RemoteBlob, StoredMetadata, Transport, VerifiedChunk,
};
use fwrepo_store::{Digest, ExpectedBlob};
use fwrepo_tuf::{FwCustom, Limits, RoleName, Signed, Snapshot, TargetInfo, Timestamp, layout};
use serde::Serialize;

use crate::Mirror;
use crate::error::{Error, Result};
use crate::state::{self, StoredToken, SyncStatus};

/// Largest token service answer read.
const MAX_TOKEN_REPLY: u64 = 64 * 1024;
/// Verified chunks buffered before one durable `put_chunks`.
const FLUSH_BYTES: usize = 8 << 20;

/// What one sync did: the keys `fwrepo mirror sync --json` prints.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// Every byte received from the upstream and the token service: heads and bodies.
    pub wire_bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Bytes of the chunks fetched (what the store lacked).
    pub chunk_bytes_fetched: u64,
    /// Bytes of chunk-pair delta frames received for them (part of `wire_bytes`).
    pub delta_bytes: u64,
    pub chunks_fetched: u64,
    /// Bytes of in-scope blobs the store already held (whole blobs and shared chunks).
    pub bytes_present: u64,
    /// Blobs that became visible in this sync.
    pub targets_new: u64,
    /// Targets in scope of the new metadata.
    pub targets_in_scope: u64,
    /// Releases added to the catalog.
    pub releases_new: Vec<String>,
    pub timestamp_version_before: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub targets_version: u64,
    /// The upstream's `timestamp.json` was unchanged: nothing else was done.
    pub unchanged: bool,
    pub seconds: f64,
}

/// A sync's settings beyond `mirror.toml`.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub fetch: FetchOptions,
    pub http: HttpOptions,
}

/// The metadata a refresh sees: files staged by this sync first, then the committed state
/// (what the mirror serves). Staged files reach the index only in the switch.
struct Staging<'a> {
    mirror: &'a Mirror,
    pinned: &'a [u8],
    staged: Mutex<Vec<FetchedMetadata>>,
}

impl Staging<'_> {
    fn committed(&self, name: &str) -> fwrepo_repo::Result<Option<Vec<u8>>> {
        fwrepo_repo::read_metadata(self.mirror.store().db(), name)
    }

    fn committed_role(&self, role: &RoleName) -> std::result::Result<Option<StoredMetadata>, BoxError> {
        let db = self.mirror.store().db();
        if *role == RoleName::root() {
            let mut n = 0;
            while self.committed(&layout::root_file(n + 1))?.is_some() {
                n += 1;
            }
            if n == 0 {
                return Ok(None);
            }
            return Ok(self.committed(&layout::root_file(n))?.map(|bytes| StoredMetadata { bytes, etag: None }));
        }
        let Some(ts) = self.committed(layout::TIMESTAMP_FILE)? else { return Ok(None) };
        if *role == RoleName::timestamp() {
            return Ok(Some(StoredMetadata { bytes: ts, etag: state::etag(db)? }));
        }
        let ts = Signed::<Timestamp>::from_bytes(&RoleName::timestamp(), &ts)?;
        let snap_name = layout::versioned_file(&RoleName::snapshot(), ts.signed.snapshot_meta().version);
        let Some(snap) = self.committed(&snap_name)? else { return Ok(None) };
        if *role == RoleName::snapshot() {
            return Ok(Some(StoredMetadata { bytes: snap, etag: None }));
        }
        let snap = Signed::<Snapshot>::from_bytes(&RoleName::snapshot(), &snap)?;
        let Some(meta) = snap.signed.meta.get(&format!("{role}.json")) else { return Ok(None) };
        Ok(self
            .committed(&layout::versioned_file(role, meta.version))?
            .map(|bytes| StoredMetadata { bytes, etag: None }))
    }

    fn files(&self) -> Vec<FetchedMetadata> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl MetadataStore for Staging<'_> {
    fn load(&self, role: &RoleName) -> std::result::Result<Option<StoredMetadata>, BoxError> {
        let staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = staged.iter().rev().find(|f| f.role == *role) {
            return Ok(Some(StoredMetadata { bytes: f.bytes.clone(), etag: f.etag.clone() }));
        }
        drop(staged);
        let found = self.committed_role(role)?;
        if found.is_none() && *role == RoleName::root() {
            return Ok(Some(StoredMetadata { bytes: self.pinned.to_vec(), etag: None }));
        }
        Ok(found)
    }

    fn save(&self, file: &FetchedMetadata) -> std::result::Result<(), BoxError> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner()).push(file.clone());
        Ok(())
    }
}

/// Verified chunks into the store, a durable batch every [`FLUSH_BYTES`].
struct StoreSink<'a> {
    store: &'a fwrepo_store::Store,
    buf: Mutex<(Vec<(Digest, Bytes)>, usize)>,
}

impl StoreSink<'_> {
    fn flush(&self) -> fwrepo_store::Result<()> {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if buf.0.is_empty() {
            return Ok(());
        }
        self.store.put_chunks(buf.0.iter().map(|(id, b)| (*id, &b[..])))?;
        buf.0.clear();
        buf.1 = 0;
        Ok(())
    }
}

impl ChunkSink for StoreSink<'_> {
    fn put(&self, chunk: &VerifiedChunk) -> std::result::Result<(), BoxError> {
        let full = {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            buf.0.push((*chunk.id(), chunk.bytes().clone()));
            buf.1 += chunk.bytes().len();
            buf.1 >= FLUSH_BYTES
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }
}

/// Delta bases from the store: chunks of blobs it holds, read as slices of its packs.
struct StoreBases<'a> {
    store: &'a fwrepo_store::Store,
    /// Base chunk → (blob holding it, offset, length).
    at: HashMap<Digest, (Digest, u64, u32)>,
}

impl BaseSource for StoreBases<'_> {
    fn read_base(&self, id: &Digest) -> Option<Bytes> {
        let &(blob, offset, len) = self.at.get(id)?;
        let parts = self.store.read_range(&blob, offset..offset + u64::from(len)).ok()?;
        Some(match parts.as_slice() {
            [one] => one.clone(),
            _ => Bytes::from(parts.concat()),
        })
    }
}

/// The signed component name of a firmware target.
fn component_name(t: &TargetInfo) -> Option<String> {
    let custom = t.file.custom.clone()?;
    serde_json::from_value::<FwCustom>(custom).ok().map(|fw| fw.component.name)
}

/// For each blob to fetch, per chunk: the bases to ask its delta against, from the previous
/// version of the same component the store holds (of the stored blobs of that component, the
/// one sharing the most chunks with it, even none: a rebuilt compressed image shares no chunk
/// yet many bytes), and where the store keeps each base.
fn store_bases<'a>(
    store: &'a fwrepo_store::Store,
    remote: &[(RemoteBlob, &InScope)],
    in_scope: &[InScope],
) -> Result<(Vec<Vec<Vec<Digest>>>, StoreBases<'a>)> {
    let mut held: HashMap<String, Vec<Digest>> = HashMap::new();
    for t in in_scope {
        if let Some(name) = component_name(&t.info)
            && store.contains(&t.blob)?
        {
            held.entry(name).or_default().push(t.blob);
        }
    }
    let mut indexes: HashMap<Digest, fwrepo_store::ChunkIndex> = HashMap::new();
    let mut at = HashMap::new();
    let mut chosen = Vec::with_capacity(remote.len());
    for (r, t) in remote {
        let target = &r.index.chunks;
        let mut best: Option<(usize, Digest)> = None;
        for old in component_name(&t.info).and_then(|n| held.get(&n)).into_iter().flatten() {
            if !indexes.contains_key(old) {
                indexes.insert(*old, store.chunk_index(old)?);
            }
            let n = shared_chunks(target, &indexes[old].chunks);
            if best.is_none_or(|(m, _)| n > m) {
                best = Some((n, *old));
            }
        }
        let Some((_, old)) = best else {
            chosen.push(Vec::new());
            continue;
        };
        let seed = &indexes[&old];
        let bases = choose_bases(target, &seed.chunks);
        let wanted: HashSet<Digest> = bases.iter().flatten().copied().collect();
        for (offset, (id, len)) in seed.offsets() {
            if wanted.contains(id) {
                at.entry(*id).or_insert((old, offset, *len));
            }
        }
        chosen.push(bases);
    }
    Ok((chosen, StoreBases { store, at }))
}

/// A target's signed facts the mirror needs: the blob and, for firmware, the models.
struct InScope {
    info: TargetInfo,
    blob: Digest,
    sha256: [u8; 32],
}

fn target_facts(t: &TargetInfo) -> Result<(Digest, [u8; 32], Option<Vec<String>>)> {
    let bad = |reason: String| Error::Target { target: t.path.to_string(), reason };
    let custom = t.file.custom.as_ref().ok_or_else(|| bad("signed metadata has no custom".into()))?;
    let blob = custom
        .get("blake3")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("no custom.blake3".into()))?
        .parse::<Digest>()
        .map_err(|e| bad(format!("custom.blake3: {e}")))?;
    let sha = t.file.hashes.get("sha256").ok_or_else(|| bad("no sha256 hash".into()))?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(sha, &mut sha256).map_err(|e| bad(format!("sha256: {e}")))?;
    let models = serde_json::from_value::<FwCustom>(custom.clone()).ok().map(|fw| fw.component.models);
    Ok((blob, sha256, models))
}

/// The token: `POST {token_url}/v1/tokens` with the partner credential, scope `mirror`.
/// Returns the token, the models it covers (`["*"]` for all) and its lifetime.
async fn exchange<T: Transport>(fetcher: &Fetcher<T>, url: &str, credential: &str) -> Result<StoredToken> {
    let body = serde_json::json!({ "partner_credential": credential, "scope": "mirror" });
    let (status, bytes) = fetcher.post_json("/v1/tokens", &body, MAX_TOKEN_REPLY).await?;
    let received_at = crate::now().timestamp();
    let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let refuse = |reason: String| Error::Token { url: url.to_owned(), reason };
    if !status.is_success() {
        let why = reply
            .get("reason")
            .or_else(|| reply.get("error"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned());
        return Err(refuse(format!("HTTP {}: {why}", status.as_u16())));
    }
    let token = reply.get("token").and_then(|v| v.as_str()).ok_or_else(|| refuse("no token in the answer".into()))?;
    let scope = reply.get("scope").and_then(|v| v.as_str()).unwrap_or("");
    if scope != "mirror" {
        return Err(refuse(format!("got a {scope:?} token; syncing needs scope mirror")));
    }
    let models = reply
        .get("models")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    // The lifetime as this host's clock counts it (`expires_in`), so a skewed clock does not
    // make a token look longer-lived than it is; without one the token is never reused.
    let expires_at = reply.get("expires_in").and_then(|v| v.as_i64()).map_or(received_at, |s| received_at + s);
    Ok(StoredToken {
        token_url: url.trim_end_matches('/').to_owned(),
        credential_blake3: state::credential_digest(credential),
        token: token.to_owned(),
        models,
        received_at,
        expires_at,
    })
}

/// Whether the upstream refused the token: 401 (bad, expired or revoked) or 403 (not
/// entitled, say after the partner's records changed).
fn token_refused(e: &Error) -> Option<u16> {
    match e {
        Error::Fetch(f) => f.status().filter(|s| *s == 401 || *s == 403),
        _ => None,
    }
}

pub(crate) fn covers(set: &[String], models: &[String]) -> bool {
    set.iter().any(|s| s == "*") || models.iter().any(|m| set.contains(m))
}

impl Mirror {
    /// One sync over HTTP against the configured upstream and token service.
    pub async fn sync(&self, opts: &SyncOptions) -> Result<SyncReport> {
        let upstream = HttpTransport::new(&self.config().upstream, &opts.http)?;
        if self.config().token_url.trim_end_matches('/') == self.config().upstream.trim_end_matches('/') {
            self.sync_over(upstream, None::<HttpTransport>, &opts.fetch).await
        } else {
            let tokens = HttpTransport::new(&self.config().token_url, &opts.http)?;
            self.sync_over(upstream, Some(tokens), &opts.fetch).await
        }
    }

    /// One sync through the given transports (the token service defaults to the upstream).
    /// Records the outcome in the status either way.
    pub async fn sync_over<T: Transport, U: Transport>(
        &self,
        upstream: T,
        tokens: Option<U>,
        fetch: &FetchOptions,
    ) -> Result<SyncReport> {
        let _busy = self.busy("sync")?;
        let t0 = Instant::now();
        let started = crate::now().timestamp();
        let fetcher = Fetcher::new(upstream, fetch.clone());
        let token_fetcher = tokens.map(|t| Fetcher::new(t, fetch.clone()));
        let mut pending = Vec::new();
        let result = self.run(&fetcher, token_fetcher.as_ref(), &mut pending, t0, started).await;
        let mut w = fetcher.transport().wire().stats();
        if let Some(tf) = &token_fetcher {
            let s = tf.transport().wire().stats();
            w.head_bytes += s.head_bytes;
            w.body_bytes += s.body_bytes;
            w.requests += s.requests;
        }
        match result {
            Ok(mut r) => {
                r.wire_bytes = w.wire_bytes();
                r.requests = w.requests;
                r.seconds = t0.elapsed().as_secs_f64();
                self.record_wire(&r)?;
                Ok(r)
            }
            Err(e) => {
                self.record_failure(started, &e, w.wire_bytes(), pending)?;
                Err(e)
            }
        }
    }

    /// A sync with the stored token while it is issued for the configured token service and
    /// credential and has long enough to live, else with a fresh one (then stored). When the
    /// upstream refuses a stored token (401, 403), the token is dropped and the sync runs once
    /// more with a fresh one; a refused fresh token fails the sync.
    async fn run<T: Transport, U: Transport>(
        &self,
        fetcher: &Fetcher<T>,
        token_fetcher: Option<&Fetcher<U>>,
        pending: &mut Vec<String>,
        t0: Instant,
        started: i64,
    ) -> Result<SyncReport> {
        let config = self.config();
        let credential = config.credential()?;
        let stored = state::read_token(self.dir())
            .filter(|t| t.issued_for(&config.token_url, &credential) && t.fresh_at(crate::now().timestamp()));
        let mut reused = stored.is_some();
        let mut token = match stored {
            Some(t) => t,
            None => self.fresh_token(fetcher, token_fetcher, &credential).await?,
        };
        loop {
            pending.clear();
            let result = self.run_with(fetcher, &token, pending, t0, started).await;
            match result.as_ref().err().and_then(token_refused) {
                Some(_) if reused => {
                    tracing::info!("the upstream refused the stored token; exchanging the credential again");
                    token = self.fresh_token(fetcher, token_fetcher, &credential).await?;
                    reused = false;
                }
                Some(status) => {
                    state::remove_token(self.dir())?;
                    let reason = result.err().map(|e| e.to_string()).unwrap_or_default();
                    return Err(Error::TokenRefused { token_url: config.token_url.clone(), status, reason });
                }
                None => return result,
            }
        }
    }

    /// A new token from the token service (the upstream unless configured), stored for the
    /// next syncs.
    async fn fresh_token<T: Transport, U: Transport>(
        &self,
        fetcher: &Fetcher<T>,
        token_fetcher: Option<&Fetcher<U>>,
        credential: &str,
    ) -> Result<StoredToken> {
        let url = &self.config().token_url;
        // A token the service no longer gives is not used again either.
        state::remove_token(self.dir())?;
        let token = match token_fetcher {
            Some(tf) => exchange(tf, url, credential).await?,
            None => exchange(fetcher, url, credential).await?,
        };
        if token.fresh_at(token.received_at) {
            state::write_token(self.dir(), &token)?;
        }
        Ok(token)
    }

    async fn run_with<T: Transport>(
        &self,
        fetcher: &Fetcher<T>,
        token: &StoredToken,
        pending: &mut Vec<String>,
        t0: Instant,
        started: i64,
    ) -> Result<SyncReport> {
        let store = self.store();
        let config = self.config();
        let token_models = token.models.clone();
        fetcher.set_bearer(Some(&token.token));
        let scope: Vec<String> = if config.models.is_empty() {
            token_models.clone()
        } else {
            config.models.iter().filter(|m| covers(&token_models, std::slice::from_ref(m))).cloned().collect()
        };

        let staging = Staging { mirror: self, pinned: self.pinned_root(), staged: Mutex::new(Vec::new()) };
        let before = self.status()?;
        let limits = Limits::default();
        let mut refresh = fetcher.refresh(self.pinned_root(), &staging, crate::now(), limits).await?;
        let targets = fetcher.all_targets(&mut refresh.updater, &staging, limits.max_delegations).await?;
        let up = &refresh.updater;
        let version = |role: &RoleName| up.targets(role).map_or(0, |t| t.signed.version);
        let mut report = SyncReport {
            timestamp_version_before: before.timestamp_version,
            timestamp_version: up.timestamp().map_or(0, |t| t.signed.version),
            snapshot_version: up.snapshot().map_or(0, |s| s.signed.version),
            targets_version: version(&RoleName::targets()),
            ..SyncReport::default()
        };

        // Scope: auth documents always (tokens are checked against them), firmware when one of
        // its models is mirrored.
        let mut in_scope = Vec::new();
        for t in &targets {
            let (blob, sha256, models) = target_facts(t)?;
            let wanted = match &models {
                Some(m) => covers(&scope, m),
                None => t.path.as_str().starts_with("auth/"),
            };
            if wanted {
                in_scope.push(InScope { info: t.clone(), blob, sha256 });
            }
        }
        report.targets_in_scope = in_scope.len() as u64;

        // Stage one: blobs. Whole blobs already held need nothing from the upstream.
        let mut remote: Vec<(RemoteBlob, &InScope)> = Vec::new();
        let mut seen = HashSet::new();
        for t in &in_scope {
            if !seen.insert(t.blob) {
                continue;
            }
            match store.blob_info(&t.blob) {
                Ok(info) => report.bytes_present += info.len,
                Err(fwrepo_store::Error::UnknownBlob { .. }) => {
                    pending.push(t.info.path.to_string());
                    remote.push((fetcher.remote_blob(&t.info).await?, t));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let wanted: Vec<Digest> = remote.iter().flat_map(|(r, _)| r.index.chunks.iter().map(|(id, _)| *id)).collect();
        let missing: HashSet<Digest> = store.missing_chunks(&wanted)?.into_iter().collect();
        let blobs: Vec<RemoteBlob> = remote.iter().map(|(r, _)| r.clone()).collect();
        let sink = StoreSink { store, buf: Mutex::new((Vec::new(), 0)) };
        let (chosen, base_source) = store_bases(store, &remote, &in_scope)?;
        let bases = Bases { chosen, source: &base_source };
        let fetched = fetcher.fetch_deltas(&blobs, |id| !missing.contains(id), &bases, &sink).await;
        // Chunks verified before a failure are kept: the next sync does not fetch them again.
        sink.flush()?;
        let fetched = fetched?;
        report.chunks_fetched = fetched.chunks_fetched;
        report.chunk_bytes_fetched = fetched.chunk_bytes_fetched;
        report.delta_bytes = fetched.delta_bytes;
        let mut lens: HashMap<Digest, u32> = HashMap::new();
        for (r, _) in &remote {
            lens.extend(r.index.chunks.iter().copied());
        }
        let fetched_ids: u64 = missing.iter().map(|id| u64::from(lens.get(id).copied().unwrap_or(0))).sum();
        let all: u64 = remote.iter().map(|(r, _)| r.len()).sum();
        report.bytes_present += all.saturating_sub(fetched_ids);
        for (r, t) in &remote {
            store.assemble_blob(&r.index, &ExpectedBlob { blob: t.blob, len: t.info.file.length, sha256: t.sha256 })?;
            report.targets_new += 1;
        }

        // Stage two: the switch. Every blob in scope is complete now.
        let files: Vec<(String, Vec<u8>)> = {
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            if staging.committed(&layout::root_file(1))?.is_none() {
                files.push((layout::root_file(1), self.pinned_root().to_vec()));
            }
            files.extend(staging.files().into_iter().map(|f| (f.name, f.bytes)));
            files
        };
        report.unchanged = refresh.timestamp_unchanged && files.is_empty();
        let repo = fwrepo_repo::Repo::over(store.clone());
        let mut batch = WriteBatch::default();
        report.releases_new =
            repo.stage_mirror_switch(&files, targets.iter().map(|t| (&t.path, &t.file)), &mut batch)?;
        let ts_etag = staging.files().into_iter().rev().find(|f| f.role == RoleName::timestamp()).map(|f| f.etag);
        if let Some(etag) = ts_etag {
            state::stage_etag(store.db(), etag.as_deref(), &mut batch)?;
        }
        let status = SyncStatus {
            upstream: self.config().upstream.clone(),
            last_attempt: Some(started),
            last_success: Some(crate::now().timestamp()),
            consecutive_failures: 0,
            last_error: None,
            root_version: up.root().signed.version,
            timestamp_version: report.timestamp_version,
            snapshot_version: report.snapshot_version,
            targets_version: report.targets_version,
            timestamp_expires: up.timestamp().map(|t| t.signed.expires.timestamp()),
            scope: scope.clone(),
            targets_in_scope: report.targets_in_scope,
            pending: Vec::new(),
            wire_bytes_total: before.wire_bytes_total,
            chunk_bytes_total: before.chunk_bytes_total + report.chunk_bytes_fetched,
            chunks_total: before.chunks_total + report.chunks_fetched,
        };
        state::stage_status(store.db(), &status, &mut batch)?;
        store.db().write(batch, true)?;
        pending.clear();
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    fn record_wire(&self, r: &SyncReport) -> Result<()> {
        let mut s = self.status()?;
        s.wire_bytes_total += r.wire_bytes;
        self.write_status(&s)
    }

    fn record_failure(&self, started: i64, e: &Error, wire: u64, pending: Vec<String>) -> Result<()> {
        let mut s = self.status()?;
        s.upstream = self.config().upstream.clone();
        s.last_attempt = Some(started);
        s.consecutive_failures += 1;
        s.last_error = Some(e.to_string());
        s.pending = pending;
        s.wire_bytes_total += wire;
        self.write_status(&s)
    }

    fn write_status(&self, s: &SyncStatus) -> Result<()> {
        let mut batch = WriteBatch::default();
        state::stage_status(self.store().db(), s, &mut batch)?;
        Ok(self.store().db().write(batch, true)?)
    }
}
