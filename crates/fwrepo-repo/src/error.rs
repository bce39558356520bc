//! The crate's error type: one variant per way a repository operation is refused, each naming
//! the file, field, role or release it is about.

use std::path::PathBuf;

/// Errors of repository operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (open, ingest, read).
    #[error(transparent)]
    Store(#[from] fwrepo_store::Error),
    /// The index database failed.
    #[error(transparent)]
    Db(#[from] fwrepo_db::Error),
    /// The catalog refused a release or failed.
    #[error(transparent)]
    Catalog(#[from] fwrepo_catalog::Error),
    /// Signing or verifying metadata failed.
    #[error(transparent)]
    Tuf(#[from] fwrepo_tuf::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A release manifest is not valid TOML or has a field that fails validation.
    #[error("{path}: {field}: {reason}")]
    Manifest { path: PathBuf, field: String, reason: String },
    /// A key file is missing.
    #[error("no {role} key: {path} does not exist (create keys with `fwrepo keys generate`)")]
    MissingKey { role: String, path: PathBuf },
    /// A key file that group or others may read or write.
    #[error("key file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// A key file that does not parse.
    #[error("key file {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// A key file that is not one of the keys the current root lists for its role.
    #[error("key file {path}: key {key_id} is not a {role} key of the current root")]
    UnknownKey { path: PathBuf, key_id: String, role: String },
    /// Key generation would overwrite an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyExists { path: PathBuf },
    /// The key directory is inside the data dir.
    #[error("key directory {keys} is inside the data dir {data}; keys never live in the data dir")]
    KeysInDataDir { keys: PathBuf, data: PathBuf },
    /// The data dir has no signed metadata yet.
    #[error("{data} has no signed metadata; run `fwrepo init --data {data} --keys DIR`")]
    NoMetadata { data: PathBuf },
    /// The data dir already has signed metadata.
    #[error("{data} already has signed metadata")]
    HasMetadata { data: PathBuf },
    /// A release with this id is already published.
    #[error("release {release} is already published")]
    DuplicateRelease { release: String },
    /// Stored metadata is inconsistent (a file the timestamp or snapshot names is missing).
    #[error("stored metadata: {reason}")]
    CorruptMetadata { reason: String },
    /// A bad argument (threshold, role name, path).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a path to I/O errors.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.to_owned(), source })
    }
}
