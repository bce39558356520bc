//! The error type of the fetch engine: one variant per way a peer or the caller can fail us,
//! each naming the request path, target or chunk it is about.

use std::time::Duration;

use fwrepo_chunk::Digest;

/// An error a caller-provided store or sink reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the fetch engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection failed, was reset, or dropped in the middle of a body.
    #[error("{path}: transport error: {reason}")]
    Transport { path: String, reason: String },
    /// No response head, or no body bytes, within the timeout.
    #[error("{path}: nothing received for {after:?}")]
    Timeout { path: String, after: Duration },
    /// The peer answered with a status the request cannot use.
    #[error("{path}: HTTP {status}")]
    Status { path: String, status: u16 },
    /// The body ended before the length signed metadata or the chunk index says it has.
    #[error("{path}: body ended after {got} bytes, expected {expected}")]
    Truncated { path: String, got: u64, expected: u64 },
    /// The body went on past the length it must have; reading stopped at the first byte past.
    #[error("{path}: body is longer than the {max} bytes it may have")]
    TooLong { path: String, max: u64 },
    /// A chunk's bytes do not hash to the id the verified chunk index gives it.
    #[error("{path}: chunk {chunk} at offset {offset} does not hash to its id (the peer served wrong bytes)")]
    ChunkMismatch { path: String, chunk: Digest, offset: u64 },
    /// A chunk-pair delta reply frame is malformed, in an encoding its entry cannot have, or
    /// does not decode within the chunk's signed length.
    #[error("{path}: delta frame for chunk {chunk} is refused: {reason} (the peer served wrong bytes)")]
    BadDelta { path: String, chunk: Digest, reason: String },
    /// A delta reply ended before it carried one frame per entry asked for.
    #[error("{path}: delta reply ended after {got} of {expected} frames")]
    FramesMissing { path: String, got: usize, expected: usize },
    /// A 206 answer whose `Content-Range` is missing or is not the range asked for.
    #[error("{path}: asked for bytes {start}-{end}, got a partial answer with Content-Range {content_range:?}")]
    BadRange { path: String, start: u64, end: u64, content_range: Option<String> },
    /// A target's signed `custom` lacks a well-formed `blake3` or `chunk_index` id.
    #[error("target {target}: {reason}")]
    TargetCustom { target: String, reason: String },
    /// The served chunk index does not hash to the signed `custom.chunk_index`.
    #[error("target {target}: chunk index hashes to {got}, signed chunk_index is {expected}")]
    ChunkIndexMismatch { target: String, expected: Digest, got: Digest },
    /// The chunk index hashed right but does not describe the signed target.
    #[error("target {target}: chunk index describes {index_len} bytes, signed length is {signed_len}")]
    ChunkIndexLength { target: String, index_len: u64, signed_len: u64 },
    /// The chunk index hashed right but does not parse (the signer published a bad one).
    #[error("target {target}: {source}")]
    ChunkIndex {
        target: String,
        #[source]
        source: fwrepo_chunk::Error,
    },
    /// Assembled target bytes do not match their signed length or SHA-256.
    #[error("target {target}: {source}")]
    Target {
        target: String,
        #[source]
        source: fwrepo_tuf::Error,
    },
    /// Assembled target bytes do not hash to the signed BLAKE3 blob id.
    #[error("target {target}: bytes hash to blob {got}, signed blake3 is {expected}")]
    BlobMismatch { target: String, expected: Digest, got: Digest },
    /// Signed metadata was refused by the TUF client workflow.
    #[error("metadata {name}: {source}")]
    Metadata {
        name: String,
        #[source]
        source: fwrepo_tuf::Error,
    },
    /// The caller's metadata store failed.
    #[error("metadata store: {source}")]
    MetadataStore {
        #[source]
        source: BoxError,
    },
    /// The caller's chunk sink refused a verified chunk.
    #[error("chunk sink refused chunk {chunk}: {source}")]
    Sink {
        chunk: Digest,
        #[source]
        source: BoxError,
    },
    /// The HTTP client could not be built (bad CA file, bad base URL).
    #[error("HTTP client: {reason}")]
    Client { reason: String },
}

impl Error {
    /// Whether trying again may succeed: connection trouble, timeouts, truncation and server
    /// errors. Authorization answers (401, 403), missing objects (404) and wrong bytes are not:
    /// a peer that served a wrong chunk is not asked again for it.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } | Error::Truncated { .. } | Error::FramesMissing { .. } => {
                true
            }
            Error::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status, for errors that are one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
