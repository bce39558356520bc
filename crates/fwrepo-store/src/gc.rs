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
use crate::pack::{Format, HEADER, pack_path};
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
            let Some(chunks) = live_by_pack.get(&pack).filter(|v| !v.is_empty()) else {
                remove.push(pack);
                continue;
            };
            // Format 1 packs hold a head in front of each chunk.
            let overhead = match Format::of(&pack_path(self.packs.dir(), pack)) {
                Ok(f) => f.record_overhead(),
                Err(e) => {
                    // Its live chunks cannot be moved either; fsck reports them.
                    tracing::warn!(pack, error = %e, "leaving an unreadable pack alone");
                    continue;
                }
            };
            let live: u64 = chunks.iter().map(|(_, l)| overhead + u64::from(l.len)).sum();
            let dead = body.saturating_sub(live);
            if body > 0 && dead as f64 / body as f64 >= opts.min_dead_fraction {
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
        // Moved in pack order, so chunks that were one run of the old pack (a blob's chunks,
        // appended in order) are one run of the new one.
        for pack in &rewrite {
            if let Some(live) = live_by_pack.get_mut(pack) {
                live.sort_by_key(|(_, l)| l.offset);
            }
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
                    let offset = dest.append(&bytes)?;
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
        let new_bytes: u64 = moved.iter().map(|(_, l)| u64::from(l.len)).sum();
        report.bytes_reclaimed = report.bytes_reclaimed.saturating_sub(new_bytes);
        report.packs_rewritten = rewrite.len() as u64;
        report.packs_removed = remove.len() as u64;
        self.layouts.clear();
        Ok(report)
    }
}

#[cfg(test)]
mod format_1_tests {
    use std::path::Path;

    use super::*;
    use crate::index::encode_pack_len;
    use crate::pack::{HEADER_V1, V1_RECORD_OVERHEAD};
    use crate::{ChunkerParams, InitOptions};

    /// Random bytes: no chunk of one blob recurs in another.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        fwrepo_synth::Rng::new(seed).fill(&mut out);
        out
    }

    fn new_store(data: &Path) -> Store {
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        Store::init(data, &InitOptions { chunk_sizes: params, pack_max_size: 4 << 20 }).unwrap();
        Store::open(data).unwrap()
    }

    /// Rewrites pack `pack` as a format 1 pack (a head in front of each chunk), with the index
    /// pointing at the moved bytes: what a data dir from before format 2 holds.
    fn to_format_1(store: &Store, pack: u32) {
        let rocks = store.db.rocks();
        let chunks_cf = store.db.require_cf(CF_CHUNKS).unwrap();
        let mut locs: Vec<(Digest, ChunkLoc)> = rocks
            .iterator_cf(chunks_cf, IteratorMode::Start)
            .map(|i| {
                let (k, v) = i.unwrap();
                let id = Digest::from_slice(&k).unwrap();
                (id, ChunkLoc::decode(&id, &v).unwrap())
            })
            .filter(|(_, l)| l.pack == pack)
            .collect();
        locs.sort_by_key(|(_, l)| l.offset);
        let path = pack_path(store.packs.dir(), pack);
        let old = std::fs::read(&path).unwrap();
        let mut new = HEADER_V1.to_vec();
        let mut batch = WriteBatch::default();
        for (id, loc) in &locs {
            new.extend_from_slice(&loc.len.to_le_bytes());
            new.extend_from_slice(id.as_bytes());
            let offset = new.len() as u64;
            new.extend_from_slice(&old[loc.offset as usize..][..loc.len as usize]);
            batch.put_cf(chunks_cf, id.as_bytes(), ChunkLoc { offset, ..*loc }.encode());
        }
        batch.put_cf(store.db.require_cf(CF_PACKS).unwrap(), pack_key(pack), encode_pack_len(new.len() as u64));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &new).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        store.db.write(batch, true).unwrap();
    }

    fn read(store: &Store, blob: &Digest) -> Vec<u8> {
        store.read_all(blob).unwrap().concat()
    }

    /// A data dir written before format 2: its format 1 pack is read as it is, never appended
    /// to, counted with its heads by gc, and rewritten into format 2 when compacted.
    #[test]
    fn a_format_1_pack_is_read_left_alone_and_compacted_into_format_2() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, c) = (noise(1, 300_000), noise(2, 300_000));
        let (blob_a, blob_c) = {
            let store = new_store(&data);
            let blob_a = store.ingest_reader(&a[..], "a").unwrap().blob;
            let blob_c = store.ingest_reader(&c[..], "c").unwrap().blob;
            to_format_1(&store, 1);
            (blob_a, blob_c)
        };
        let v1 = pack_path(&data.join("packs"), 1);
        assert_eq!(Format::of(&v1).unwrap(), Format::V1);
        let before = std::fs::read(&v1).unwrap();

        let store = Store::open(&data).unwrap();
        assert!(read(&store, &blob_a) == a && read(&store, &blob_c) == c);
        assert!(store.fsck().unwrap().is_clean());
        let b = noise(3, 300_000);
        let blob_b = store.ingest_reader(&b[..], "b").unwrap().blob;
        assert!(std::fs::read(&v1).unwrap() == before, "a format 1 pack was appended to");
        let layout = store.layout(&blob_b).unwrap();
        assert!(layout.chunks.iter().all(|ch| ch.loc.pack == 2), "b went into a new pack");
        assert_eq!(Format::of(&pack_path(&data.join("packs"), 2)).unwrap(), Format::V2);

        // Every byte of the format 1 pack is live once its heads are counted.
        let report = store.gc(&GcOptions { roots: None, min_dead_fraction: 0.001 }).unwrap();
        assert_eq!((report.packs_rewritten, report.dead_bytes_left), (0, 0), "{report:?}");

        // With a collected, the pack is compacted: c's chunks move, in order, into format 2.
        let report =
            store.gc(&GcOptions { roots: Some(HashSet::from([blob_b, blob_c])), min_dead_fraction: 0.2 }).unwrap();
        assert_eq!(report.packs_rewritten, 1, "{report:?}");
        let heads = before.len() as u64 - a.len() as u64 - c.len() as u64 - HEADER_V1.len() as u64;
        assert_eq!(heads % V1_RECORD_OVERHEAD, 0);
        assert!(!v1.exists());
        assert!(read(&store, &blob_c) == c && read(&store, &blob_b) == b);
        assert!(store.fsck().unwrap().is_clean());
        let moved = store.read_extents(&blob_c, 0..c.len() as u64).unwrap();
        assert_eq!(moved.len(), 1, "c's chunks are one run of their new pack");
        let packs: HashSet<u32> = store.layout(&blob_c).unwrap().chunks.iter().map(|ch| ch.loc.pack).collect();
        assert!(packs.iter().all(|&p| Format::of(&pack_path(&data.join("packs"), p)).unwrap() == Format::V2));
    }
}
