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
    scratch: Option<PathBuf>,
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
                Ok(Db { inner, path: path.to_owned(), mode, scratch: None, absent: Vec::new() })
            }
            Mode::ReadOnly => {
                // Catching up with the writer reopens table handlers with this many threads,
                // per column family, every round, even when no file changed: the default 16
                // made each refresh of a serving process start and join hundreds of threads.
                // A secondary opens few new files per round; one thread does that in order.
                opts.set_max_file_opening_threads(1);
                let seq = SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed);
                let scratch = std::env::temp_dir().join(format!("fwrepo-reader-{}-{seq}", std::process::id()));
                std::fs::create_dir_all(&scratch).map_err(|source| Error::Scratch { path: scratch.clone(), source })?;
                let names: Vec<&String> =
                    existing.iter().filter(|n| *n == "default" || cfs.contains(&n.as_str())).collect();
                let absent: Vec<String> =
                    cfs.iter().filter(|cf| !existing.iter().any(|n| n == *cf)).map(|cf| (*cf).to_owned()).collect();
                let inner = match rocksdb::DB::open_cf_as_secondary(&opts, path, &scratch, names) {
                    Ok(db) => db,
                    Err(source) => {
                        let _ = std::fs::remove_dir_all(&scratch);
                        return Err(rocks(source));
                    }
                };
                Ok(Db { inner, path: path.to_owned(), mode, scratch: Some(scratch), absent })
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

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
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
}
