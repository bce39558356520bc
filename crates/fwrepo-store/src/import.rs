//! Importing blobs chunk by chunk, as a mirror receives them from upstream: no re-chunking.
//!
//! A mirror learns a blob's chunk list from the upstream's chunk index (checked against the
//! signed `chunk_index` id), asks which chunks it lacks ([`Store::missing_chunks`]), stores the
//! fetched ones as they arrive ([`Store::put_chunks`]: each chunk checked against its BLAKE3 id,
//! then committed durably, so an interrupted sync resumes without fetching them again), and
//! finally makes the blob visible ([`Store::assemble_blob`]) once every chunk is durable and the
//! whole blob's length, BLAKE3 id and SHA-256 match what the signed metadata says.
//!
//! Chunks stored but not yet part of any blob are what `gc` without roots removes; a mirror must
//! not run gc while a sync is between `put_chunks` and `assemble_blob`.

use std::collections::HashSet;

use fwrepo_db::WriteBatch;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::index::{BlobRecord, CF_BLOBS, CF_CHUNKS, ChunkLoc};
use crate::{BlobInfo, ChunkIndex, Digest, Store, Txn};

/// What a blob must turn out to be, from signed metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedBlob {
    /// BLAKE3 of the whole blob (the store's blob id).
    pub blob: Digest,
    pub len: u64,
    pub sha256: [u8; 32],
}

/// What one [`Store::put_chunks`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Chunks written by this call.
    pub stored: usize,
    /// Bytes of the chunks written by this call.
    pub stored_bytes: u64,
    /// Chunks that were already in the store (or repeated in the call) and were skipped.
    pub already: usize,
}

impl Store {
    /// The chunks of `wanted` the store does not hold, each once, in first-seen order.
    pub fn missing_chunks<'a>(&self, wanted: impl IntoIterator<Item = &'a Digest>) -> Result<Vec<Digest>> {
        let cf = self.db.require_cf(CF_CHUNKS)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for id in wanted {
            if seen.insert(*id) && !self.has_chunk(cf, id)? {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Stores `chunks` (id, bytes), each verified against its id first, and commits them in one
    /// durable batch. Nothing is stored when any chunk fails its check.
    pub fn put_chunks<'a>(&self, chunks: impl IntoIterator<Item = (Digest, &'a [u8])>) -> Result<PutReport> {
        let chunks: Vec<(Digest, &[u8])> = chunks.into_iter().collect();
        // Check everything before touching a pack: a bad chunk changes nothing.
        for (id, data) in &chunks {
            if Digest::of(data) != *id {
                return Err(Error::ChunkMismatch { chunk: *id, len: data.len() as u64 });
            }
            if data.len() as u64 > u64::from(self.config.chunk_sizes.max_size) {
                return Err(Error::TooLarge {
                    what: "chunk",
                    len: data.len() as u64,
                    max: u64::from(self.config.chunk_sizes.max_size),
                });
            }
        }
        let mut w = self.writer("put_chunks")?;
        let mut txn = Txn::default();
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        let mut report = PutReport::default();
        let mut batch = WriteBatch::default();
        let mut pending = HashSet::new();
        let appended: Result<()> = (|| {
            for (id, data) in &chunks {
                if pending.contains(id) || self.has_chunk(chunks_cf, id)? {
                    report.already += 1;
                    continue;
                }
                let len = data.len() as u32;
                let pack = w.pack_for(&self.packs, self.config.pack_max_size, u64::from(len), &mut txn)?;
                let offset = pack.append(data)?;
                batch.put_cf(chunks_cf, id.as_bytes(), ChunkLoc { pack: pack.id, offset, len }.encode());
                pending.insert(*id);
                report.stored += 1;
                report.stored_bytes += u64::from(len);
            }
            Ok(())
        })();
        if let Err(e) = appended {
            w.abort(&self.packs, txn);
            return Err(e);
        }
        if report.stored == 0 {
            return Ok(report);
        }
        self.commit(&mut w, txn, batch)?;
        Ok(report)
    }

    /// Makes the blob whose chunks `index` lists visible, once every chunk is in the store and
    /// the bytes they add up to have `expect`'s length, BLAKE3 id and SHA-256. Idempotent: a blob
    /// already stored with the same facts is returned as it is.
    pub fn assemble_blob(&self, index: &ChunkIndex, expect: &ExpectedBlob) -> Result<BlobInfo> {
        let total: u64 = index.chunks.iter().map(|(_, l)| u64::from(*l)).sum();
        if total != index.blob_len || index.blob_len != expect.len {
            return Err(Error::BlobMismatch {
                blob: expect.blob,
                reason: format!(
                    "chunk index lists {total} bytes for a {}-byte blob; signed length is {}",
                    index.blob_len, expect.len
                ),
            });
        }
        let chunk_index = index.id();
        if let Some(rec) = self.record(&expect.blob)? {
            if rec.len == expect.len && rec.sha256 == expect.sha256 && rec.chunk_index == chunk_index {
                return self.blob_info(&expect.blob);
            }
            return Err(Error::BlobMismatch { blob: expect.blob, reason: "already stored with other facts".into() });
        }
        let _w = self.writer("assemble_blob")?;
        let cf = self.db.require_cf(CF_CHUNKS)?;
        let mut blake = blake3::Hasher::new();
        let mut sha = Sha256::new();
        for (id, len) in &index.chunks {
            let value = self.db.get(cf, id.as_bytes())?.ok_or(Error::MissingChunk { chunk: *id, blob: expect.blob })?;
            let loc = ChunkLoc::decode(id, &value)?;
            if loc.len != *len {
                return Err(Error::BlobMismatch {
                    blob: expect.blob,
                    reason: format!("chunk {id} is {} bytes, the chunk index says {len}", loc.len),
                });
            }
            let bytes = self.packs.slice(loc.pack, loc.offset, loc.len)?;
            if Digest::of(&bytes) != *id {
                return Err(Error::CorruptChunk { chunk: *id, pack: loc.pack, offset: loc.offset });
            }
            blake.update(&bytes);
            sha.update(&bytes);
        }
        let blob = Digest::from(blake.finalize());
        let sha256: [u8; 32] = sha.finalize().into();
        if blob != expect.blob {
            return Err(Error::BlobMismatch { blob: expect.blob, reason: format!("its chunks hash to {blob}") });
        }
        if sha256 != expect.sha256 {
            return Err(Error::BlobMismatch {
                blob: expect.blob,
                reason: format!(
                    "SHA-256 is {}, signed metadata says {}",
                    hex::encode(sha256),
                    hex::encode(expect.sha256)
                ),
            });
        }
        let record = BlobRecord { len: expect.len, sha256, chunk_index, chunks: index.chunks.clone() };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.require_cf(CF_BLOBS)?, blob.as_bytes(), record.encode());
        self.db.write(batch, true)?;
        Ok(BlobInfo { blob, len: expect.len, sha256, chunk_index, chunks: index.chunks.len() })
    }
}
