//! Garbage collection: drop blobs outside the caller's roots, drop chunks no live blob uses, and
//! compact packs whose dead share is large, while readers keep reading.
//!
//! Order of steps, each safe to crash after:
//! 1. one synced index batch deletes dead blob and chunk records (nothing live refers to them);
//! 2. live chunks of the packs chosen for compaction are copied into a fresh pack, verified as
//!    they are read, and synced;
//! 3. one synced index batch points the moved chunks at their new home and drops the old packs'
//!    entries;
//! 4. the old pack files are unlinked. A crash before this leaves files the index no longer
//!    knows, which the writer removes on its next open.
//!
//! Readers holding a layout from before step 3 either still have the old pack mapped (its bytes
//! stay valid) or find it missing and reload the layout. A reader drops its map of a removed pack
//! at its next refresh, which gives the pack's disk space back. The id of a removed pack is never
//! given to a new one (the high-water mark in `store.meta`), so a map made before the removal can
//! never be mistaken for the new pack's.

use std::collections::{BTreeMap, HashSet};

use fwrepo_db::{IteratorMode, WriteBatch};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::index::{BlobRecord, CF_BLOBS, CF_CHUNKS, CF_PACKS, ChunkLoc, pack_key};
use crate::pack::{HEADER, RECORD_OVERHEAD, pack_path};
use crate::{Digest, Store, Txn, fsutil};

/// What to collect.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// The live blobs. `None` keeps every stored blob and collects only chunks no blob uses
    /// (such as those left by an interrupted ingest).
    pub roots: Option<HashSet<Digest>>,
    /// A pack is rewritten when at least this share of its bytes is dead; a pack with no live
    /// chunk is always removed.
    pub min_dead_fraction: f64,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { roots: None, min_dead_fraction: 0.2 }
    }
}

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcReport {
    pub blobs_removed: u64,
    pub chunks_removed: u64,
    /// Precomputed deltas whose target chunk was removed.
    pub deltas_removed: u64,
    pub packs_rewritten: u64,
    pub packs_removed: u64,
    /// Pack bytes given back to the file system.
    pub bytes_reclaimed: u64,
    /// Dead bytes left in packs below the compaction threshold.
    pub dead_bytes_left: u64,
}

impl Store {
    /// Collects garbage as described in the module docs.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let mut w = self.writer("gc")?;
        let mut report = GcReport::default();
        let rocks = self.db.rocks();
        let (blobs_cf, chunks_cf, packs_cf) =
            (self.db.require_cf(CF_BLOBS)?, self.db.require_cf(CF_CHUNKS)?, self.db.require_cf(CF_PACKS)?);

        // Mark.
        let mut batch = WriteBatch::default();
        let mut live_chunks: HashSet<Digest> = HashSet::new();
        let mut dead_blobs = Vec::new();
        for item in rocks.iterator_cf(blobs_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let blob = Digest::from_slice(&k).ok_or_else(|| Error::CorruptRecord {
                what: "blob key".into(),
                reason: format!("{} bytes", k.len()),
            })?;
            if opts.roots.as_ref().is_none_or(|r| r.contains(&blob)) {
                live_chunks.extend(BlobRecord::decode(&blob, &v)?.chunks.into_iter().map(|(c, _)| c));
            } else {
                batch.delete_cf(blobs_cf, k);
                dead_blobs.push(blob);
            }
        }
        // Sweep the index, and tally live and dead bytes per pack.
        let mut live_by_pack: BTreeMap<u32, Vec<(Digest, ChunkLoc)>> = BTreeMap::new();
        for item in rocks.iterator_cf(chunks_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            let chunk = Digest::from_slice(&k).ok_or_else(|| Error::CorruptRecord {
                what: "chunk key".into(),
                reason: format!("{} bytes", k.len()),
            })?;
            let loc = ChunkLoc::decode(&chunk, &v)?;
            if live_chunks.contains(&chunk) {
                live_by_pack.entry(loc.pack).or_default().push((chunk, loc));
            } else {
                batch.delete_cf(chunks_cf, k);
                report.chunks_removed += 1;
            }
        }
        // Precomputed deltas of chunks that go.
        if let Some(deltas_cf) = self.db.cf(crate::deltas::CF_DELTAS) {
            for item in rocks.iterator_cf(deltas_cf, IteratorMode::Start) {
                let (k, _) = item.map_err(|e| self.db.err(e))?;
                if !crate::deltas::delta_target(&k).is_some_and(|t| live_chunks.contains(&t)) {
                    batch.delete_cf(deltas_cf, k);
                    report.deltas_removed += 1;
                }
            }
        }
        report.blobs_removed = dead_blobs.len() as u64;
        self.db.write(batch, true)?;
        for blob in &dead_blobs {
            self.layouts.remove(blob);
        }

        // Choose packs to compact.
        let mut rewrite = Vec::new();
        let mut remove = Vec::new();
        for (&pack, &len) in &w.committed {
            let body = len.saturating_sub(HEADER.len() as u64);
            let live: u64 =
                live_by_pack.get(&pack).map_or(0, |v| v.iter().map(|(_, l)| RECORD_OVERHEAD + u64::from(l.len)).sum());
            let dead = body.saturating_sub(live);
            if live == 0 {
                remove.push(pack);
            } else if body > 0 && dead as f64 / body as f64 >= opts.min_dead_fraction {
                rewrite.push(pack);
            } else {
                report.dead_bytes_left += dead;
            }
        }
        if rewrite.is_empty() && remove.is_empty() {
            return Ok(report);
        }

        // Copy live chunks of the rewritten packs into fresh packs. The active pack is closed
        // first so no pack is both a source and the destination.
        if let Some(mut a) = w.active.take() {
            a.sync()?;
        }
        let mut txn = Txn::default();
        let mut moved = Vec::new();
        let copied: Result<()> = (|| {
            for pack in &rewrite {
                for (chunk, loc) in &live_by_pack[pack] {
                    let bytes = self.packs.slice(loc.pack, loc.offset, loc.len)?;
                    if Digest::of(&bytes) != *chunk {
                        return Err(Error::CorruptChunk { chunk: *chunk, pack: loc.pack, offset: loc.offset });
                    }
                    let dest = w.pack_for(&self.packs, self.config.pack_max_size, u64::from(loc.len), &mut txn)?;
                    let offset = dest.append(chunk, &bytes)?;
                    moved.push((*chunk, ChunkLoc { pack: dest.id, offset, len: loc.len }));
                }
            }
            Ok(())
        })();
        let mut batch = WriteBatch::default();
        let prepared = copied.and_then(|()| w.prepare_commit(&self.packs, &mut txn, &mut batch, &self.db));
        if let Err(e) = prepared {
            w.abort(&self.packs, txn);
            return Err(e);
        }
        for (chunk, loc) in &moved {
            batch.put_cf(chunks_cf, chunk.as_bytes(), loc.encode());
        }
        for pack in rewrite.iter().chain(&remove) {
            batch.delete_cf(packs_cf, pack_key(*pack));
        }
        if let Err(e) = self.db.write(batch, true) {
            w.abort(&self.packs, txn);
            return Err(e.into());
        }
        w.committed(txn);
        for pack in rewrite.iter().chain(&remove) {
            let len = w.committed.remove(pack).unwrap_or(0);
            let path = pack_path(self.packs.dir(), *pack);
            if let Err(e) = std::fs::remove_file(&path) {
                // The index no longer knows the pack: the next writer open removes it.
                tracing::warn!(pack, error = %e, "cannot remove collected pack now");
            }
            self.packs.forget(*pack);
            report.bytes_reclaimed += len;
        }
        fsutil::sync_dir(self.packs.dir())?;
        let new_bytes: u64 = moved.iter().map(|(_, l)| RECORD_OVERHEAD + u64::from(l.len)).sum();
        report.bytes_reclaimed = report.bytes_reclaimed.saturating_sub(new_bytes);
        report.packs_rewritten = rewrite.len() as u64;
        report.packs_removed = remove.len() as u64;
        self.layouts.clear();
        Ok(report)
    }
}
