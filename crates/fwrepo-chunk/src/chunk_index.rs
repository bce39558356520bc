//! The chunk index: a blob's chunk list in a compact binary form whose BLAKE3 is the blob's
//! `chunk_index` id (published in the signed target, served at `/v1/blobs/<id>/chunks`).
//!
//! Layout, all integers little-endian:
//! ```text
//! "FWCHIDX1"            8 bytes magic and version
//! blob length           u64
//! chunk count           u32
//! count × { id [32], len u32 }
//! ```
//! A client that holds the signed `chunk_index` id verifies the bytes by hashing them, then
//! [`ChunkIndex::parse`] checks that the entries add up to the blob length.

use crate::{Digest, Error};

pub(crate) const MAGIC: &[u8; 8] = b"FWCHIDX1";
const HEADER: usize = 8 + 8 + 4;
const ENTRY: usize = 36;

/// A parsed chunk index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkIndex {
    pub blob_len: u64,
    pub chunks: Vec<(Digest, u32)>,
}

impl ChunkIndex {
    /// Encodes the index.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + ENTRY * self.chunks.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.blob_len.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (id, len) in &self.chunks {
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&len.to_le_bytes());
        }
        b
    }

    /// The id of the encoded index.
    pub fn id(&self) -> Digest {
        Digest::of(&self.to_bytes())
    }

    /// Where a static export keeps the index with id `id`, relative to the export's root:
    /// `chunks/<first two hex digits>/<id>`. Content-addressed, so blobs that share an index
    /// share the file, and `fwrepo export` and clients of a static host agree on one name.
    pub fn export_path(id: &Digest) -> String {
        let hex = id.to_hex();
        format!("chunks/{}/{hex}", &hex[..2])
    }

    /// The longest encoding an index of a `blob_len`-byte blob can have when every chunk but
    /// the last holds at least `min_chunk` bytes: the cap a client puts on a chunk-index
    /// download before it has hashed it.
    pub fn max_encoded_len(blob_len: u64, min_chunk: u32) -> u64 {
        let chunks = blob_len / u64::from(min_chunk.max(1)) + 1;
        (HEADER as u64).saturating_add(chunks.saturating_mul(ENTRY as u64))
    }

    /// Byte offset of every chunk in the blob, in order.
    pub fn offsets(&self) -> impl Iterator<Item = (u64, &(Digest, u32))> + '_ {
        self.chunks.iter().scan(0u64, |pos, c| {
            let at = *pos;
            *pos += u64::from(c.1);
            Some((at, c))
        })
    }

    /// Parses and checks an encoded index. The caller checks its hash first.
    pub fn parse(bytes: &[u8]) -> Result<ChunkIndex, Error> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(if bytes.len() >= 8 && &bytes[..8] != MAGIC {
                Error::IndexMagic
            } else {
                Error::IndexLength { len: bytes.len(), expected: HEADER }
            });
        }
        let blob_len = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let count = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let expected = HEADER + count * ENTRY;
        if bytes.len() != expected {
            return Err(Error::IndexLength { len: bytes.len(), expected });
        }
        let mut chunks = Vec::with_capacity(count);
        let mut sum = 0u64;
        for (index, e) in bytes[HEADER..].chunks_exact(ENTRY).enumerate() {
            let len = u32::from_le_bytes(e[32..].try_into().unwrap());
            if len == 0 {
                return Err(Error::IndexEmptyChunk { index });
            }
            sum += u64::from(len);
            chunks.push((Digest::from_slice(&e[..32]).unwrap(), len));
        }
        if sum != blob_len {
            return Err(Error::IndexSum { sum, blob_len });
        }
        Ok(ChunkIndex { blob_len, chunks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_malformed_input() {
        let idx = ChunkIndex { blob_len: 5, chunks: vec![(Digest::of(b"a"), 2), (Digest::of(b"b"), 3)] };
        let bytes = idx.to_bytes();
        assert_eq!(ChunkIndex::parse(&bytes).unwrap(), idx);
        assert_eq!(
            ChunkIndex::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            Error::IndexLength { len: bytes.len() - 1, expected: bytes.len() }
        );
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert_eq!(ChunkIndex::parse(&bad_magic).unwrap_err(), Error::IndexMagic);
        let mut bad_sum = bytes.clone();
        bad_sum[8] = 6;
        assert!(matches!(ChunkIndex::parse(&bad_sum), Err(Error::IndexSum { .. })));
        let empty = ChunkIndex { blob_len: 0, chunks: vec![(Digest::of(b""), 0)] };
        assert!(matches!(ChunkIndex::parse(&empty.to_bytes()), Err(Error::IndexEmptyChunk { .. })));
        assert!(ChunkIndex::parse(b"FW").is_err());
    }

    #[test]
    fn max_encoded_len_bounds_every_index() {
        let idx = ChunkIndex {
            blob_len: 10,
            chunks: vec![(Digest::of(b"a"), 4), (Digest::of(b"b"), 4), (Digest::of(b"c"), 2)],
        };
        // Three chunks, the most 10 bytes can make with 4-byte minimum chunks: the bound is tight.
        assert_eq!(idx.to_bytes().len() as u64, ChunkIndex::max_encoded_len(10, 4));
        assert_eq!(ChunkIndex::max_encoded_len(0, 0), 20 + 36);
        let offsets: Vec<u64> = idx.offsets().map(|(o, _)| o).collect();
        assert_eq!(offsets, [0, 4, 8]);
    }
}
