//! The single RocksDB instance of a data dir, shared by the store, the catalog, the signed
//! metadata and the entitlement records, each in column families of its own.
//!
//! The store's `init` and every writer open ask for every family of a data dir
//! ([`DATA_DIR_FAMILIES`]), so a data dir made by `init` (or by an older fwrepo, once any writer
//! command has run) has them all. A read-only secondary can only open families that exist when
//! it opens; one started before the writer created some notices it with
//! [`Db::writer_has_new_families`], and its owner opens it again.
//!
//! Every value written through this crate starts with a one-byte format marker
//! ([`encode`]/[`decode`]) so that a record layout can migrate without a flag day: a reader that
//! meets a marker it does not know reports [`Error::UnknownFormat`] instead of misreading bytes.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch};

/// Errors of the index database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB refused an operation.
    #[error("index database at {path}: {source}")]
    Rocks {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    /// A column family the caller needs is not in the database.
    #[error("index database at {path} has no column family {name:?}")]
    MissingColumnFamily { path: PathBuf, name: String },
    /// A value carries a format marker this build does not understand.
    #[error("record in {cf:?} has format {found}, this fwrepo reads format {expected}")]
    UnknownFormat { cf: String, found: u8, expected: u8 },
    /// A value is shorter than its format marker.
    #[error("empty record in {cf:?}")]
    EmptyRecord { cf: String },
    /// Creating the scratch directory of a read-only instance failed.
    #[error("scratch directory {path}: {source}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every column family of a data dir, whichever crate owns it. The store's writer creates them
/// all on every open, so a reader that starts before the first write of some concern (the first
/// `entitlements import`) already has that concern's families. A crate that adds a family
/// adds it here; a test of the `fwrepo` binary checks each crate's list against this one.
pub const DATA_DIR_FAMILIES: &[&str] = &[
    "store.chunks",
    "store.blobs",
    "store.packs",
    "store.meta",
    "store.deltas",
    "catalog.releases",
    "catalog.models",
    "catalog.model_releases",
    "catalog.blob_models",
    "catalog.targets",
    "repo.metadata",
    "entitle.serials",
    "entitle.agreements",
    "entitle.partners",
    "entitle.partner_credentials",
    "entitle.revoked_tokens",
    "entitle.revoked_subjects",
];

/// How a data dir's index is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The single writer: creates missing column families.
    ReadWrite,
    /// A reader that runs beside a writer, possibly in another process. It sees the database as
    /// of its last [`Db::catch_up`].
    ReadOnly,
}

/// An open index database.
pub struct Db {
    inner: rocksdb::DB,
    path: PathBuf,
    mode: Mode,
    /// Scratch directory of a read-only (secondary) instance, removed on drop.
    _scratch: Option<Scratch>,
    /// Families a read-only instance asked for that did not exist when it opened.
    absent: Vec<String>,
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

impl Db {
    /// Opens the index at `path` with (at least) the column families `cfs`.
    ///
    /// In [`Mode::ReadWrite`] missing column families are created. In [`Mode::ReadOnly`] the
    /// database must exist; column families it does not have yet are simply absent
    /// ([`Db::cf`] answers `None`), which readers treat as "no records", until the instance is
    /// opened again ([`Db::writer_has_new_families`]).
    pub fn open(path: &Path, cfs: &[&str], mode: Mode) -> Result<Db> {
        let rocks = |source| Error::Rocks { path: path.to_owned(), source };
        let mut opts = rocksdb::Options::default();
        // Indexes hold digests and offsets: small values, mostly point lookups.
        opts.set_max_open_files(-1);
        opts.set_keep_log_file_num(4);
        let existing = rocksdb::DB::list_cf(&opts, path).unwrap_or_default();
        match mode {
            Mode::ReadWrite => {
                opts.create_if_missing(true);
                opts.create_missing_column_families(true);
                let mut names: Vec<String> = existing;
                for cf in cfs {
                    if !names.iter().any(|n| n == cf) {
                        names.push((*cf).to_owned());
                    }
                }
                let inner = rocksdb::DB::open_cf(&opts, path, &names).map_err(rocks)?;
                Ok(Db { inner, path: path.to_owned(), mode, _scratch: None, absent: Vec::new() })
            }
            Mode::ReadOnly => {
                // Catching up with the writer reopens table handlers with this many threads,
                // per column family, every round, even when no file changed: the default 16
                // made each refresh of a serving process start and join hundreds of threads.
                // A secondary opens few new files per round; one thread does that in order.
                opts.set_max_file_opening_threads(1);
                let scratch = Scratch::create(&std::env::temp_dir())?;
                let names: Vec<&String> =
                    existing.iter().filter(|n| *n == "default" || cfs.contains(&n.as_str())).collect();
                let absent: Vec<String> =
                    cfs.iter().filter(|cf| !existing.iter().any(|n| n == *cf)).map(|cf| (*cf).to_owned()).collect();
                // On failure, dropping `scratch` removes the directory.
                let inner = rocksdb::DB::open_cf_as_secondary(&opts, path, &scratch.dir, names).map_err(rocks)?;
                Ok(Db { inner, path: path.to_owned(), mode, _scratch: Some(scratch), absent })
            }
        }
    }

    /// The column family `name`, if the database has it.
    pub fn cf(&self, name: &str) -> Option<&ColumnFamily> {
        self.inner.cf_handle(name)
    }

    /// The column family `name`, or an error naming it.
    pub fn require_cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.cf(name).ok_or_else(|| Error::MissingColumnFamily { path: self.path.clone(), name: name.to_owned() })
    }

    /// The raw RocksDB handle, for iterators and batches.
    pub fn rocks(&self) -> &rocksdb::DB {
        &self.inner
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads one value.
    pub fn get(&self, cf: &ColumnFamily, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get_cf(cf, key).map_err(|e| self.err(e))
    }

    /// Applies `batch` atomically; `durable` waits until it is on disk (WAL fsync).
    pub fn write(&self, batch: WriteBatch, durable: bool) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(durable);
        self.inner.write_opt(batch, &opts).map_err(|e| self.err(e))
    }

    /// Makes a read-only instance see what the writer has committed since it was opened.
    /// A no-op for the writer.
    pub fn catch_up(&self) -> Result<()> {
        match self.mode {
            Mode::ReadWrite => Ok(()),
            Mode::ReadOnly => self.inner.try_catch_up_with_primary().map_err(|e| self.err(e)),
        }
    }

    /// Column families this read-only instance asked for that did not exist when it opened
    /// (empty for the writer).
    pub fn absent_families(&self) -> &[String] {
        &self.absent
    }

    /// Whether the writer has created a column family this read-only instance asked for but
    /// could not open. A secondary never gains families by catching up, so its owner must
    /// open it again to see their records. Reads the database's family list only while some
    /// family is absent; `false` at once otherwise, and always for the writer.
    pub fn writer_has_new_families(&self) -> Result<bool> {
        if self.absent.is_empty() {
            return Ok(false);
        }
        let now = rocksdb::DB::list_cf(&rocksdb::Options::default(), &self.path).map_err(|e| self.err(e))?;
        Ok(self.absent.iter().any(|a| now.contains(a)))
    }

    /// Wraps a RocksDB error with this database's path.
    pub fn err(&self, source: rocksdb::Error) -> Error {
        Error::Rocks { path: self.path.clone(), source }
    }
}

/// Names of scratch directories in the temporary directory: `fwrepo-reader-<pid>-<seq>`.
const SCRATCH_PREFIX: &str = "fwrepo-reader-";
/// A scratch directory being set up, or being removed, under a name no sweep takes as one in use.
const SCRATCH_STAGING: &str = ".fwrepo-reader-staging-";
const SCRATCH_REMOVING: &str = ".fwrepo-reader-removing-";
/// The file in each scratch directory its owner holds an exclusive `flock` on while it lives.
const SCRATCH_LOCK: &str = "owner.lock";

/// The scratch directory a read-only instance needs (RocksDB keeps a secondary's own info log
/// there), and the lock that says its owner is alive.
///
/// Dropping it removes the directory. A process killed outright leaves its directories behind,
/// but the kernel releases its locks, so the next read-only open anywhere on the machine
/// ([`Scratch::create`]) removes every scratch directory whose lock it can take. The lock, not
/// the pid in the name, is what decides: pids are reused, and a process in another pid
/// namespace sharing the temporary directory is invisible in `/proc`.
struct Scratch {
    dir: PathBuf,
    /// Held (`LOCK_EX`) until drop.
    _lock: std::fs::File,
}

impl Scratch {
    /// Removes abandoned scratch directories under `root`, then makes a new one, locked.
    ///
    /// The directory is built under a staging name, with its lock file already locked, and
    /// only then renamed into place: a sweep never sees one of ours without its lock held.
    fn create(root: &Path) -> Result<Scratch> {
        sweep_scratch(root);
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Scratch { path, source }
        };
        let pid = std::process::id();
        let mut tries = 0;
        loop {
            let seq = SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed);
            let staging = root.join(format!("{SCRATCH_STAGING}{pid}-{seq}"));
            let dir = root.join(format!("{SCRATCH_PREFIX}{pid}-{seq}"));
            tries += 1;
            match std::fs::create_dir(&staging) {
                Ok(()) => {}
                // Left by a process with our pid (killed, or alive in another pid namespace).
                Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 100 => continue,
                Err(e) => return Err(err(&staging)(e)),
            }
            // Locked under another name and then renamed: a sweep never opens an unlocked
            // lock file of a live owner.
            let unnamed = staging.join(format!("{SCRATCH_LOCK}.new"));
            let locked = std::fs::File::create(&unnamed)
                .and_then(|f| try_lock(&f).map(|()| f))
                .and_then(|f| std::fs::rename(&unnamed, staging.join(SCRATCH_LOCK)).map(|()| f));
            let lock = match locked {
                Ok(f) => f,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(err(&staging)(e));
                }
            };
            match std::fs::rename(&staging, &dir) {
                Ok(()) => return Ok(Scratch { dir, _lock: lock }),
                // An abandoned directory of the same name that the sweep could not remove
                // (or one made since, by a process with our pid in another namespace): the next
                // sequence number.
                Err(e)
                    if matches!(e.kind(), ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists) && tries < 100 =>
                {
                    let _ = std::fs::remove_dir_all(&staging);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staging);
                    return Err(err(&dir)(e));
                }
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Removed while the lock is still held: no sweep takes it half-removed.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Takes an exclusive `flock` on `f` without waiting.
fn try_lock(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain call on a descriptor `f` keeps open.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes the scratch directories under `root` that no live process holds: those whose lock
/// file can be locked, and those a killed sweep or a killed set-up left under their staging or
/// removal names. Directories without a lock file (made by an fwrepo before these locks) are
/// left alone, since nothing tells whether their owner runs. Best effort: a directory it cannot
/// read or remove (another user's) is skipped.
fn sweep_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let pid = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if name.starts_with(SCRATCH_REMOVING) {
            let _ = std::fs::remove_dir_all(&path);
        } else if name.starts_with(SCRATCH_STAGING) {
            // A set-up may be under way: only one whose lock is free (its maker died after
            // locking). One with no lock file yet is left alone.
            if std::fs::File::open(path.join(SCRATCH_LOCK)).is_ok_and(|f| try_lock(&f).is_ok()) {
                let _ = std::fs::remove_dir_all(&path);
            }
        } else if name.starts_with(SCRATCH_PREFIX) {
            let Ok(lock) = std::fs::File::open(path.join(SCRATCH_LOCK)) else { continue };
            if try_lock(&lock).is_err() {
                continue;
            }
            // Abandoned. Renamed out of the way first, so a directory half-removed by a sweep
            // that is itself killed keeps a name that says so.
            let removing = root.join(format!("{SCRATCH_REMOVING}{pid}-{name}"));
            if std::fs::rename(&path, &removing).is_ok() {
                let _ = std::fs::remove_dir_all(&removing);
            }
        }
    }
}

/// Prefixes `body` with the format marker `version`.
pub fn encode(version: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(version);
    v.extend_from_slice(body);
    v
}

/// Checks the format marker of a value read from column family `cf` and returns its body.
pub fn decode<'a>(cf: &str, expected: u8, value: &'a [u8]) -> Result<&'a [u8]> {
    match value.split_first() {
        None => Err(Error::EmptyRecord { cf: cf.to_owned() }),
        Some((&v, body)) if v == expected => Ok(body),
        Some((&found, _)) => Err(Error::UnknownFormat { cf: cf.to_owned(), found, expected }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_values_round_trip_and_reject_unknown_formats() {
        let v = encode(1, b"abc");
        assert_eq!(decode("x", 1, &v).unwrap(), b"abc");
        assert!(matches!(decode("x", 2, &v), Err(Error::UnknownFormat { found: 1, expected: 2, .. })));
        assert!(matches!(decode("x", 1, &[]), Err(Error::EmptyRecord { .. })));
    }

    #[test]
    fn reader_sees_writes_after_catch_up_and_lacks_unknown_families() {
        let dir = tempfile::tempdir().unwrap();
        let w = Db::open(dir.path(), &["a"], Mode::ReadWrite).unwrap();
        let r = Db::open(dir.path(), &["a", "b"], Mode::ReadOnly).unwrap();
        assert!(r.cf("b").is_none());
        assert!(r.require_cf("b").is_err());
        let mut batch = WriteBatch::default();
        batch.put_cf(w.require_cf("a").unwrap(), b"k", encode(1, b"v"));
        w.write(batch, true).unwrap();
        r.catch_up().unwrap();
        let got = r.get(r.require_cf("a").unwrap(), b"k").unwrap().unwrap();
        assert_eq!(decode("a", 1, &got).unwrap(), b"v");
    }

    /// A database as an older fwrepo left it: only the families named, none of the others.
    fn old_database(path: &Path, cfs: &[&str]) {
        drop(Db::open(path, cfs, Mode::ReadWrite).unwrap());
    }

    #[test]
    fn reader_opened_before_the_writer_added_families_notices_them() {
        let dir = tempfile::tempdir().unwrap();
        old_database(dir.path(), &["store.chunks"]);
        let r = Db::open(dir.path(), &["store.chunks", "entitle.revoked_tokens"], Mode::ReadOnly).unwrap();
        assert_eq!(r.absent_families(), ["entitle.revoked_tokens"]);
        assert!(!r.writer_has_new_families().unwrap());

        let w = Db::open(dir.path(), DATA_DIR_FAMILIES, Mode::ReadWrite).unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(w.require_cf("entitle.revoked_tokens").unwrap(), b"jti", encode(1, b"t"));
        w.write(batch, true).unwrap();
        // Catching up never brings the family in: only opening again does.
        r.catch_up().unwrap();
        assert!(r.cf("entitle.revoked_tokens").is_none());
        assert!(r.writer_has_new_families().unwrap());
        let again = Db::open(dir.path(), &["store.chunks", "entitle.revoked_tokens"], Mode::ReadOnly).unwrap();
        assert!(again.absent_families().is_empty());
        assert!(!again.writer_has_new_families().unwrap());
        assert!(again.get(again.require_cf("entitle.revoked_tokens").unwrap(), b"jti").unwrap().is_some());
    }

    #[test]
    fn read_only_open_of_a_missing_database_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Db::open(&dir.path().join("nope"), &["a"], Mode::ReadOnly).is_err());
    }

    /// A scratch directory as a reader that was killed leaves it (its lock file unlocked), or as
    /// a live one holds it when `hold` is set (the lock taken through another open file, as
    /// another process would).
    fn left_behind(root: &Path, name: &str, hold: bool) -> (PathBuf, Option<std::fs::File>) {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("LOG"), b"rocksdb info log").unwrap();
        std::fs::write(dir.join(SCRATCH_LOCK), b"").unwrap();
        let held = hold.then(|| {
            let f = std::fs::File::open(dir.join(SCRATCH_LOCK)).unwrap();
            try_lock(&f).unwrap();
            f
        });
        (dir, held)
    }

    #[test]
    fn scratch_directories_of_dead_readers_go_and_those_of_live_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let (dead, _) = left_behind(root, "fwrepo-reader-4000001-0", false);
        let (dead_staging, _) = left_behind(root, ".fwrepo-reader-staging-4000001-1", false);
        let (half_removed, _) = left_behind(root, ".fwrepo-reader-removing-4000002-fwrepo-reader-7-0", false);
        let (alive, held) = left_behind(root, "fwrepo-reader-4000003-0", true);
        let (alive_staging, held_staging) = left_behind(root, ".fwrepo-reader-staging-4000003-1", true);
        // Made before scratch directories were locked: nothing says whether its owner runs.
        let unknown = root.join("fwrepo-reader-4000004-0");
        std::fs::create_dir(&unknown).unwrap();
        // Not a scratch directory at all.
        let other = root.join("fwrepo-readers");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join(SCRATCH_LOCK), b"").unwrap();

        let ours = Scratch::create(root).unwrap();
        assert!(ours.dir.join(SCRATCH_LOCK).is_file());
        for gone in [&dead, &dead_staging, &half_removed] {
            assert!(!gone.exists(), "{} should have been removed", gone.display());
        }
        for kept in [&alive, &alive_staging, &unknown, &other] {
            assert!(kept.exists(), "{} should have been kept", kept.display());
        }
        assert_eq!(std::fs::read_dir(root).unwrap().count(), 5, "no staging or removal leftovers of our own");

        // Our own directory is held as long as we live: another reader's sweep keeps it.
        let second = Scratch::create(root).unwrap();
        assert!(ours.dir.exists() && second.dir.exists());

        // The live reader dies: its lock goes with it, and the next open removes its directory.
        drop((held, held_staging));
        let third = Scratch::create(root).unwrap();
        assert!(!alive.exists() && !alive_staging.exists());
        let dirs = [ours.dir.clone(), second.dir.clone(), third.dir.clone()];
        drop((ours, second, third));
        for d in &dirs {
            assert!(!d.exists(), "{} outlived its owner", d.display());
        }
    }

    #[test]
    fn a_name_taken_by_an_abandoned_directory_that_cannot_be_swept_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let pid = std::process::id();
        let next = SCRATCH_SEQ.load(Ordering::Relaxed);
        // Directories under the next few names this process would pick, without lock files
        // (so the sweep leaves them): creation moves on to a free name and touches neither.
        let mut taken = Vec::new();
        for seq in next..next + 3 {
            let (staging, dir) =
                (root.join(format!("{SCRATCH_STAGING}{pid}-{seq}")), root.join(format!("{SCRATCH_PREFIX}{pid}-{seq}")));
            let which = if seq % 2 == 0 { staging } else { dir };
            std::fs::create_dir(&which).unwrap();
            std::fs::write(which.join("LOG"), b"x").unwrap();
            taken.push(which);
        }
        let s = Scratch::create(root).unwrap();
        for t in &taken {
            assert!(t.join("LOG").is_file(), "{} was touched", t.display());
            assert_ne!(*t, s.dir);
        }
        assert!(s.dir.join(SCRATCH_LOCK).is_file());
        // Every name before it was taken here or by another test's reader.
        let name = s.dir.file_name().unwrap().to_str().unwrap();
        let seq: u64 = name.rsplit('-').next().unwrap().parse().unwrap();
        assert!(seq >= next + 3, "{name}");
    }

    #[test]
    fn a_read_only_instance_removes_its_scratch_directory_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        old_database(dir.path(), &["a"]);
        let r = Db::open(dir.path(), &["a"], Mode::ReadOnly).unwrap();
        let scratch = r._scratch.as_ref().unwrap().dir.clone();
        assert!(scratch.join(SCRATCH_LOCK).is_file());
        drop(r);
        assert!(!scratch.exists());
    }
}
