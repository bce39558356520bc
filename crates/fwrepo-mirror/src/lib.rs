//! fwrepo-mirror: a partner mirror's sync. A mirror data dir is an fwrepo store whose signed
//! metadata, catalog and auth documents come from an upstream (the origin or another mirror)
//! through the fetch engine, verified from a pinned root:
//!
//! - [`config`]: `DIR/mirror.toml` (upstream, token service, credential file, models) and the
//!   pinned version-1 root `DIR/mirror-root.json`.
//! - [`Mirror::sync`]: the stored token or a token exchange (scope `mirror`), TUF refresh, the chunks the store
//!   lacks for every target in scope (coalesced ranges, each chunk verified and stored
//!   durably), blob assembly (length, BLAKE3, signed SHA-256), then **one** durable batch with
//!   the metadata as served, the catalog rebuilt from signed targets, the timestamp ETag and
//!   the status ([`fwrepo_repo::Repo::stage_mirror_switch`]). Until that batch the previous
//!   complete state is what is served; a crash anywhere before it loses nothing but the
//!   chunks in flight.
//! - [`Mirror::gc`]: blobs the served metadata no longer names leave after a grace period
//!   ([`gc`]).
//! - [`state`]: the sync status `fwrepo mirror status`, `/metrics` and `/readyz` read, and the
//!   partner's token kept between syncs (`DIR/mirror-token.json`).

pub mod config;
mod error;
pub mod gc;
pub mod state;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use fwrepo_store::{InitOptions, OpenOptions, Store};

pub use config::{DEFAULT_GC_GRACE_S, MirrorConfig, check_root, read_credential};
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use state::{COLUMN_FAMILIES, SyncStatus, read_status};
pub use sync::{SyncOptions, SyncReport};

use error::IoContext;

/// The wall clock, as chrono sees it.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from(std::time::SystemTime::now())
}

/// An open mirror data dir, as its writer.
pub struct Mirror {
    dir: PathBuf,
    store: Arc<Store>,
    config: MirrorConfig,
    root: Vec<u8>,
    /// What runs now: [`IDLE`], [`SYNC`] or [`GC`]. A sync and a collection must never
    /// interleave (a collection between a sync's blobs and its switch could take a blob the
    /// switch then names).
    busy: AtomicU8,
}

const IDLE: u8 = 0;
const SYNC: u8 = 1;
const GC: u8 = 2;

/// Marks the mirror idle again when dropped.
pub(crate) struct Busy<'a>(&'a AtomicU8);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(IDLE, Ordering::Release);
    }
}

/// Every column family a mirror's index has: the repository's (metadata, catalog), this
/// crate's, and `extra` (the server's entitlement families, so a server can open it).
fn families(extra: &[&'static str]) -> Vec<&'static str> {
    let mut cfs = fwrepo_repo::column_families();
    cfs.extend_from_slice(COLUMN_FAMILIES);
    for f in extra {
        if !cfs.contains(f) {
            cfs.push(f);
        }
    }
    cfs
}

impl Mirror {
    /// Creates a mirror data dir: a new store, the pinned root (checked: a version-1 root
    /// signed by its own keys), `mirror.toml` (the credential file checked: readable, 0600).
    pub fn init(dir: &Path, config: &MirrorConfig, root: &Path, extra: &[&'static str]) -> Result<Mirror> {
        let bytes = std::fs::read(root).at(root)?;
        check_root(root, &bytes)?;
        config.validate(&dir.join(config::CONFIG_FILE))?;
        config.credential()?;
        if dir.join(config::CONFIG_FILE).exists() {
            return Err(Error::DataDir { path: dir.to_owned(), reason: "is a mirror already".into() });
        }
        Store::init(dir, &InitOptions::default())?;
        {
            let opts = OpenOptions { read_only: false, extra_column_families: families(extra) };
            drop(Store::open_with(dir, &opts)?);
        }
        config::write_durably(&dir.join(config::ROOT_FILE), &bytes)?;
        // mirror.toml last: until it exists the directory is not a mirror.
        config.save(dir)?;
        Mirror::open(dir, extra)
    }

    /// Opens the mirror data dir `dir` as its writer.
    pub fn open(dir: &Path, extra: &[&'static str]) -> Result<Mirror> {
        Mirror::open_with(dir, extra, false)
    }

    /// Opens the mirror data dir `dir` as a reader beside a possible writer (a sync or a
    /// collection): for the status, which must never make a background sync fail on the lock.
    /// A sync or a collection through it fails: the store refuses writes.
    pub fn open_read_only(dir: &Path, extra: &[&'static str]) -> Result<Mirror> {
        Mirror::open_with(dir, extra, true)
    }

    fn open_with(dir: &Path, extra: &[&'static str], read_only: bool) -> Result<Mirror> {
        let config = MirrorConfig::load(dir)?;
        let root_path = dir.join(config::ROOT_FILE);
        let root = std::fs::read(&root_path).at(&root_path)?;
        let opts = OpenOptions { read_only, extra_column_families: families(extra) };
        let store = Arc::new(Store::open_with(dir, &opts)?);
        Ok(Mirror { dir: dir.to_owned(), store, config, root, busy: AtomicU8::new(IDLE) })
    }

    /// Claims the mirror for a sync (`op` "sync") or a collection ("gc"); refused while the
    /// other, or another of the same, runs.
    pub(crate) fn busy(&self, op: &'static str) -> Result<Busy<'_>> {
        let me = if op == "gc" { GC } else { SYNC };
        match self.busy.compare_exchange(IDLE, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(Busy(&self.busy)),
            Err(other) => Err(Error::Busy { op, running: if other == GC { "gc" } else { "sync" } }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn config(&self) -> &MirrorConfig {
        &self.config
    }

    /// The pinned version-1 root.
    pub fn pinned_root(&self) -> &[u8] {
        &self.root
    }

    /// The recorded sync status.
    pub fn status(&self) -> Result<SyncStatus> {
        Ok(read_status(self.store.db())?.unwrap_or_default())
    }

    /// Targets of the served metadata whose blob the store lacks (none, after a switch).
    pub fn missing(&self) -> Result<Vec<String>> {
        let repo = fwrepo_repo::Repo::over(self.store.clone());
        if !repo.has_metadata()? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let scope = self.status()?.scope;
        for (path, t) in repo.targets()? {
            let Some(blob) = t.custom.as_ref().and_then(|c| c.get("blake3")).and_then(|v| v.as_str()) else {
                continue;
            };
            let models: Vec<String> = t
                .custom
                .as_ref()
                .and_then(|c| c.pointer("/component/models"))
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default();
            let in_scope =
                if models.is_empty() { path.as_str().starts_with("auth/") } else { sync::covers(&scope, &models) };
            let Ok(blob) = blob.parse::<fwrepo_store::Digest>() else { continue };
            if in_scope && matches!(self.store.blob_info(&blob), Err(fwrepo_store::Error::UnknownBlob { .. })) {
                out.push(path.to_string());
            }
        }
        Ok(out)
    }
}
