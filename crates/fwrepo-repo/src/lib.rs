//! Repository operations over an fwrepo data dir: signed TUF metadata kept in RocksDB beside
//! the store and the catalog, release publishing, timestamp refresh, root rotation, generic
//! file publishing and static export. The `fwrepo` CLI is a thin layer over [`Repo`].
//!
//! # Metadata column family
//!
//! [`CF_METADATA`] (`repo.metadata`) maps a consistent-snapshot file name to the signed bytes
//! ([`fwrepo_db::encode`]d with format marker [`FORMAT`]):
//!
//! | key | value |
//! |---|---|
//! | `N.root.json` | root version N; every version is kept (clients walk the chain) |
//! | `V.targets.json`, `V.<bin>.json` | every version of targets and hashed bins |
//! | `V.snapshot.json` | every version of the snapshot |
//! | `timestamp.json` | the current timestamp only |
//!
//! The current state is found from `timestamp.json` → the snapshot version it names → the
//! targets and bin versions the snapshot names, plus the highest `N.root.json`.
//!
//! # Atomicity
//!
//! A publish checks the manifest, every file and the keys first, then ingests the files
//! (each blob commits on its own, as the store requires), then stages the catalog records
//! and the new metadata files into **one** durable `WriteBatch`. A publish that fails at any
//! point leaves metadata and catalog exactly as they were; blobs it already ingested stay in
//! the store unreferenced until `gc` with [`Repo::live_blobs`] as roots removes them.
//!
//! Before that batch a publish also precomputes the chunk-pair deltas from each component's
//! previous version (`precompute`), stored in the store's `store.deltas`, so the server
//! answers the common update's delta requests without compressing.

mod error;
mod export;
pub mod keys;
pub mod manifest;
mod mirror;
mod precompute;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fwrepo_catalog::Catalog;
use fwrepo_db::WriteBatch;
use fwrepo_store::{Digest, OpenOptions, Store};
use fwrepo_tuf::{
    FwCustom, MetadataFile, Repository, RoleName, RoleSpec, RootSpec, Signed, Snapshot, TargetFile, TargetPath,
    Timestamp, layout,
};

pub use error::{Error, Result};
pub use export::ExportReport;
pub use keys::{Keyring, Role};
pub use manifest::{Manifest, ManifestComponent};
pub use mirror::releases_from_targets;

/// Consistent-snapshot file name → signed metadata bytes.
pub const CF_METADATA: &str = "repo.metadata";
/// The column families of this crate.
pub const COLUMN_FAMILIES: &[&str] = &[CF_METADATA];
/// Format marker of every value this crate writes.
pub const FORMAT: u8 = 1;

/// Every column family a repository opens: the catalog's and this crate's (the store adds its
/// own).
pub fn column_families() -> Vec<&'static str> {
    let mut cfs = fwrepo_catalog::COLUMN_FAMILIES.to_vec();
    cfs.extend_from_slice(COLUMN_FAMILIES);
    cfs
}

/// What a publish did.
#[derive(Clone, Debug)]
pub struct PublishReport {
    /// Release id.
    pub release: String,
    /// Target path, blob id and new bytes stored for each component.
    pub targets: Vec<(TargetPath, Digest, u64)>,
    /// Metadata files written, in write order.
    pub metadata: Vec<MetadataFile>,
    /// Chunk-pair deltas precomputed from the components' previous versions.
    pub deltas_precomputed: usize,
}

/// An open data dir with its store, catalog and signed metadata.
pub struct Repo {
    store: Arc<Store>,
    catalog: Catalog,
    config: fwrepo_tuf::Config,
}

impl Repo {
    /// Opens the data dir `data` as its single writer.
    pub fn open(data: &Path) -> Result<Repo> {
        Repo::open_with(data, false)
    }

    /// Opens the data dir `data` as a reader beside a possible writer.
    pub fn open_read_only(data: &Path) -> Result<Repo> {
        Repo::open_with(data, true)
    }

    fn open_with(data: &Path, read_only: bool) -> Result<Repo> {
        Repo::open_with_families(data, read_only, &[])
    }

    /// Opens the data dir with the column families of other concerns too (entitlements), so
    /// one open (one writer lock) serves a command that touches both.
    pub fn open_with_families(data: &Path, read_only: bool, extra: &[&'static str]) -> Result<Repo> {
        let mut cfs = column_families();
        cfs.extend_from_slice(extra);
        let store = Arc::new(Store::open_with(data, &OpenOptions { read_only, extra_column_families: cfs })?);
        Ok(Repo::over(store))
    }

    /// A repository over an already open store (opened with [`column_families`] among its
    /// extra column families), sharing it with other users such as the server.
    pub fn over(store: Arc<Store>) -> Repo {
        let catalog = Catalog::new(Arc::clone(store.db()));
        Repo { store, catalog, config: fwrepo_tuf::Config::default() }
    }

    /// Replaces the metadata builder settings (expiries, hashed-bin split size).
    pub fn with_config(mut self, config: fwrepo_tuf::Config) -> Repo {
        self.config = config;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn data_dir(&self) -> &Path {
        self.store.dir()
    }

    // ---- stored metadata -------------------------------------------------------------------

    /// The stored metadata file `name` (consistent-snapshot name), if any.
    pub fn metadata_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        read_metadata(self.store.db(), name)
    }

    fn require_file(&self, name: &str) -> Result<Vec<u8>> {
        self.metadata_file(name)?
            .ok_or_else(|| Error::CorruptMetadata { reason: format!("{name} is referenced but not stored") })
    }

    /// Whether signed metadata exists.
    pub fn has_metadata(&self) -> Result<bool> {
        Ok(self.metadata_file(layout::TIMESTAMP_FILE)?.is_some())
    }

    /// The highest stored root version (0 without metadata).
    pub fn root_version(&self) -> Result<u64> {
        let mut n = 0;
        while self.metadata_file(&layout::root_file(n + 1))?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// The current signed state, every signature checked.
    pub fn load(&self) -> Result<Repository> {
        let ts_bytes = self
            .metadata_file(layout::TIMESTAMP_FILE)?
            .ok_or_else(|| Error::NoMetadata { data: self.data_dir().to_owned() })?;
        let ts = Signed::<Timestamp>::from_bytes(&RoleName::timestamp(), &ts_bytes)?;
        let snap_bytes =
            self.require_file(&layout::versioned_file(&RoleName::snapshot(), ts.signed.snapshot_meta().version))?;
        let snap = Signed::<Snapshot>::from_bytes(&RoleName::snapshot(), &snap_bytes)?;
        let mut targets = None;
        let mut delegated = Vec::new();
        for (name, meta) in &snap.signed.meta {
            let role = RoleName::new(name.strip_suffix(".json").unwrap_or(name))?;
            let bytes = self.require_file(&layout::versioned_file(&role, meta.version))?;
            if role == RoleName::targets() {
                targets = Some(bytes);
            } else {
                delegated.push((role, bytes));
            }
        }
        let targets = targets.ok_or_else(|| Error::CorruptMetadata { reason: "snapshot lists no targets".into() })?;
        let root = self.require_file(&layout::root_file(self.root_version()?))?;
        let delegated: Vec<(RoleName, &[u8])> = delegated.iter().map(|(r, b)| (r.clone(), b.as_slice())).collect();
        Ok(Repository::load(&root, &targets, &delegated, &snap_bytes, &ts_bytes, self.config.clone())?)
    }

    fn stage_files(&self, files: &[MetadataFile], batch: &mut WriteBatch) -> Result<()> {
        let cf = self.store.db().require_cf(CF_METADATA)?;
        for f in files {
            batch.put_cf(cf, f.name.as_bytes(), fwrepo_db::encode(FORMAT, &f.bytes));
        }
        Ok(())
    }

    fn commit(&self, batch: WriteBatch) -> Result<()> {
        Ok(self.store.db().write(batch, true)?)
    }

    // ---- operations ------------------------------------------------------------------------

    /// Creates signed version-1 metadata: the root lists every root key of `ring` with
    /// `root_threshold`; the online roles list their keys of `ring` with threshold 1.
    pub fn init_metadata(&self, ring: &Keyring, root_threshold: u32, now: DateTime<Utc>) -> Result<Vec<MetadataFile>> {
        if self.has_metadata()? {
            return Err(Error::HasMetadata { data: self.data_dir().to_owned() });
        }
        let spec_of = |role: Role, threshold: u32| -> Result<RoleSpec> {
            let keys: Vec<_> = ring.role(role).map(|k| k.key.public_key()).collect();
            if keys.is_empty() {
                return Err(Error::MissingKey { role: role.to_string(), path: PathBuf::from(format!("{role}.key")) });
            }
            if threshold as usize > keys.len() || threshold == 0 {
                return Err(Error::Invalid(format!(
                    "{role} threshold {threshold} needs between 1 and {} keys",
                    keys.len()
                )));
            }
            Ok(RoleSpec::new(keys, threshold))
        };
        let spec = RootSpec {
            root: spec_of(Role::Root, root_threshold)?,
            timestamp: spec_of(Role::Timestamp, 1)?,
            snapshot: spec_of(Role::Snapshot, 1)?,
            targets: spec_of(Role::Targets, 1)?,
        };
        let repo = Repository::init(&spec, &ring.all(), now, self.config.clone())?;
        let files = repo.files();
        let mut batch = WriteBatch::default();
        self.stage_files(&files, &mut batch)?;
        self.commit(batch)?;
        Ok(files)
    }

    /// Publishes the release of `manifest`: ingests its files, records the catalog and signs
    /// new targets, snapshot and timestamp with the online keys of `ring` (loaded from
    /// `key_dir`, named in errors). Catalog and metadata commit together or not at all.
    pub fn publish(
        &self,
        manifest: &Manifest,
        ring: &Keyring,
        key_dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<PublishReport> {
        let mut tuf = self.load()?;
        let signers = ring.signers(&tuf.root().signed, &Role::ONLINE, key_dir)?;
        if self.catalog.release(&manifest.id)?.is_some() {
            return Err(Error::DuplicateRelease { release: manifest.id.to_string() });
        }
        let sizes = self.store.config().chunk_sizes;
        let mut components = Vec::new();
        let mut targets = Vec::new();
        let mut report = Vec::new();
        for c in &manifest.components {
            let r = self.store.ingest_path(&c.file)?;
            let custom = FwCustom {
                blake3: r.blob.to_hex(),
                chunk_index: r.chunk_index.to_hex(),
                release: manifest.id.to_string(),
                component: fwrepo_tuf::Component {
                    name: c.name.to_string(),
                    kind: c.kind.as_str().to_owned(),
                    version: c.version.as_str().to_owned(),
                    models: c.models.iter().map(|m| m.to_string()).collect(),
                },
                release_info: Some(fwrepo_tuf::ReleaseInfo {
                    name: manifest.name.clone(),
                    date: manifest.date.to_string(),
                }),
                chunker: Some(fwrepo_tuf::ChunkerSizes {
                    min_size: sizes.min_size,
                    avg_size: sizes.avg_size,
                    max_size: sizes.max_size,
                }),
            };
            targets.push((
                c.target.clone(),
                TargetFile::new(r.len, fwrepo_tuf::Sha256::from_bytes(r.sha256), Some(&custom)),
            ));
            components.push(fwrepo_catalog::Component {
                name: c.name.clone(),
                kind: c.kind,
                version: c.version.clone(),
                target: fwrepo_catalog::TargetPath::new(c.target.as_str())?,
                blob: r.blob,
                length: r.len,
                sha256: fwrepo_catalog::Sha256(r.sha256),
                models: c.models.clone(),
            });
            report.push((c.target.clone(), r.blob, r.new_bytes));
        }
        // Before the catalog batch: a failure here fails the publish with nothing committed
        // but blobs and deltas, both unreferenced caches.
        let wanted: Vec<_> = components.iter().map(|c| (&c.name, &c.version)).collect();
        let previous = precompute::previous_versions(&self.catalog, &wanted)?;
        let mut deltas_precomputed = 0;
        for (c, prev) in components.iter().zip(previous) {
            if let Some(prev) = prev {
                deltas_precomputed +=
                    precompute::precompute(&self.store, &prev, &c.blob, fwrepo_chunk::delta::DEFAULT_LEVEL)?;
            }
        }
        let release = fwrepo_catalog::Release {
            id: manifest.id.clone(),
            name: manifest.name.clone(),
            date: manifest.date,
            components,
        };
        let mut batch = WriteBatch::default();
        self.catalog.stage_release(&release, &mut batch)?;
        let files = tuf.add_targets(targets, &signers, now)?;
        self.stage_files(&files, &mut batch)?;
        self.commit(batch)?;
        Ok(PublishReport { release: manifest.id.to_string(), targets: report, metadata: files, deltas_precomputed })
    }

    /// Stores each `(path, bytes)` as a blob and adds or replaces the target at `path`
    /// (issuer keys, revocation lists). Paths a catalog release publishes cannot be replaced.
    pub fn publish_files(
        &self,
        files: &[(&str, &[u8])],
        ring: &Keyring,
        key_dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<Vec<MetadataFile>> {
        let mut tuf = self.load()?;
        let signers = ring.signers(&tuf.root().signed, &Role::ONLINE, key_dir)?;
        let mut paths = Vec::new();
        for (path, _) in files {
            let p = TargetPath::new(*path)?;
            let cat = fwrepo_catalog::TargetPath::new(*path)?;
            if let Some(entry) = self.catalog.target(&cat)? {
                return Err(Error::Invalid(format!(
                    "target {path} is firmware of release {}; it cannot be replaced",
                    entry.releases.first().map(|r| r.to_string()).unwrap_or_default()
                )));
            }
            paths.push(p);
        }
        let mut targets = Vec::new();
        for (p, (_, bytes)) in paths.into_iter().zip(files) {
            let r = self.store.ingest_reader(*bytes, p.as_str())?;
            let mut t = TargetFile::new(r.len, fwrepo_tuf::Sha256::from_bytes(r.sha256), None);
            t.custom = Some(serde_json::json!({ "blake3": r.blob.to_hex(), "chunk_index": r.chunk_index.to_hex() }));
            targets.push((p, t));
        }
        let changed = tuf.upsert_targets(targets, &signers, now)?;
        let mut batch = WriteBatch::default();
        self.stage_files(&changed, &mut batch)?;
        self.commit(batch)?;
        Ok(changed)
    }

    /// Re-signs the timestamp, and snapshot/targets when they near expiry. For a timer.
    pub fn refresh(&self, ring: &Keyring, key_dir: &Path, now: DateTime<Utc>) -> Result<Vec<MetadataFile>> {
        let mut tuf = self.load()?;
        // Only the timestamp key is certain to be needed; others are used when present.
        let root = tuf.root().signed.clone();
        let mut signers = ring.signers(&root, &[Role::Timestamp], key_dir)?;
        for role in [Role::Snapshot, Role::Targets] {
            if let Ok(more) = ring.signers(&root, &[role], key_dir) {
                signers.extend(more);
            }
        }
        let changed = tuf.refresh(&signers, now)?;
        let mut batch = WriteBatch::default();
        self.stage_files(&changed, &mut batch)?;
        self.commit(batch)?;
        Ok(changed)
    }

    /// Publishes root N+1 whose root keys are the root keys of `new` (threshold
    /// `threshold`, default the current one capped at the number of new keys), and whose
    /// online roles use the online keys of `new` where it has them and the current keys
    /// otherwise. `old` must hold a threshold of the current root keys and the online keys
    /// needed to re-sign; `new` a threshold of the new root keys.
    pub fn rotate_root(
        &self,
        old: &Keyring,
        new: &Keyring,
        threshold: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Vec<MetadataFile>> {
        let mut tuf = self.load()?;
        let current = RootSpec::from_root(&tuf.root().signed);
        let new_root: Vec<_> = new.role(Role::Root).map(|k| k.key.public_key()).collect();
        let root = if new_root.is_empty() {
            current.root.clone()
        } else {
            let t = threshold.unwrap_or(current.root.threshold.min(new_root.len() as u32));
            if t == 0 || t as usize > new_root.len() {
                return Err(Error::Invalid(format!("root threshold {t} needs between 1 and {} keys", new_root.len())));
            }
            RoleSpec::new(new_root, t)
        };
        let online = |role: Role, cur: &RoleSpec| {
            let keys: Vec<_> = new.role(role).map(|k| k.key.public_key()).collect();
            if keys.is_empty() { cur.clone() } else { RoleSpec::new(keys, 1) }
        };
        let spec = RootSpec {
            timestamp: online(Role::Timestamp, &current.timestamp),
            snapshot: online(Role::Snapshot, &current.snapshot),
            targets: online(Role::Targets, &current.targets),
            root,
        };
        let mut ring = old.all();
        ring.extend(new.all());
        let changed = tuf.rotate_root(&spec, &ring, now)?;
        let mut batch = WriteBatch::default();
        self.stage_files(&changed, &mut batch)?;
        self.commit(batch)?;
        Ok(changed)
    }

    /// Blobs that current targets reference (by their `custom.blake3`): the gc roots of a
    /// repository with metadata.
    pub fn live_blobs(&self) -> Result<HashSet<Digest>> {
        let tuf = self.load()?;
        let mut live = HashSet::new();
        for (path, t) in tuf.all_targets() {
            live.insert(blob_of(&path, &t)?);
        }
        Ok(live)
    }

    /// Every current target.
    pub fn targets(&self) -> Result<BTreeMap<TargetPath, TargetFile>> {
        Ok(self.load()?.all_targets())
    }
}

/// The signed metadata file `name` (a consistent-snapshot name such as `3.snapshot.json`, or
/// `timestamp.json`) from a data dir's index, for readers that hold the database but not a
/// [`Repo`] (the server).
pub fn read_metadata(db: &fwrepo_db::Db, name: &str) -> Result<Option<Vec<u8>>> {
    let Some(cf) = db.cf(CF_METADATA) else { return Ok(None) };
    match db.get(cf, name.as_bytes())? {
        None => Ok(None),
        Some(v) => Ok(Some(fwrepo_db::decode(CF_METADATA, FORMAT, &v)?.to_vec())),
    }
}

/// The store blob a target names.
pub(crate) fn blob_of(path: &TargetPath, t: &TargetFile) -> Result<Digest> {
    t.custom
        .as_ref()
        .and_then(|c| c.get("blake3"))
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Digest>().ok())
        .ok_or_else(|| Error::CorruptMetadata { reason: format!("target {path} has no custom.blake3 blob id") })
}
