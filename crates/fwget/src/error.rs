//! fwget's errors and the exit code each maps to.

use std::path::PathBuf;

/// Exit codes (documented in the README's client guide).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure: bad usage, a missing file, a local I/O error.
    pub const FAILED: i32 = 1;
    /// Command-line syntax (clap's own code).
    pub const USAGE: i32 = 2;
    /// The origin refused the credential, or a peer refused the token (401, 403).
    pub const NOT_ENTITLED: i32 = 3;
    /// Signed metadata was refused, or bytes did not match it and no peer served right ones.
    pub const VERIFICATION: i32 = 4;
    /// No peer could be reached, or every one timed out or failed with 5xx.
    pub const NETWORK: i32 = 5;
}

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// The token service or a peer refused: the credential or token is not entitled.
    #[error("not entitled: {0}")]
    NotEntitled(String),
    /// Bytes or metadata failed a check against signed metadata.
    #[error("verification failed: {0}")]
    Verification(String),
    #[error(transparent)]
    Fetch(#[from] fwrepo_fetch::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotEntitled(_) => exit::NOT_ENTITLED,
            Error::Verification(_) => exit::VERIFICATION,
            Error::Fetch(e) => fetch_exit_code(e),
            _ => exit::FAILED,
        }
    }
}

/// The exit code of a fetch engine error.
pub fn fetch_exit_code(e: &fwrepo_fetch::Error) -> i32 {
    use fwrepo_fetch::Error as F;
    match e {
        F::Status { status: 401 | 403, .. } => exit::NOT_ENTITLED,
        F::Transport { .. }
        | F::Timeout { .. }
        | F::Truncated { .. }
        | F::FramesMissing { .. }
        | F::TooLong { .. }
        | F::BadRange { .. } => exit::NETWORK,
        F::Status { status, .. } if *status >= 500 || *status == 408 || *status == 429 => exit::NETWORK,
        F::ChunkMismatch { .. }
        | F::BadDelta { .. }
        | F::ChunkIndexMismatch { .. }
        | F::ChunkIndexLength { .. }
        | F::ChunkIndex { .. }
        | F::Target { .. }
        | F::BlobMismatch { .. }
        | F::Metadata { .. }
        | F::TargetCustom { .. } => exit::VERIFICATION,
        _ => exit::FAILED,
    }
}
