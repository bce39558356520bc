//! The error type of fwrepo-chunk.

/// Errors of parsing ids and chunk indexes and of checking chunker parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("malformed id {input:?}: expected 64 lowercase hex digits")]
    MalformedId { input: String },
    #[error("invalid chunker parameters: {reason}")]
    ChunkerParams { reason: String },
    #[error("chunk index does not start with {magic:?}", magic = crate::chunk_index::MAGIC)]
    IndexMagic,
    #[error("chunk index of {len} bytes is truncated or has trailing bytes (expected {expected})")]
    IndexLength { len: usize, expected: usize },
    #[error("chunk index entries add up to {sum} bytes, blob is {blob_len}")]
    IndexSum { sum: u64, blob_len: u64 },
    #[error("chunk index entry {index} has length 0")]
    IndexEmptyChunk { index: usize },
    #[error("chunk delta: {reason}")]
    Delta { reason: String },
}
