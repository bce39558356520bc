//! What a running server shares between requests: the store, the catalog, the token verifier
//! and cache, the metadata source, metrics, the audit log, and a cache of blob facts.
//!
//! # Refresh
//!
//! The server reads the data dir as a RocksDB secondary and follows the writer with
//! [`ServerState::refresh_every`]: each round catches the store up and installs a verifier
//! built from what is now visible (issuer keys, revocations). A secondary cannot gain column
//! families by catching up, so when the writer has created families the server lacked (a data
//! dir from an older fwrepo, upgraded by a writer command while the server ran) the round
//! opens the store again and swaps it in; requests in flight finish on the old one.
//!
//! Revocations must always take effect, so stale revocation data fails closed: once a
//! refresher runs, gated downloads answer 503 (with `Retry-After`) whenever the last
//! successful refresh is older than `revocation_max_age_s`, until a refresh succeeds; public
//! metadata keeps being served, and `/readyz` says why the server is not ready.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fwrepo_catalog::{Catalog, TargetPath};
use fwrepo_entitle::{Entitlements, Issuer, TokenCache, Verifier};
use fwrepo_store::{Digest, OpenOptions, Store};
use http::HeaderValue;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::{ServerConfig, TokenRequire};
use crate::deltas::Deltas;
use crate::error::{ApiError, Error};
use crate::limit::TokenLimits;
use crate::metrics::Metrics;
use crate::mirror::{MirrorMode, MirrorStatus};

/// Where signed TUF metadata comes from. `name` is a bare file name such as `timestamp.json`
/// or `3.root.json` (already checked: no `/`, no leading `.`); `None` means "no such file".
///
/// The origin implements this over the repository's persisted metadata; [`DirMetadata`] serves
/// a directory (tests, static exports).
pub trait MetadataSource: Send + Sync + 'static {
    fn get(&self, name: &str) -> Option<Bytes>;

    /// The server opened its read-only store again (see the module docs); a source that
    /// reads through the store switches to `store`.
    fn store_reopened(&self, _store: &Arc<Store>) {}
}

/// Metadata files read from a directory on each request.
#[derive(Clone, Debug)]
pub struct DirMetadata {
    dir: PathBuf,
}

impl DirMetadata {
    /// Serves the files directly in `dir`; the directory must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Result<DirMetadata, Error> {
        let dir = dir.into();
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(DirMetadata { dir }),
            Ok(_) => Err(Error::Metadata { path: dir, source: std::io::Error::other("not a directory") }),
            Err(source) => Err(Error::Metadata { path: dir, source }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl MetadataSource for DirMetadata {
    fn get(&self, name: &str) -> Option<Bytes> {
        if name.contains('/') || name.starts_with('.') {
            return None;
        }
        std::fs::read(self.dir.join(name)).ok().map(Bytes::from)
    }
}

/// Most blob and target entries cached, known or not; the caches are cleared when full (a miss
/// costs a catalog scan and a store lookup).
const FACT_CACHE: usize = 65_536;

/// What the gate and the range code need to know about a blob, cached per blob.
pub(crate) struct BlobFacts {
    /// The models any release applies this blob to.
    pub models: Vec<String>,
    /// `None` when the catalog names the blob but the store does not hold it.
    pub len: Option<u64>,
    /// `"<blake3 hex>"`.
    pub etag: String,
    pub etag_header: HeaderValue,
}

/// What requests read through; replaced whole when the store is opened again.
struct Backing {
    store: Arc<Store>,
    catalog: Catalog,
    records: Entitlements,
}

impl Backing {
    fn over(store: Arc<Store>) -> Backing {
        Backing { catalog: Catalog::new(store.db().clone()), records: Entitlements::new(store.db().clone()), store }
    }
}

/// Shared state of a server. Build one, wrap it in an `Arc`, hand it to [`crate::serve`].
pub struct ServerState {
    backing: RwLock<Arc<Backing>>,
    metadata: Arc<dyn MetadataSource>,
    verifier: RwLock<Arc<Verifier>>,
    tokens: TokenCache,
    issuer: Option<Issuer>,
    metrics: Metrics,
    audit: Option<AuditLog>,
    blobs: Mutex<HashMap<Digest, Arc<BlobFacts>>>,
    /// BLAKE3 of the requested name → the blob it resolves to, if any.
    targets: Mutex<HashMap<Digest, Option<Digest>>>,
    ready: AtomicBool,
    mirror: Option<MirrorMode>,
    /// The blobs of the current `auth/*` targets of the signed metadata: the only blobs no
    /// release names that a `mirror` token may fetch.
    auth_blobs: RwLock<Arc<HashSet<Digest>>>,
    /// Set once a refresher runs: from then on revocation data has an age limit.
    refreshed: AtomicBool,
    revocation_max_age: Duration,
    refresh_interval: Duration,
    pub(crate) max_json_body: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) token_require: TokenRequire,
    pub(crate) token_limits: TokenLimits,
    pub(crate) timestamp_max_age: u64,
    deltas: Deltas,
}

/// The column families a store must be opened with for the server: the catalog's and the
/// entitlements'. Pass them as `OpenOptions::extra_column_families`.
pub fn column_families() -> Vec<&'static str> {
    let mut cfs = fwrepo_catalog::COLUMN_FAMILIES.to_vec();
    cfs.extend_from_slice(fwrepo_entitle::COLUMN_FAMILIES);
    cfs
}

impl ServerState {
    /// A server over `store` (opened with [`column_families`]), checking tokens with
    /// `verifier`. Opens the audit log if the config names one.
    pub fn new(
        config: &ServerConfig,
        store: Arc<Store>,
        metadata: Arc<dyn MetadataSource>,
        verifier: Verifier,
    ) -> Result<ServerState, Error> {
        let audit = match &config.audit_log {
            Some(path) => Some(AuditLog::open(path, config.audit_log_max_bytes, config.audit_log_keep)?),
            None => None,
        };
        Ok(ServerState {
            backing: RwLock::new(Arc::new(Backing::over(store))),
            metadata,
            verifier: RwLock::new(Arc::new(verifier)),
            tokens: TokenCache::new(config.token_cache_capacity),
            issuer: None,
            metrics: Metrics::default(),
            audit,
            blobs: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(true),
            mirror: None,
            auth_blobs: RwLock::new(Arc::new(HashSet::new())),
            refreshed: AtomicBool::new(false),
            revocation_max_age: config.revocation_max_age(),
            refresh_interval: config.refresh_interval(),
            max_json_body: config.max_json_body_bytes,
            body_read_timeout: config.body_read_timeout(),
            token_require: config.tokens.require,
            token_limits: TokenLimits::new(&config.tokens),
            timestamp_max_age: config.timestamp_max_age_s,
            deltas: Deltas::new(&config.deltas),
        })
    }

    /// Enables `POST /v1/tokens` (the origin role): tokens signed by `issuer` for the records
    /// in `entitlements`, which must be those of the state's store (when the store is opened
    /// again, the records of the new one are used). Without it the route answers 404, as on a
    /// mirror.
    pub fn with_issuer(mut self, issuer: Issuer, entitlements: Entitlements) -> ServerState {
        self.issuer = Some(issuer);
        let backing = self.backing.get_mut().unwrap_or_else(|p| p.into_inner());
        *backing = Arc::new(Backing { records: entitlements, ..Backing::over(Arc::clone(&backing.store)) });
        self
    }

    /// Mirror mode: `POST /v1/tokens` answers 404 naming `origin`, firmware the catalog lists
    /// but the store lacks answers 404 "not carried", `/metrics` reports the sync and
    /// `/readyz` fails once the served timestamp metadata has expired.
    pub fn with_mirror(mut self, origin: impl Into<String>) -> ServerState {
        self.mirror = Some(MirrorMode::new(origin.into()));
        self
    }

    /// Records the mirror's latest sync status (mirror mode only).
    pub fn set_mirror_status(&self, status: MirrorStatus) {
        if let Some(m) = &self.mirror {
            *m.status.write().unwrap_or_else(|p| p.into_inner()) = status;
        }
    }

    pub(crate) fn mirror(&self) -> Option<&MirrorMode> {
        self.mirror.as_ref()
    }

    /// Replaces the token verifier (new issuer keys or revocations); the next request uses it.
    pub fn set_verifier(&self, verifier: Verifier) {
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(verifier);
    }

    /// Makes the server see what was published since it started or last refreshed: catches a
    /// read-only store up with its writer (or opens it again when the writer created column
    /// families it lacks) and forgets cached blob facts. The verifier is not rebuilt: see
    /// [`ServerState::refresh_with`].
    pub fn refresh(&self) -> Result<(), Error> {
        let current = self.backing();
        let db = current.store.db();
        if current.store.is_read_only() && db.writer_has_new_families().map_err(fwrepo_store::Error::from)? {
            let opts = OpenOptions { read_only: true, extra_column_families: fwrepo_db::DATA_DIR_FAMILIES.to_vec() };
            let store = Arc::new(Store::open_with(current.store.dir(), &opts)?);
            tracing::info!(families = ?db.absent_families(), "the writer created column families; store opened again");
            *self.backing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Backing::over(Arc::clone(&store)));
            self.metadata.store_reopened(&store);
        } else {
            current.store.refresh()?;
        }
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.deltas.catalog_may_have_changed();
        Ok(())
    }

    /// One refresh round: [`ServerState::refresh`], then the verifier `reload` builds from
    /// what is now visible (issuer keys, revocations) replaces the current one. Success makes
    /// the revocation data fresh again; a failure is counted and the old verifier stays.
    pub fn refresh_with<E: Display>(
        &self,
        reload: impl FnOnce(&ServerState) -> Result<Verifier, E>,
    ) -> Result<(), Error> {
        let result = self.refresh().and_then(|()| reload(self).map_err(|e| Error::Refresh { reason: e.to_string() }));
        match result {
            Ok(verifier) => {
                self.set_verifier(verifier);
                self.metrics.refresh_succeeded();
                Ok(())
            }
            Err(e) => {
                self.metrics.refresh_failed();
                Err(e)
            }
        }
    }

    /// Runs [`ServerState::refresh_with`] every `every`, for as long as the returned future
    /// is polled (spawn it; abort the task to stop). From the first call on, revocation data
    /// older than the configured `revocation_max_age_s` fails gated downloads closed. Each
    /// round runs on a blocking thread: catching up with the writer's RocksDB log and reading
    /// the catalog blocks, and must not stall the connections of the runtime's workers.
    pub async fn refresh_every<F, E>(self: Arc<Self>, every: Duration, reload: F)
    where
        F: Fn(&ServerState) -> Result<Verifier, E> + Send + Sync + 'static,
        E: Display,
    {
        self.refreshed.store(true, Ordering::Relaxed);
        let reload = Arc::new(reload);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (state, reload) = (Arc::clone(&self), Arc::clone(&reload));
            let round = tokio::task::spawn_blocking(move || state.refresh_with(&*reload).map_err(|e| e.to_string()));
            let error = match round.await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                // The round panicked: count it as a failed one, keep the data loaded before.
                Err(e) => {
                    self.metrics.refresh_failed();
                    format!("refresh round ended abnormally: {e}")
                }
            };
            let failures = self.metrics.consecutive_refresh_failures();
            let age_s = self.metrics.since_last_refresh().as_secs();
            tracing::error!(error = %error, failures, age_s, "refresh failed; keeping the data loaded before");
        }
    }

    /// Whether `/readyz` answers 200. The server clears it when shutdown starts.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why `/readyz` does not answer 200: shutting down, a mirror's timestamp metadata expired
    /// (clients would refuse it), or revocation data too old.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Some("shutting down".to_owned());
        }
        if self.mirror.as_ref().is_some_and(|m| m.expired(fwrepo_entitle::UnixTime::now().0)) {
            return Some("timestamp metadata expired".to_owned());
        }
        self.stale_revocations().map(|age| {
            format!(
                "revocation data is stale: last refreshed {} s ago (limit {} s), {} refreshes failed in a row",
                age.as_secs(),
                self.revocation_max_age.as_secs(),
                self.metrics.consecutive_refresh_failures()
            )
        })
    }

    /// The age of the revocation data when it is past its limit (and a refresher runs).
    fn stale_revocations(&self) -> Option<Duration> {
        if !self.refreshed.load(Ordering::Relaxed) {
            return None;
        }
        let age = self.metrics.since_last_refresh();
        (age > self.revocation_max_age).then_some(age)
    }

    /// The gate's first check: gated downloads fail closed while revocation data is stale.
    pub(crate) fn require_fresh_revocations(&self) -> Result<(), ApiError> {
        match self.stale_revocations() {
            None => Ok(()),
            Some(_) => Err(ApiError::Unavailable { retry_after_s: self.refresh_interval.as_secs().max(1) }),
        }
    }

    pub(crate) fn deltas(&self) -> &Deltas {
        &self.deltas
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn backing(&self) -> Arc<Backing> {
        Arc::clone(&self.backing.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The store requests read from now.
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.backing().store)
    }

    /// The catalog requests read from now.
    pub fn catalog(&self) -> Catalog {
        self.backing().catalog.clone()
    }

    /// The entitlement records of the current store (for building a verifier).
    pub fn entitlements(&self) -> Entitlements {
        self.backing().records.clone()
    }

    pub(crate) fn metadata(&self) -> &dyn MetadataSource {
        &*self.metadata
    }

    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        Arc::clone(&self.verifier.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    pub(crate) fn issuance(&self) -> Option<(&Issuer, Entitlements)> {
        self.issuer.as_ref().map(|i| (i, self.entitlements()))
    }

    pub(crate) fn audit(&self, record: &AuditRecord) {
        if let Some(log) = &self.audit {
            if let Err(e) = log.write(record) {
                self.metrics.audit_error();
                tracing::error!(path = %log.path().display(), error = %e, "audit record not written");
            }
            self.metrics.audit_errors(log.take_errors());
        }
    }

    /// Whether an audit log is kept (records are built only then: they cost a clock read, a
    /// date format and several strings per request).
    pub(crate) fn audits(&self) -> bool {
        self.audit.is_some()
    }

    /// Writes out the audit records still buffered (the server calls this once it has drained
    /// on shutdown; dropping the state does it too).
    pub fn flush_audit(&self) {
        if let Some(log) = &self.audit {
            if let Err(e) = log.flush() {
                tracing::error!(path = %log.path().display(), error = %e, "audit records not written");
            }
            self.metrics.audit_errors(log.take_errors());
        }
    }

    /// Facts about `blob`; `models` is empty when no release names it.
    ///
    /// Unknown blobs take exactly the path of known ones, before any authorization: one cache
    /// lookup, and on a miss one catalog lookup, one store lookup and one insert. So a 403 for
    /// an unknown id costs what a 403 for an existing blob outside the token's models costs.
    pub(crate) fn blob_facts(&self, blob: &Digest) -> Result<Arc<BlobFacts>, ApiError> {
        if let Some(f) = self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(blob) {
            self.metrics.blob_facts(true);
            return Ok(Arc::clone(f));
        }
        self.metrics.blob_facts(false);
        let backing = self.backing();
        let models = backing.catalog.blob_models(blob).map_err(ApiError::internal)?;
        let len = match backing.store.blob_info(blob) {
            Ok(info) => Some(info.len),
            Err(fwrepo_store::Error::UnknownBlob { .. }) => None,
            Err(e) => return Err(ApiError::internal(e)),
        };
        let etag = format!("\"{}\"", blob.to_hex());
        let facts = Arc::new(BlobFacts {
            models: models.iter().map(|m| m.as_str().to_owned()).collect(),
            len,
            etag_header: HeaderValue::from_str(&etag).expect("hex is a valid header"),
            etag,
        });
        let mut map = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FACT_CACHE {
            map.clear();
        }
        map.insert(*blob, Arc::clone(&facts));
        Ok(facts)
    }

    /// Looks `blob` up again, past the cache: for an entitled caller whose blob the store did
    /// not hold when it was cached (a mirror mid-sync may have it by now).
    pub(crate) fn blob_facts_uncached(&self, blob: &Digest) -> Result<Arc<BlobFacts>, ApiError> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).remove(blob);
        self.blob_facts(blob)
    }

    /// Replaces the set of blobs the current `auth/*` targets of the signed metadata name
    /// (set it whenever the metadata may have changed: at start and on each refresh). A
    /// `mirror` token may fetch these by id although no release names them; no other blob
    /// outside the releases.
    pub fn set_auth_blobs(&self, blobs: HashSet<Digest>) {
        *self.auth_blobs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(blobs);
    }

    /// Whether `blob` is the blob of a current `auth/*` target.
    fn is_auth_blob(&self, blob: &Digest) -> bool {
        self.auth_blobs.read().unwrap_or_else(|p| p.into_inner()).contains(blob)
    }

    /// Facts about the blob of a current `auth/*` target, or `None` when `blob` is not one
    /// (any other stored blob no release names: left by a refused publish, an old auth
    /// document) or the store does not hold it.
    pub(crate) fn auth_blob_facts(&self, blob: &Digest) -> Result<Option<Arc<BlobFacts>>, ApiError> {
        if !self.is_auth_blob(blob) {
            return Ok(None);
        }
        let len = match self.store().blob_info(blob) {
            Ok(info) => info.len,
            Err(fwrepo_store::Error::UnknownBlob { .. }) => return Ok(None),
            Err(e) => return Err(ApiError::internal(e)),
        };
        let etag = format!("\"{}\"", blob.to_hex());
        Ok(Some(Arc::new(BlobFacts {
            models: Vec::new(),
            len: Some(len),
            etag_header: HeaderValue::from_str(&etag).expect("hex is a valid header"),
            etag,
        })))
    }

    /// The blob published under consistent-snapshot name `DIR/<sha256>.<name>`, or `None`
    /// when the name does not have that shape, names no target, or its hash is not the
    /// target's.
    ///
    /// Names that resolve to nothing are cached too (under the BLAKE3 of the name, so a long
    /// name costs no more memory), for the same reason as in [`ServerState::blob_facts`].
    pub(crate) fn resolve_target(&self, hashed: &str) -> Result<Option<Digest>, ApiError> {
        let key = Digest::of(hashed.as_bytes());
        if let Some(d) = self.targets.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(*d);
        }
        let blob = self.lookup_target(hashed)?;
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FACT_CACHE {
            map.clear();
        }
        map.insert(key, blob);
        Ok(blob)
    }

    fn lookup_target(&self, hashed: &str) -> Result<Option<Digest>, ApiError> {
        let (dir, file) = match hashed.rsplit_once('/') {
            Some((dir, file)) => (Some(dir), file),
            None => (None, hashed),
        };
        let Some((hash, name)) = file.split_once('.') else { return Ok(None) };
        let Ok(sha256) = hash.parse::<fwrepo_catalog::Sha256>() else { return Ok(None) };
        let logical = match dir {
            Some(dir) => format!("{dir}/{name}"),
            None => name.to_owned(),
        };
        let Ok(path) = TargetPath::new(logical) else { return Ok(None) };
        let Some(entry) = self.catalog().target(&path).map_err(ApiError::internal)? else { return Ok(None) };
        if entry.sha256 != sha256 {
            return Ok(None);
        }
        Ok(Some(entry.blob))
    }
}
