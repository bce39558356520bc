//! fwrepo-chunk: how fwrepo cuts and names bytes, with no storage attached.
//!
//! The store, the mirror's sync and the update client must agree on chunk boundaries, chunk
//! ids and the chunk-index encoding byte for byte, so all three take them from this crate.
//! It depends on no database and does no I/O, so a client builds it in seconds.
//!
//! - [`Chunker`] and [`ChunkerParams`]: FastCDC 2020 with a repository's fixed sizes.
//! - [`Digest`]: a BLAKE3-256 id of a chunk or a blob, parsed only from canonical hex.
//! - [`ChunkIndex`]: a blob's chunk list in the binary form whose BLAKE3 is its signed
//!   `chunk_index` id.
//! - [`bases`]: which chunk of a seed a missing target chunk is encoded against.
//! - [`delta`]: the frames of a chunk-pair delta reply (a chunk compressed against a base chunk
//!   the caller holds) and their bounded decoder.

pub mod bases;
pub mod chunk_index;
pub mod chunker;
pub mod delta;
pub mod digest;
mod error;

pub use chunk_index::ChunkIndex;
pub use chunker::{Chunker, ChunkerParams};
pub use digest::{BlobId, ChunkId, Digest};
pub use error::Error;
