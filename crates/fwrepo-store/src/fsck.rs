//! `fsck` re-hashes every chunk and every blob; `stats` counts what the store holds.

use std::collections::{HashMap, HashSet};
use std::fmt;

use fwrepo_db::IteratorMode;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::index::{BlobRecord, CF_BLOBS, CF_CHUNKS, CF_PACKS, ChunkLoc, decode_pack_len, pack_from_key};
use crate::{Digest, Store};

/// One thing `fsck` found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FsckProblem {
    /// A chunk's stored bytes do not hash to its id; `blobs` are the blobs that use it.
    CorruptChunk { chunk: Digest, pack: u32, offset: u64, blobs: Vec<Digest> },
    /// A chunk's bytes cannot be read at all (pack missing or too short).
    UnreadableChunk { chunk: Digest, pack: u32, reason: String, blobs: Vec<Digest> },
    /// A blob lists a chunk the index does not have.
    MissingChunk { blob: Digest, chunk: Digest },
    /// A blob's chunks are intact but do not add up to its id or SHA-256.
    BlobMismatch { blob: Digest, what: &'static str },
    /// An index record does not decode.
    BadRecord { what: String, reason: String },
}

impl fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |b: &[Digest]| b.iter().map(|d| d.to_hex()).collect::<Vec<_>>().join(", ");
        match self {
            FsckProblem::CorruptChunk { chunk, pack, offset, blobs } => {
                write!(f, "corrupt chunk {chunk} (pack {pack} offset {offset}), used by blobs: {}", list(blobs))
            }
            FsckProblem::UnreadableChunk { chunk, pack, reason, blobs } => {
                write!(f, "unreadable chunk {chunk} in pack {pack}: {reason}; used by blobs: {}", list(blobs))
            }
            FsckProblem::MissingChunk { blob, chunk } => write!(f, "blob {blob} lists missing chunk {chunk}"),
            FsckProblem::BlobMismatch { blob, what } => write!(f, "blob {blob}: {what} does not match"),
            FsckProblem::BadRecord { what, reason } => write!(f, "bad index record {what}: {reason}"),
        }
    }
}

/// What `fsck` checked and found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub chunks_checked: u64,
    pub chunk_bytes_checked: u64,
    pub blobs_checked: u64,
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub blobs: u64,
    /// Sum of blob lengths: what a plain copy of every blob would take.
    pub logical_bytes: u64,
    pub chunks: u64,
    /// Sum of distinct chunk lengths: what the blobs take deduplicated.
    pub chunk_bytes: u64,
    pub packs: u64,
    /// Committed pack bytes, including record headers and chunks awaiting `gc`.
    pub pack_bytes: u64,
}

impl Store {
    /// Re-hashes every chunk against its id and every blob against its BLAKE3 id and SHA-256.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        // Chunk → problem index in `report.problems`, to attach the blobs that use it.
        let mut bad: HashMap<Digest, usize> = HashMap::new();
        let mut present: HashSet<Digest> = HashSet::new();
        for item in self.db.rocks().iterator_cf(chunks_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let Some(id) = Digest::from_slice(&k) else {
                report
                    .problems
                    .push(FsckProblem::BadRecord { what: "chunk key".into(), reason: format!("{} bytes", k.len()) });
                continue;
            };
            let loc = match ChunkLoc::decode(&id, &v) {
                Ok(loc) => loc,
                Err(e) => {
                    report.problems.push(FsckProblem::BadRecord { what: format!("chunk {id}"), reason: e.to_string() });
                    continue;
                }
            };
            present.insert(id);
            report.chunks_checked += 1;
            match self.packs.slice(loc.pack, loc.offset, loc.len) {
                Ok(bytes) => {
                    report.chunk_bytes_checked += bytes.len() as u64;
                    if Digest::of(&bytes) != id {
                        bad.insert(id, report.problems.len());
                        report.problems.push(FsckProblem::CorruptChunk {
                            chunk: id,
                            pack: loc.pack,
                            offset: loc.offset,
                            blobs: Vec::new(),
                        });
                    }
                }
                Err(e) => {
                    bad.insert(id, report.problems.len());
                    report.problems.push(FsckProblem::UnreadableChunk {
                        chunk: id,
                        pack: loc.pack,
                        reason: e.to_string(),
                        blobs: Vec::new(),
                    });
                }
            }
        }
        let blobs_cf = self.db.require_cf(CF_BLOBS)?;
        for item in self.db.rocks().iterator_cf(blobs_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let Some(blob) = Digest::from_slice(&k) else {
                report
                    .problems
                    .push(FsckProblem::BadRecord { what: "blob key".into(), reason: format!("{} bytes", k.len()) });
                continue;
            };
            let record = match BlobRecord::decode(&blob, &v) {
                Ok(r) => r,
                Err(e) => {
                    report
                        .problems
                        .push(FsckProblem::BadRecord { what: format!("blob {blob}"), reason: e.to_string() });
                    continue;
                }
            };
            report.blobs_checked += 1;
            let mut intact = true;
            for (chunk, _) in &record.chunks {
                if let Some(&i) = bad.get(chunk) {
                    intact = false;
                    match &mut report.problems[i] {
                        FsckProblem::CorruptChunk { blobs, .. } | FsckProblem::UnreadableChunk { blobs, .. } => {
                            if !blobs.contains(&blob) {
                                blobs.push(blob);
                            }
                        }
                        _ => unreachable!("`bad` indexes chunk problems only"),
                    }
                } else if !present.contains(chunk) {
                    intact = false;
                    report.problems.push(FsckProblem::MissingChunk { blob, chunk: *chunk });
                }
            }
            if intact {
                self.check_blob(&blob, &record, &mut report)?;
            }
        }
        Ok(report)
    }

    /// Hashes a blob whose chunks are all intact and compares with its record.
    fn check_blob(&self, blob: &Digest, record: &BlobRecord, report: &mut FsckReport) -> Result<()> {
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        let mut b3 = blake3::Hasher::new();
        let mut sha = Sha256::new();
        for (chunk, _) in &record.chunks {
            let v =
                self.db.get(chunks_cf, chunk.as_bytes())?.ok_or(Error::MissingChunk { chunk: *chunk, blob: *blob })?;
            let loc = ChunkLoc::decode(chunk, &v)?;
            let bytes = self.packs.slice(loc.pack, loc.offset, loc.len)?;
            b3.update(&bytes);
            sha.update(&bytes);
        }
        if Digest::from(b3.finalize()) != *blob {
            report.problems.push(FsckProblem::BlobMismatch { blob: *blob, what: "BLAKE3 id" });
        }
        if <[u8; 32]>::from(sha.finalize()) != record.sha256 {
            report.problems.push(FsckProblem::BlobMismatch { blob: *blob, what: "SHA-256" });
        }
        Ok(())
    }

    /// Counts blobs, chunks and packs.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let rocks = self.db.rocks();
        for item in rocks.iterator_cf(self.db.require_cf(CF_BLOBS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let blob = Digest::from_slice(&k).unwrap_or(Digest([0; 32]));
            s.blobs += 1;
            s.logical_bytes += BlobRecord::decode(&blob, &v)?.len;
        }
        for item in rocks.iterator_cf(self.db.require_cf(CF_CHUNKS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let chunk = Digest::from_slice(&k).unwrap_or(Digest([0; 32]));
            s.chunks += 1;
            s.chunk_bytes += u64::from(ChunkLoc::decode(&chunk, &v)?.len);
        }
        for item in rocks.iterator_cf(self.db.require_cf(CF_PACKS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let pack = pack_from_key(&k).unwrap_or(u32::MAX);
            s.packs += 1;
            s.pack_bytes += decode_pack_len(pack, &v)?;
        }
        Ok(s)
    }
}
