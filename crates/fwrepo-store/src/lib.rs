//! fwrepo-store: the content-addressed store of firmware blobs.
//!
//! A blob is split by FastCDC into chunks; chunks are identified by BLAKE3 and appended once to
//! pack files; RocksDB (shared with the other concerns of the data dir through `fwrepo-db`)
//! maps chunk → location and blob → ordered chunk list. Reads slice the memory-mapped packs into
//! `bytes::Bytes` without copying.
//!
//! Data dir layout:
//! ```text
//! DIR/fwrepo.json     format, version, chunker sizes (fixed at init)
//! DIR/LOCK            writer lock
//! DIR/index/          RocksDB
//! DIR/packs/*.pack    chunk records
//! ```

mod config;
mod deltas;
mod error;
mod fsck;
mod fsutil;
mod gc;
mod held;
mod import;
mod index;
mod ingest;
mod lock;
mod pack;
mod read;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fwrepo_db::{Db, IteratorMode, Mode, WriteBatch};

pub use config::StoreConfig;
pub use deltas::{CF_DELTAS, StoredDelta};
// The chunk format is fwrepo-chunk's (RocksDB-free, shared with the sync and the client);
// re-exported so the store's users and its own modules (`crate::chunk_index::…`) read as before.
pub use error::{Error, Result};
pub use fsck::{FsckProblem, FsckReport, Stats};
pub use fwrepo_chunk::Error as ChunkError;
use fwrepo_chunk::chunk_index;
pub use fwrepo_chunk::{BlobId, ChunkId, ChunkIndex, Chunker, ChunkerParams, Digest};
pub use gc::{GcOptions, GcReport};
pub use import::{ExpectedBlob, PutReport};
pub use index::COLUMN_FAMILIES;
pub use ingest::{IngestProfile, IngestReport, StageTime};
pub use read::{BlobInfo, Extent, Extents};

use error::IoContext;
use index::{
    CF_META, CF_PACKS, NEXT_PACK_KEY, decode_next_pack, encode_next_pack, encode_pack_len, pack_from_key, pack_key,
};
use pack::{PackIo, PackWriter, Packs};

/// Options for [`Store::init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunk_sizes: ChunkerParams,
    pub pack_max_size: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions { chunk_sizes: ChunkerParams::default(), pack_max_size: 1 << 30 }
    }
}

/// Options for [`Store::open_with`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Open as a reader beside a possible writer (no lock, no recovery, no writes).
    pub read_only: bool,
    /// Column families of the other concerns (catalog, entitlements) that share the index.
    pub extra_column_families: Vec<&'static str>,
}

/// An open store.
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    chunker: Chunker,
    db: Arc<Db>,
    packs: Packs,
    layouts: read::LayoutCache,
    /// `None` for a read-only store.
    writer: Option<Mutex<Writer>>,
}

/// The writer's state: the lock, the committed length of every pack, and the pack appended to.
struct Writer {
    _lock: lock::WriterLock,
    committed: BTreeMap<u32, u64>,
    active: Option<PackWriter>,
    /// How packs are written (`FWREPO_PACK_IO`, read at open).
    pack_io: PackIo,
    /// The id the next new pack gets; never lowered, and committed (`store.meta`) with every
    /// batch that commits a new pack, so no id is handed out twice.
    next_pack: u32,
}

impl Store {
    /// Creates a new store in `dir` (missing or empty).
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<()> {
        let config = StoreConfig::new(opts.chunk_sizes, opts.pack_max_size);
        config.validate(dir)?;
        if dir.join(config::CONFIG_FILE).exists() {
            return Err(Error::AlreadyInitialized { path: dir.to_owned() });
        }
        std::fs::create_dir_all(dir).at(dir)?;
        // Only what an interrupted init of our own leaves may be there already.
        for entry in std::fs::read_dir(dir).at(dir)? {
            let name = entry.at(dir)?.file_name();
            if !matches!(name.to_str(), Some("index" | "packs" | lock::LOCK_FILE)) {
                return Err(Error::NotEmpty { path: dir.to_owned() });
            }
        }
        let _lock = lock::WriterLock::acquire(dir)?;
        let packs = dir.join("packs");
        std::fs::create_dir_all(&packs).at(&packs)?;
        // Every family of the data dir, so a reader started before the first write of some
        // concern (entitlements) already has its families.
        drop(Db::open(&dir.join("index"), fwrepo_db::DATA_DIR_FAMILIES, Mode::ReadWrite)?);
        // fwrepo.json last: until it exists the directory is not a store.
        config.save(dir)
    }

    /// Opens the store in `dir` as its writer.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::open_with(dir, &OpenOptions::default())
    }

    /// Opens the store in `dir` as a reader that may run beside a writer.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        Store::open_with(dir, &OpenOptions { read_only: true, ..Default::default() })
    }

    pub fn open_with(dir: &Path, opts: &OpenOptions) -> Result<Store> {
        let config = StoreConfig::load(dir)?;
        let lock = if opts.read_only { None } else { Some(lock::WriterLock::acquire(dir)?) };
        let mut cfs: Vec<&str> = COLUMN_FAMILIES.to_vec();
        cfs.extend(opts.extra_column_families.iter().copied());
        if !opts.read_only {
            // The writer brings a data dir of an older fwrepo up to every family.
            cfs.extend_from_slice(fwrepo_db::DATA_DIR_FAMILIES);
        }
        let mode = if opts.read_only { Mode::ReadOnly } else { Mode::ReadWrite };
        let db = Arc::new(Db::open(&dir.join("index"), &cfs, mode)?);
        let packs = Packs::new(dir.join("packs"));
        let writer = match lock {
            None => None,
            Some(lock) => {
                let pack_io = PackIo::from_env().map_err(|reason| Error::Config { path: dir.to_owned(), reason })?;
                Some(Mutex::new(recover(&db, &packs, &config, lock, pack_io)?))
            }
        };
        Ok(Store {
            dir: dir.to_owned(),
            chunker: Chunker::new(config.chunk_sizes),
            config,
            db,
            packs,
            layouts: read::LayoutCache::new(),
            writer,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The chunker every blob of this store is cut with (clients use it to find reusable chunks).
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The shared index database, for the other concerns of the data dir.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// Makes a read-only store see what the writer committed since, and drops its maps of packs
    /// the index no longer lists (so collected packs stop holding disk space once the slices
    /// handed out of them are dropped).
    ///
    /// Cached blob layouts are kept, with their chunks' verified marks, while they still hold:
    /// the blob is still stored and every chunk lies in a pack the index lists whose file is the
    /// one mapped (pack bytes below the committed length never change, so a chunk verified
    /// there stays verified). Clearing them on every refresh made each refresh re-read every
    /// served blob's index entries and hash every served chunk again.
    pub fn refresh(&self) -> Result<()> {
        self.db.catch_up()?;
        let listed = self.listed_packs()?;
        let stale = self.packs.stale(&listed);
        let replaced: HashSet<u32> = stale.iter().map(|&(pack, _)| pack).collect();
        self.layouts.retain(|layout| {
            let packs_hold =
                layout.chunks.iter().all(|c| listed.contains(&c.loc.pack) && !replaced.contains(&c.loc.pack));
            Ok(packs_hold && self.record(&layout.info.blob)?.is_some())
        })?;
        self.packs.drop_maps(stale);
        Ok(())
    }

    /// The packs the index (as this store sees it now) lists.
    fn listed_packs(&self) -> Result<HashSet<u32>> {
        let cf = self.db.require_cf(CF_PACKS)?;
        let mut listed = HashSet::new();
        for item in self.db.rocks().iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.db.err(e))?;
            listed.extend(pack_from_key(&k));
        }
        Ok(listed)
    }

    /// Drops the maps of packs the index does not list, and of pack files replaced since they
    /// were mapped.
    fn drop_stale_maps(&self) -> Result<()> {
        self.packs.retain(&self.listed_packs()?);
        Ok(())
    }

    fn writer(&self, op: &'static str) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly { op })?;
        // A panic in another ingest leaves state that `abort` would have restored; recover the
        // guard and let the next transaction start from the committed lengths.
        Ok(w.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Brings the packs in line with the index after a crash: pack files the index does not know
/// were never committed and are removed; bytes past a pack's committed length are a torn tail and
/// are cut off.
fn recover(db: &Db, packs: &Packs, config: &StoreConfig, lock: lock::WriterLock, pack_io: PackIo) -> Result<Writer> {
    let cf = db.require_cf(CF_PACKS)?;
    let mut committed = BTreeMap::new();
    for item in db.rocks().iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item.map_err(|e| db.err(e))?;
        let pack = pack_from_key(&k)
            .ok_or_else(|| Error::CorruptRecord { what: "pack key".into(), reason: format!("{} bytes", k.len()) })?;
        committed.insert(pack, index::decode_pack_len(pack, &v)?);
    }
    let on_disk = packs.list()?;
    let next_pack = next_pack_id(db, &committed, &on_disk)?;
    let mut removed_any = false;
    for pack in on_disk {
        let path = pack::pack_path(packs.dir(), pack);
        match committed.get(&pack) {
            None => {
                tracing::warn!(pack, "removing pack file with nothing committed");
                std::fs::remove_file(&path).at(&path)?;
                removed_any = true;
            }
            Some(&len) => {
                let actual = std::fs::metadata(&path).at(&path)?.len();
                if actual > len {
                    tracing::warn!(pack, actual, committed = len, "cutting torn pack tail");
                    pack::cut_tail(packs.dir(), pack, len)?;
                } else if actual < len {
                    // Not something a crash can cause (packs are synced before commit); fsck
                    // reports the chunks this loses. Keep opening so the rest stays readable.
                    tracing::error!(pack, actual, committed = len, "pack is shorter than committed");
                }
            }
        }
    }
    if removed_any {
        fsutil::sync_dir(packs.dir())?;
    }
    // Keep appending to the newest pack while it has room (and is of the current format: a
    // format 1 pack is left as it is and a new one started).
    let active = match committed.iter().next_back() {
        Some((&pack, &len)) if len < config.pack_max_size && pack::pack_path(packs.dir(), pack).exists() => {
            let path = pack::pack_path(packs.dir(), pack);
            let actual = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if actual == len && pack::Format::of(&path)? == pack::Format::V2 {
                Some(PackWriter::open(packs.dir(), pack, len, pack_io)?)
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(Writer { _lock: lock, committed, active, pack_io, next_pack })
}

/// The id the next new pack gets: the high-water mark in `store.meta`, raised above every pack
/// committed or present on disk (a file the index dropped may be a collected pack that a reader
/// still maps, so its id must not name a new file either). A data dir from before the mark
/// existed gets it derived the same way. The result is made durable before anything can use it.
fn next_pack_id(db: &Db, committed: &BTreeMap<u32, u64>, on_disk: &[u32]) -> Result<u32> {
    let cf = db.require_cf(CF_META)?;
    let stored = db.get(cf, NEXT_PACK_KEY)?.map(|v| decode_next_pack(&v)).transpose()?;
    let highest = committed.keys().chain(on_disk).max().copied();
    let derived = highest.map_or(1, |p| p.saturating_add(1));
    let next = stored.map_or(derived, |s| s.max(derived));
    if stored != Some(next) {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, NEXT_PACK_KEY, encode_next_pack(next));
        db.write(batch, true)?;
    }
    Ok(next)
}

impl Writer {
    /// The pack to append a record of `len` bytes to, rolling to a new pack when the active one
    /// is full. A rolled pack is synced at once; its new length is committed with the batch.
    fn pack_for(&mut self, packs: &Packs, max: u64, len: u64, txn: &mut Txn) -> Result<&mut PackWriter> {
        let full = self.active.as_ref().is_some_and(|a| a.len > pack::HEADER.len() as u64 && a.len + len > max);
        if full {
            let mut old = self.active.take().unwrap();
            old.sync()?;
            txn.touched.insert(old.id, old.len);
        }
        if self.active.is_none() {
            let id = self.next_pack;
            self.next_pack += 1;
            self.active = Some(PackWriter::create(packs.dir(), id, self.pack_io)?);
            txn.created.push(id);
        }
        Ok(self.active.as_mut().unwrap())
    }

    /// Makes the transaction's pack bytes durable and adds the new pack lengths to `batch`.
    fn prepare_commit(&mut self, packs: &Packs, txn: &mut Txn, batch: &mut WriteBatch, db: &Db) -> Result<()> {
        if let Some(a) = &mut self.active
            && a.len > self.committed.get(&a.id).copied().unwrap_or(0)
        {
            a.sync()?;
            txn.touched.insert(a.id, a.len);
        }
        if !txn.created.is_empty() {
            fsutil::sync_dir(packs.dir())?;
            batch.put_cf(db.require_cf(CF_META)?, NEXT_PACK_KEY, encode_next_pack(self.next_pack));
        }
        let cf = db.require_cf(CF_PACKS)?;
        for (&pack, &len) in &txn.touched {
            batch.put_cf(cf, pack_key(pack), encode_pack_len(len));
        }
        Ok(())
    }

    /// Records what a successful commit made durable.
    fn committed(&mut self, txn: Txn) {
        self.committed.extend(txn.touched);
    }

    /// Undoes a failed transaction: packs it created are removed and packs it appended to are cut
    /// back to their committed length, so nothing half-written stays behind.
    fn abort(&mut self, packs: &Packs, txn: Txn) {
        if self.active.as_ref().is_some_and(|a| txn.created.contains(&a.id)) {
            self.active = None;
        }
        let mut to_cut: Vec<u32> = txn.touched.keys().copied().filter(|p| !txn.created.contains(p)).collect();
        to_cut.extend(self.active.as_ref().map(|a| a.id));
        for pack in to_cut {
            let Some(&len) = self.committed.get(&pack) else { continue };
            let cut = match &mut self.active {
                Some(a) if a.id == pack => a.truncate(len),
                _ => pack::cut_tail(packs.dir(), pack, len),
            };
            if let Err(e) = cut {
                // The next open cuts it; until then stop appending to it.
                tracing::error!(pack, error = %e, "cannot cut back pack");
                if self.active.as_ref().is_some_and(|a| a.id == pack) {
                    self.active = None;
                }
            }
        }
        for pack in txn.created {
            let _ = std::fs::remove_file(pack::pack_path(packs.dir(), pack));
            packs.forget(pack);
        }
        let _ = fsutil::sync_dir(packs.dir());
    }
}

/// Packs a write transaction touched.
#[derive(Default)]
struct Txn {
    /// Pack → length it will have once committed.
    touched: BTreeMap<u32, u64>,
    /// Packs created by this transaction.
    created: Vec<u32>,
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    fn image(seed: u64, len: usize) -> Vec<u8> {
        fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(seed), len)
    }

    #[test]
    fn refresh_keeps_layouts_that_still_hold_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        Store::init(&data, &InitOptions { chunk_sizes: params, pack_max_size: 1 << 20 }).unwrap();
        let writer = Store::open(&data).unwrap();
        let (a, b) = (image(1, 600_000), image(2, 600_000));
        let blob_a = writer.ingest_reader(&a[..], "a").unwrap().blob;
        let blob_b = writer.ingest_reader(&b[..], "b").unwrap().blob;
        let reader = Store::open_read_only(&data).unwrap();
        assert_eq!(reader.read_all(&blob_a).unwrap().concat(), a);
        assert_eq!(reader.read_all(&blob_b).unwrap().concat(), b);

        // Nothing changed: both layouts, and their chunks' verified marks, survive.
        reader.refresh().unwrap();
        assert!(reader.layouts.holds(&blob_a) && reader.layouts.holds(&blob_b));
        let verified = |blob: &Digest| {
            reader.layout(blob).unwrap().chunks.iter().all(|c| c.verified.load(std::sync::atomic::Ordering::Acquire))
        };
        assert!(verified(&blob_a) && verified(&blob_b));

        // b is collected and its packs compacted away: its layout goes; a's goes only if one of
        // its chunks moved out of a pack that is gone.
        let report =
            writer.gc(&gc::GcOptions { roots: Some(HashSet::from([blob_a])), min_dead_fraction: 0.01 }).unwrap();
        assert_eq!(report.blobs_removed, 1);
        reader.refresh().unwrap();
        assert!(!reader.layouts.holds(&blob_b), "a removed blob's layout survived the refresh");
        assert!(matches!(reader.read_all(&blob_b), Err(Error::UnknownBlob { .. })));
        assert_eq!(reader.read_all(&blob_a).unwrap().concat(), a);
        let listed: HashSet<u32> = {
            let cf = reader.db.require_cf(CF_PACKS).unwrap();
            reader
                .db
                .rocks()
                .iterator_cf(cf, IteratorMode::Start)
                .filter_map(|i| pack_from_key(&i.unwrap().0))
                .collect()
        };
        assert!(reader.layout(&blob_a).unwrap().chunks.iter().all(|c| listed.contains(&c.loc.pack)));
    }

    #[test]
    fn refresh_drops_layouts_of_replaced_pack_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        Store::init(&data, &InitOptions { chunk_sizes: params, pack_max_size: 1 << 20 }).unwrap();
        let writer = Store::open(&data).unwrap();
        let a = image(3, 300_000);
        let blob = writer.ingest_reader(&a[..], "a").unwrap().blob;
        drop(writer);
        let reader = Store::open_read_only(&data).unwrap();
        assert_eq!(reader.read_all(&blob).unwrap().concat(), a);
        let pack = reader.layout(&blob).unwrap().chunks[0].loc.pack;
        // The same bytes under a new inode: a replaced file, whose bytes the verified marks do
        // not vouch for.
        let path = pack::pack_path(reader.packs.dir(), pack);
        let copy = path.with_extension("copy");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::rename(&copy, &path).unwrap();
        reader.refresh().unwrap();
        assert!(!reader.layouts.holds(&blob), "a layout over a replaced pack file survived the refresh");
        assert_eq!(reader.read_all(&blob).unwrap().concat(), a);
    }
}
