//! `fsck` re-hashes every chunk and every blob; `stats` counts what the store holds.

use std::collections::{HashMap, HashSet};
use std::fmt;

use fwrepo_db::IteratorMode;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::Result;
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
    /// Committed pack bytes, including pack headers (and chunk heads in format 1 packs) and
    /// chunks awaiting `gc`.
    pub pack_bytes: u64,
}

/// How many times `fsck` looks again at a chunk it could not read or verify while the index keeps
/// moving it (each look refreshes the index first).
const RECHECKS: usize = 4;

/// What checking one chunk found.
enum ChunkCheck {
    /// Its bytes hash to its id; this many of them.
    Intact(u64),
    /// The refreshed index no longer has it: garbage collection dropped it since the scan began.
    Collected,
    Problem(FsckProblem),
}

/// What `fsck` has learnt about chunks so far.
#[derive(Default)]
struct Seen {
    /// Chunks in the index (intact or not).
    present: HashSet<Digest>,
    /// Chunk → index of its problem in the report, to attach the blobs that use it.
    bad: HashMap<Digest, usize>,
}

impl Store {
    /// Re-hashes every chunk against its id and every blob against its BLAKE3 id and SHA-256.
    ///
    /// `fsck` may run beside the writer (as a reader it sees the index as of its last refresh).
    /// Whatever it cannot read or verify it looks at again after refreshing the index, and it
    /// reports a problem only if it still stands: `gc` may have moved a chunk and unlinked the
    /// pack an older view of the index pointed at, or dropped the chunk and its blob altogether.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        let mut seen = Seen::default();
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
            self.record_chunk(id, loc, &mut seen, &mut report)?;
        }
        let blobs_cf = self.db.require_cf(CF_BLOBS)?;
        'blobs: for item in self.db.rocks().iterator_cf(blobs_cf, IteratorMode::Start) {
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
            let mut intact = true;
            for (chunk, _) in &record.chunks {
                if !seen.present.contains(chunk) {
                    // Not in the scan: stored after it began (with a newer blob), or missing.
                    self.refresh()?;
                    if !self.blob_listed(&blob)? {
                        continue 'blobs;
                    }
                    match self.current_loc(chunk)? {
                        Some(Ok(loc)) => self.record_chunk(*chunk, loc, &mut seen, &mut report)?,
                        Some(Err(p)) => report.problems.push(p),
                        None => {}
                    }
                }
                if let Some(&i) = seen.bad.get(chunk) {
                    intact = false;
                    if let FsckProblem::CorruptChunk { blobs, .. } | FsckProblem::UnreadableChunk { blobs, .. } =
                        &mut report.problems[i]
                        && !blobs.contains(&blob)
                    {
                        blobs.push(blob);
                    }
                } else if !seen.present.contains(chunk) {
                    intact = false;
                    report.problems.push(FsckProblem::MissingChunk { blob, chunk: *chunk });
                }
            }
            report.blobs_checked += 1;
            if intact {
                self.check_blob(&blob, &record, &mut report)?;
            }
        }
        Ok(report)
    }

    /// Checks one chunk and notes the outcome in `seen` and `report`.
    fn record_chunk(&self, id: Digest, loc: ChunkLoc, seen: &mut Seen, report: &mut FsckReport) -> Result<()> {
        match self.check_chunk(id, loc)? {
            ChunkCheck::Intact(n) => {
                report.chunks_checked += 1;
                report.chunk_bytes_checked += n;
                seen.present.insert(id);
            }
            ChunkCheck::Collected => {}
            ChunkCheck::Problem(p) => {
                report.chunks_checked += 1;
                seen.present.insert(id);
                seen.bad.insert(id, report.problems.len());
                report.problems.push(p);
            }
        }
        Ok(())
    }

    /// Reads chunk `id` at `loc` and hashes it; on failure, refreshes the index and looks again
    /// where the index says the chunk is now, for as long as that keeps changing.
    fn check_chunk(&self, id: Digest, mut loc: ChunkLoc) -> Result<ChunkCheck> {
        let read = |loc: ChunkLoc| match self.packs.slice(loc.pack, loc.offset, loc.len) {
            Ok(bytes) if Digest::of(&bytes) == id => ChunkCheck::Intact(bytes.len() as u64),
            Ok(_) => ChunkCheck::Problem(FsckProblem::CorruptChunk {
                chunk: id,
                pack: loc.pack,
                offset: loc.offset,
                blobs: Vec::new(),
            }),
            Err(e) => ChunkCheck::Problem(FsckProblem::UnreadableChunk {
                chunk: id,
                pack: loc.pack,
                reason: e.to_string(),
                blobs: Vec::new(),
            }),
        };
        let mut outcome = read(loc);
        for _ in 0..RECHECKS {
            if !matches!(outcome, ChunkCheck::Problem(_)) {
                break;
            }
            // Refreshing also drops maps of packs the index no longer lists, so the look again
            // reads the files as they are now.
            self.refresh()?;
            let now = match self.current_loc(&id)? {
                None => return Ok(ChunkCheck::Collected),
                Some(Err(p)) => return Ok(ChunkCheck::Problem(p)),
                Some(Ok(now)) => now,
            };
            outcome = read(now);
            if now == loc {
                // The newest index still points where the problem is: it stands.
                break;
            }
            loc = now;
        }
        Ok(outcome)
    }

    /// Where the index (as this store sees it now) says `chunk` is, if it has it.
    fn current_loc(&self, chunk: &Digest) -> Result<Option<Result<ChunkLoc, FsckProblem>>> {
        let v = self.db.get(self.db.require_cf(CF_CHUNKS)?, chunk.as_bytes())?;
        Ok(v.map(|v| {
            ChunkLoc::decode(chunk, &v)
                .map_err(|e| FsckProblem::BadRecord { what: format!("chunk {chunk}"), reason: e.to_string() })
        }))
    }

    fn blob_listed(&self, blob: &Digest) -> Result<bool> {
        Ok(self.db.get(self.db.require_cf(CF_BLOBS)?, blob.as_bytes())?.is_some())
    }

    /// Hashes a blob whose chunks are all intact and compares with its record. A chunk that
    /// cannot be read now is looked at again after a refresh, and is a problem only if the blob
    /// is still listed then.
    fn check_blob(&self, blob: &Digest, record: &BlobRecord, report: &mut FsckReport) -> Result<()> {
        let mut b3 = blake3::Hasher::new();
        let mut sha = Sha256::new();
        for (chunk, _) in &record.chunks {
            let mut refreshed = false;
            let bytes = loop {
                let problem = match self.current_loc(chunk)? {
                    Some(Ok(loc)) => match self.packs.slice(loc.pack, loc.offset, loc.len) {
                        Ok(bytes) => break bytes,
                        Err(e) => FsckProblem::UnreadableChunk {
                            chunk: *chunk,
                            pack: loc.pack,
                            reason: e.to_string(),
                            blobs: vec![*blob],
                        },
                    },
                    Some(Err(p)) => p,
                    None => FsckProblem::MissingChunk { blob: *blob, chunk: *chunk },
                };
                if refreshed {
                    report.problems.push(problem);
                    return Ok(());
                }
                self.refresh()?;
                refreshed = true;
                if !self.blob_listed(blob)? {
                    return Ok(());
                }
            };
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
