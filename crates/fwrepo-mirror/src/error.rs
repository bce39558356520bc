//! The mirror's error type: one variant per way a sync or an init is refused, each naming the
//! file, upstream request or target it is about.

use std::path::PathBuf;

/// Errors of the mirror.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream (or the token service) failed or served something verification refused.
    #[error("upstream: {0}")]
    Fetch(#[from] fwrepo_fetch::Error),
    /// The store refused a chunk or a blob, or failed.
    #[error(transparent)]
    Store(#[from] fwrepo_store::Error),
    /// Staging the switch failed (catalog rebuilt from signed targets, metadata).
    #[error(transparent)]
    Repo(#[from] fwrepo_repo::Error),
    /// The index database failed.
    #[error(transparent)]
    Db(#[from] fwrepo_db::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `mirror.toml` or a command-line setting is not valid.
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// The credential file may be read by group or others.
    #[error("credential file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    CredentialPermissions { path: PathBuf, mode: u32 },
    /// The pinned root is not a valid version-1 root.
    #[error("root {path}: {reason}")]
    Root { path: PathBuf, reason: String },
    /// The data dir is not a mirror, or is one already.
    #[error("{path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    /// The token service refused the partner credential, or answered something else than a
    /// `mirror` token.
    #[error("token from {url}: {reason}")]
    Token { url: String, reason: String },
    /// The upstream refused (401, 403) a token the token service had just issued: the
    /// partner was revoked or lost the right to mirror, or the upstream trusts another origin.
    #[error("upstream refused a fresh token from {token_url}: {reason}")]
    TokenRefused { token_url: String, status: u16, reason: String },
    /// A target in scope has signed `custom` the mirror cannot use.
    #[error("target {target}: {reason}")]
    Target { target: String, reason: String },
    /// A sync or a collection is already running on this mirror.
    #[error("cannot {op} now: a {running} of this mirror is running")]
    Busy { op: &'static str, running: &'static str },
    /// A record of the mirror's own column family cannot be read.
    #[error("{what}: {reason}")]
    Corrupt { what: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.to_owned(), source })
    }
}
