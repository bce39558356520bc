//! What a running server shares between requests: the store, the catalog, the token verifier
//! and cache, the metadata source, metrics, the audit log, and a cache of blob facts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use fwrepo_catalog::{Catalog, TargetPath};
use fwrepo_entitle::{Entitlements, Issuer, TokenCache, Verifier};
use fwrepo_store::{Digest, Store};
use http::HeaderValue;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::ServerConfig;
use crate::error::{ApiError, Error};
use crate::metrics::Metrics;
use crate::mirror::{MirrorMode, MirrorStatus};

/// Where signed TUF metadata comes from. `name` is a bare file name such as `timestamp.json`
/// or `3.root.json` (already checked: no `/`, no leading `.`); `None` means "no such file".
///
/// The origin implements this over the repository's persisted metadata; [`DirMetadata`] serves
/// a directory (tests, static exports).
pub trait MetadataSource: Send + Sync + 'static {
    fn get(&self, name: &str) -> Option<Bytes>;
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

/// Most blob and target entries cached; the caches are cleared when full (a miss costs a
/// catalog scan and a store lookup).
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

/// Shared state of a server. Build one, wrap it in an `Arc`, hand it to [`crate::serve`].
pub struct ServerState {
    store: Arc<Store>,
    catalog: Catalog,
    metadata: Arc<dyn MetadataSource>,
    verifier: RwLock<Arc<Verifier>>,
    tokens: TokenCache,
    issuance: Option<(Issuer, Entitlements)>,
    metrics: Metrics,
    audit: Option<AuditLog>,
    blobs: Mutex<HashMap<Digest, Arc<BlobFacts>>>,
    targets: Mutex<HashMap<String, Digest>>,
    ready: AtomicBool,
    mirror: Option<MirrorMode>,
    pub(crate) max_json_body: usize,
    pub(crate) timestamp_max_age: u64,
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
            catalog: Catalog::new(store.db().clone()),
            store,
            metadata,
            verifier: RwLock::new(Arc::new(verifier)),
            tokens: TokenCache::new(config.token_cache_capacity),
            issuance: None,
            metrics: Metrics::default(),
            audit,
            blobs: Mutex::new(HashMap::new()),
            targets: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(true),
            mirror: None,
            max_json_body: config.max_json_body_bytes,
            timestamp_max_age: config.timestamp_max_age_s,
        })
    }

    /// Enables `POST /v1/tokens` (the origin role): tokens signed by `issuer` for the records
    /// in `entitlements`. Without it the route answers 404, as on a mirror.
    pub fn with_issuer(mut self, issuer: Issuer, entitlements: Entitlements) -> ServerState {
        self.issuance = Some((issuer, entitlements));
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
    /// read-only store up with its writer and forgets cached blob facts.
    pub fn refresh(&self) -> Result<(), Error> {
        self.store.refresh()?;
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    /// Whether `/readyz` answers 200. The server clears it when shutdown starts.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
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

    pub(crate) fn issuance(&self) -> Option<&(Issuer, Entitlements)> {
        self.issuance.as_ref()
    }

    pub(crate) fn audit(&self, record: &AuditRecord) {
        if let Some(log) = &self.audit
            && let Err(e) = log.write(record)
        {
            self.metrics.audit_error();
            tracing::error!(path = %log.path().display(), error = %e, "audit record not written");
        }
    }

    /// Facts about `blob`, or `None` when no release names it.
    pub(crate) fn blob_facts(&self, blob: &Digest) -> Result<Option<Arc<BlobFacts>>, ApiError> {
        if let Some(f) = self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(blob) {
            return Ok(Some(Arc::clone(f)));
        }
        let models = self.catalog.blob_models(blob).map_err(ApiError::internal)?;
        if models.is_empty() {
            return Ok(None);
        }
        let len = match self.store.blob_info(blob) {
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
        // A blob the store lacks may arrive later (a mirror mid-sync): do not remember that.
        if len.is_some() {
            let mut map = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= FACT_CACHE {
                map.clear();
            }
            map.insert(*blob, Arc::clone(&facts));
        }
        Ok(Some(facts))
    }

    /// Facts about a stored blob no release names (an auth document), or `None` when the
    /// store does not hold it.
    pub(crate) fn unlisted_blob_facts(&self, blob: &Digest) -> Result<Option<Arc<BlobFacts>>, ApiError> {
        let len = match self.store.blob_info(blob) {
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
    pub(crate) fn resolve_target(&self, hashed: &str) -> Result<Option<Digest>, ApiError> {
        if let Some(d) = self.targets.lock().unwrap_or_else(|p| p.into_inner()).get(hashed) {
            return Ok(Some(*d));
        }
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
        let Some(entry) = self.catalog.target(&path).map_err(ApiError::internal)? else { return Ok(None) };
        if entry.sha256 != sha256 {
            return Ok(None);
        }
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FACT_CACHE {
            map.clear();
        }
        map.insert(hashed.to_owned(), entry.blob);
        Ok(Some(entry.blob))
    }
}
