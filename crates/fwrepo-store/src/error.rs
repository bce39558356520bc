//! The store's error type: one variant per failure, each naming the object it is about.

use std::path::PathBuf;

use crate::Digest;

/// Errors of the content-addressed store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] fwrepo_db::Error),
    #[error("{path} is not an fwrepo data dir (it has no fwrepo.json); create one with `fwrepo init --data {path}`")]
    NotADataDir { path: PathBuf },
    #[error("{path} already holds an fwrepo data dir")]
    AlreadyInitialized { path: PathBuf },
    #[error("{path} is not empty; init wants an empty or missing directory")]
    NotEmpty { path: PathBuf },
    #[error("{path}: data dir format {found:?} version {version}, this fwrepo reads {expected:?} version {supported}")]
    UnsupportedFormat { path: PathBuf, found: String, version: u32, expected: &'static str, supported: u32 },
    #[error("{path}: invalid config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("data dir {path} is in use by another writer ({holder}); stop it or wait for it to finish")]
    Locked { path: PathBuf, holder: String },
    #[error("{op} needs the writer, but this store was opened read-only")]
    ReadOnly { op: &'static str },
    #[error("blob {blob} is not in the store")]
    UnknownBlob { blob: Digest },
    #[error("range {start}-{end} is not within blob {blob} of {len} bytes")]
    RangeOutOfBounds { blob: Digest, start: u64, end: u64, len: u64 },
    #[error("chunk {chunk} (pack {pack}, offset {offset}) is corrupt: its bytes do not hash to its id")]
    CorruptChunk { chunk: Digest, pack: u32, offset: u64 },
    #[error("chunk {chunk} of blob {blob} is missing from the index")]
    MissingChunk { chunk: Digest, blob: Digest },
    #[error("pack {pack} is missing")]
    MissingPack { pack: u32 },
    #[error("chunk {chunk} lies past the end of pack {pack} ({pack_len} bytes)")]
    ChunkOutsidePack { chunk: Digest, pack: u32, pack_len: u64 },
    #[error("corrupt index record for {what}: {reason}")]
    CorruptRecord { what: String, reason: String },
    #[error("reading {name}: {source}")]
    Input {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk {chunk} ({len} bytes) does not hash to its id")]
    ChunkMismatch { chunk: Digest, len: u64 },
    #[error("blob {blob} does not match what was expected: {reason}")]
    BlobMismatch { blob: Digest, reason: String },
    #[error("{what} is too large: {len} bytes, at most {max}")]
    TooLarge { what: &'static str, len: u64, max: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.into(), source })
    }
}
