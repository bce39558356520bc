//! The store's RocksDB records: chunk locations, blob records and committed pack lengths.
//!
//! Column families:
//! - `store.chunks`: chunk id (32 bytes) → [`ChunkLoc`]
//! - `store.blobs`: blob id (32 bytes) → [`BlobRecord`]
//! - `store.packs`: pack id (u32 big-endian) → committed length (u64). A pack file with no entry
//!   here holds nothing committed and is removed by the writer on open.
//! - `store.meta`: `next_pack` → the next pack id to allocate (u32), a high-water mark above every
//!   pack id ever committed, so an id is never reused after `gc` removed its pack (a reader may
//!   still map the old file under that name).
//! - `store.deltas`: precomputed chunk-pair deltas (`crate::deltas`).

use fwrepo_db::{decode, encode};

use crate::Digest;
use crate::error::{Error, Result};

pub const CF_CHUNKS: &str = "store.chunks";
pub const CF_BLOBS: &str = "store.blobs";
pub const CF_PACKS: &str = "store.packs";
pub const CF_META: &str = "store.meta";
pub const COLUMN_FAMILIES: &[&str] = &[CF_CHUNKS, CF_BLOBS, CF_PACKS, CF_META, crate::deltas::CF_DELTAS];

/// Key in `store.meta` of the next pack id to allocate.
pub const NEXT_PACK_KEY: &[u8] = b"next_pack";

const CHUNK_V1: u8 = 1;
const BLOB_V1: u8 = 1;
const PACK_V1: u8 = 1;
const NEXT_PACK_V1: u8 = 1;

/// Where a chunk's bytes live: `len` bytes at `offset` in pack `pack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLoc {
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

impl ChunkLoc {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.pack.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        encode(CHUNK_V1, &b)
    }

    pub fn decode(chunk: &Digest, value: &[u8]) -> Result<ChunkLoc> {
        let body = decode(CF_CHUNKS, CHUNK_V1, value)?;
        let b: &[u8; 16] = body.try_into().map_err(|_| Error::CorruptRecord {
            what: format!("chunk {chunk}"),
            reason: format!("{} bytes, expected 16", body.len()),
        })?;
        Ok(ChunkLoc {
            pack: u32::from_le_bytes(b[..4].try_into().unwrap()),
            offset: u64::from_le_bytes(b[4..12].try_into().unwrap()),
            len: u32::from_le_bytes(b[12..].try_into().unwrap()),
        })
    }
}

/// What the store knows about a blob: its length, SHA-256 (for TUF), the id of its chunk index
/// and its chunks in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    pub len: u64,
    pub sha256: [u8; 32],
    pub chunk_index: Digest,
    pub chunks: Vec<(Digest, u32)>,
}

impl BlobRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 32 + 32 + 4 + self.chunks.len() * 36);
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.sha256);
        b.extend_from_slice(self.chunk_index.as_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (id, len) in &self.chunks {
            b.extend_from_slice(id.as_bytes());
            b.extend_from_slice(&len.to_le_bytes());
        }
        encode(BLOB_V1, &b)
    }

    pub fn decode(blob: &Digest, value: &[u8]) -> Result<BlobRecord> {
        let corrupt = |reason: String| Error::CorruptRecord { what: format!("blob {blob}"), reason };
        let b = decode(CF_BLOBS, BLOB_V1, value)?;
        if b.len() < 76 {
            return Err(corrupt(format!("{} bytes, shorter than a header", b.len())));
        }
        let len = u64::from_le_bytes(b[..8].try_into().unwrap());
        let sha256: [u8; 32] = b[8..40].try_into().unwrap();
        let chunk_index = Digest::from_slice(&b[40..72]).unwrap();
        let count = u32::from_le_bytes(b[72..76].try_into().unwrap()) as usize;
        let rest = &b[76..];
        if rest.len() != count * 36 {
            return Err(corrupt(format!("{count} chunks need {} bytes, found {}", count * 36, rest.len())));
        }
        let chunks: Vec<(Digest, u32)> = rest
            .chunks_exact(36)
            .map(|e| (Digest::from_slice(&e[..32]).unwrap(), u32::from_le_bytes(e[32..].try_into().unwrap())))
            .collect();
        let total: u64 = chunks.iter().map(|(_, l)| u64::from(*l)).sum();
        if total != len {
            return Err(corrupt(format!("chunks add up to {total} bytes, blob is {len}")));
        }
        Ok(BlobRecord { len, sha256, chunk_index, chunks })
    }
}

pub fn pack_key(pack: u32) -> [u8; 4] {
    pack.to_be_bytes()
}

pub fn pack_from_key(key: &[u8]) -> Option<u32> {
    key.try_into().ok().map(u32::from_be_bytes)
}

pub fn encode_pack_len(len: u64) -> Vec<u8> {
    encode(PACK_V1, &len.to_le_bytes())
}

pub fn decode_pack_len(pack: u32, value: &[u8]) -> Result<u64> {
    let body = decode(CF_PACKS, PACK_V1, value)?;
    let b: [u8; 8] = body.try_into().map_err(|_| Error::CorruptRecord {
        what: format!("pack {pack}"),
        reason: format!("{} bytes, expected 8", body.len()),
    })?;
    Ok(u64::from_le_bytes(b))
}

pub fn encode_next_pack(next: u32) -> Vec<u8> {
    encode(NEXT_PACK_V1, &next.to_le_bytes())
}

pub fn decode_next_pack(value: &[u8]) -> Result<u32> {
    let body = decode(CF_META, NEXT_PACK_V1, value)?;
    let b: [u8; 4] = body.try_into().map_err(|_| Error::CorruptRecord {
        what: "next pack id".into(),
        reason: format!("{} bytes, expected 4", body.len()),
    })?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_inconsistent_bodies() {
        let loc = ChunkLoc { pack: 7, offset: 1 << 33, len: 65536 };
        let id = Digest::of(b"c");
        assert_eq!(ChunkLoc::decode(&id, &loc.encode()).unwrap(), loc);
        assert!(ChunkLoc::decode(&id, &encode(1, b"short")).is_err());

        let rec = BlobRecord {
            len: 30,
            sha256: [9; 32],
            chunk_index: Digest::of(b"i"),
            chunks: vec![(Digest::of(b"a"), 10), (Digest::of(b"b"), 20)],
        };
        assert_eq!(BlobRecord::decode(&id, &rec.encode()).unwrap(), rec);
        let wrong_total = BlobRecord { len: 31, ..rec.clone() };
        assert!(BlobRecord::decode(&id, &wrong_total.encode()).is_err());
        let mut truncated = rec.encode();
        truncated.pop();
        assert!(BlobRecord::decode(&id, &truncated).is_err());

        assert_eq!(decode_next_pack(&encode_next_pack(9)).unwrap(), 9);
        assert!(decode_next_pack(&encode(1, b"abc")).is_err());
        assert!(decode_next_pack(&encode(2, &9u32.to_le_bytes())).is_err());
    }
}
