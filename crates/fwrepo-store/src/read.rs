//! Reading blobs: zero-copy slices of the mapped packs, each chunk verified before its first use.
//!
//! A blob's layout (where each of its chunks lives) is read from the index once and cached, so
//! serving a range costs a binary search and a few slice operations, not index lookups per chunk.
//! Each chunk is hashed the first time a layout hands it out; a chunk whose bytes do not match
//! its id is an error, never wrong bytes.
//!
//! [`Store::read_extents`] gives the same pieces with the pack file each lies in, so a server
//! can hand them to the kernel (`sendfile`) instead of copying them out of the mapping; each
//! extent went through the same first-use check as the slice it carries.
//!
//! A layout also keeps the blob's runs (chunks back to back in one pack, a blob ingested in one
//! go being one run): a read verifies the chunks it touches that are not verified yet, then
//! cuts its extents from the runs. Once every chunk of a layout has been verified, a read no
//! longer looks at its chunks at all: on a server with many blobs the binary search over chunk
//! ends and the first chunk's record missed the cache on most requests; the runs of a blob are
//! a line or two.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Serialize;
use smallvec::SmallVec;

use crate::chunk_index::ChunkIndex;
use crate::error::{Error, Result};
use crate::index::{BlobRecord, CF_BLOBS, CF_CHUNKS, ChunkLoc};
use crate::{Digest, Store};

/// How many blob layouts stay cached.
const LAYOUT_CACHE: usize = 4096;

/// Public facts about a stored blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    pub blob: Digest,
    pub len: u64,
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
    pub chunk_index: Digest,
    pub chunks: usize,
}

/// A piece of a blob: the mapped bytes, and where the same bytes lie in their pack file.
///
/// `bytes` was checked against its chunk's id before this extent was made, and pack bytes
/// below the committed length never change, so sending `bytes.len()` bytes of `file` from
/// `offset` sends exactly `bytes`.
#[derive(Clone, Debug)]
pub struct Extent {
    pub bytes: Bytes,
    pub file: Arc<File>,
    pub offset: u64,
}

/// The extents of a read, in order. A range of a blob stored in one go is one extent, kept
/// inline: serving it allocates nothing.
pub type Extents = SmallVec<[Extent; 1]>;

pub(crate) struct ChunkRef {
    pub id: Digest,
    pub loc: ChunkLoc,
    /// Offset of the chunk within the blob.
    pub start: u64,
    pub verified: AtomicBool,
}

pub(crate) struct Layout {
    pub info: BlobInfo,
    pub chunks: Vec<ChunkRef>,
    /// Where each chunk ends within the blob (`chunks[i].start + chunks[i].loc.len`), on its
    /// own: a range's first chunk is found by a binary search over 8-byte entries, a few cache
    /// lines, instead of over the 64-byte `ChunkRef`s, one line per probe.
    pub ends: Vec<u64>,
    /// The blob as runs of its pack files, in order: the extents a read of the whole blob
    /// gives.
    runs: Vec<RunRef>,
    /// Chunks not verified yet; 0 means every chunk of `chunks` is.
    unverified: AtomicUsize,
}

/// Consecutive chunks of a blob that lie back to back in one pack, at most `u32::MAX` bytes
/// (what one slice of a pack may be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunRef {
    /// Where the run ends within the blob; it starts where the one before ends.
    end: u64,
    pack: u32,
    /// Where the run starts in the pack.
    offset: u64,
}

impl Layout {
    fn new(info: BlobInfo, chunks: Vec<ChunkRef>) -> Layout {
        let ends = chunks.iter().map(|c| c.start + u64::from(c.loc.len)).collect();
        let mut runs: Vec<RunRef> = Vec::new();
        let mut run_start = 0u64;
        for c in &chunks {
            let len = u64::from(c.loc.len);
            if let Some(r) = runs.last_mut()
                && r.pack == c.loc.pack
                && r.offset + (r.end - run_start) == c.loc.offset
                && r.end + len - run_start <= u64::from(u32::MAX)
            {
                r.end += len;
                continue;
            }
            run_start = c.start;
            runs.push(RunRef { end: c.start + len, pack: c.loc.pack, offset: c.loc.offset });
        }
        let unverified = AtomicUsize::new(chunks.len());
        Layout { info, chunks, ends, runs, unverified }
    }

    /// Whether every chunk has been verified.
    fn all_verified(&self) -> bool {
        self.unverified.load(Ordering::Acquire) == 0
    }
}

pub(crate) struct LayoutCache(Mutex<HashMap<Digest, Arc<Layout>>>);

impl LayoutCache {
    pub fn new() -> LayoutCache {
        LayoutCache(Mutex::new(HashMap::new()))
    }

    fn get(&self, blob: &Digest) -> Option<Arc<Layout>> {
        self.0.lock().unwrap().get(blob).cloned()
    }

    fn put(&self, layout: Arc<Layout>) {
        let mut map = self.0.lock().unwrap();
        if map.len() >= LAYOUT_CACHE {
            // Any victim will do: a miss costs one index read per chunk of that blob.
            if let Some(k) = map.keys().next().copied() {
                map.remove(&k);
            }
        }
        map.insert(layout.info.blob, layout);
    }

    pub fn remove(&self, blob: &Digest) {
        self.0.lock().unwrap().remove(blob);
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Keeps the layouts `keep` says still hold; `keep` runs without the lock held, so reads go
    /// on meanwhile, and a layout cached again since is left alone.
    pub fn retain(&self, mut keep: impl FnMut(&Layout) -> Result<bool>) -> Result<()> {
        let cached: Vec<Arc<Layout>> = self.0.lock().unwrap().values().cloned().collect();
        let mut drop = Vec::new();
        for layout in cached {
            if !keep(&layout)? {
                drop.push(layout);
            }
        }
        if drop.is_empty() {
            return Ok(());
        }
        let mut map = self.0.lock().unwrap();
        for layout in drop {
            if map.get(&layout.info.blob).is_some_and(|l| Arc::ptr_eq(l, &layout)) {
                map.remove(&layout.info.blob);
            }
        }
        Ok(())
    }

    /// Whether `blob`'s layout is cached (tests).
    #[cfg(test)]
    pub fn holds(&self, blob: &Digest) -> bool {
        self.0.lock().unwrap().contains_key(blob)
    }
}

impl Store {
    /// Whether `blob` is fully stored (and so readable).
    pub fn contains(&self, blob: &Digest) -> Result<bool> {
        Ok(self.record(blob)?.is_some())
    }

    /// The ids of every stored blob, in id order.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        let cf = self.db.require_cf(CF_BLOBS)?;
        let mut out = Vec::new();
        for item in self.db.rocks().iterator_cf(cf, fwrepo_db::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.db.err(e))?;
            out.push(Digest::from_slice(&k).ok_or_else(|| Error::CorruptRecord {
                what: "blob key".into(),
                reason: format!("{} bytes", k.len()),
            })?);
        }
        Ok(out)
    }

    /// Length, hashes and chunk count of `blob`.
    pub fn blob_info(&self, blob: &Digest) -> Result<BlobInfo> {
        Ok(self.layout(blob)?.info.clone())
    }

    /// The chunk index of `blob`: its encoded bytes hash to `blob_info().chunk_index`.
    pub fn chunk_index(&self, blob: &Digest) -> Result<ChunkIndex> {
        let layout = self.layout(blob)?;
        Ok(ChunkIndex { blob_len: layout.info.len, chunks: layout.chunks.iter().map(|c| (c.id, c.loc.len)).collect() })
    }

    /// Bytes `range` of `blob`, as slices of the mapped packs in order (one per run of a pack,
    /// as [`Store::read_extents`] gives them).
    pub fn read_range(&self, blob: &Digest, range: Range<u64>) -> Result<Vec<Bytes>> {
        Ok(self.read_extents(blob, range)?.into_iter().map(|e| e.bytes).collect())
    }

    /// Bytes `range` of `blob` as extents of the pack files, in order, each chunk in them
    /// verified like [`Store::read_range`]'s slices. Chunks that lie back to back in one pack
    /// share an extent, so a range of a blob ingested in one go is one extent per pack.
    pub fn read_extents(&self, blob: &Digest, range: Range<u64>) -> Result<Extents> {
        match self.read_extents_once(blob, range.clone()) {
            // Garbage collection moved the blob's chunks after the layout was cached: reload,
            // and let go of maps of packs that left with them.
            Err(Error::MissingPack { .. }) => {
                self.layouts.remove(blob);
                self.db.catch_up()?;
                self.drop_stale_maps()?;
                self.read_extents_once(blob, range)
            }
            other => other,
        }
    }

    /// All bytes of `blob`, as slices of the mapped packs in order.
    pub fn read_all(&self, blob: &Digest) -> Result<Vec<Bytes>> {
        let len = self.layout(blob)?.info.len;
        self.read_range(blob, 0..len)
    }

    fn read_extents_once(&self, blob: &Digest, range: Range<u64>) -> Result<Extents> {
        let layout = self.layout(blob)?;
        let len = layout.info.len;
        if range.start > range.end || range.end > len {
            return Err(Error::RangeOutOfBounds { blob: *blob, start: range.start, end: range.end, len });
        }
        if range.start == range.end {
            return Ok(Extents::new());
        }
        if !layout.all_verified() {
            // Every chunk the range touches is hashed against its id before its first use;
            // the chunk holding `range.start` is found by a binary search, the rest follow it.
            let first = layout.ends.partition_point(|&end| end <= range.start);
            for c in layout.chunks[first..].iter().take_while(|c| c.start < range.end) {
                self.verify(&layout, c)?;
            }
        }
        self.extents_of_runs(&layout, range)
    }

    /// The extents of non-empty `range` (within the blob) cut from the layout's runs: one per
    /// run the range touches. The caller has verified every chunk in the range.
    fn extents_of_runs(&self, layout: &Layout, range: Range<u64>) -> Result<Extents> {
        let first = layout.runs.partition_point(|r| r.end <= range.start);
        let mut out = Extents::new();
        let mut run_start = if first == 0 { 0 } else { layout.runs[first - 1].end };
        for r in &layout.runs[first..] {
            if run_start >= range.end {
                break;
            }
            let from = range.start.max(run_start) - run_start;
            let to = range.end.min(r.end) - run_start;
            let offset = r.offset + from;
            let (bytes, file) = self.packs.slice_with_file(r.pack, offset, (to - from) as u32)?;
            out.push(Extent { bytes, file, offset });
            run_start = r.end;
        }
        Ok(out)
    }

    /// Hashes the chunk against its id unless `layout` has done so already.
    fn verify(&self, layout: &Layout, c: &ChunkRef) -> Result<()> {
        if c.verified.load(Ordering::Acquire) {
            return Ok(());
        }
        let bytes = self.packs.slice(c.loc.pack, c.loc.offset, c.loc.len)?;
        if Digest::of(&bytes) != c.id {
            return Err(Error::CorruptChunk { chunk: c.id, pack: c.loc.pack, offset: c.loc.offset });
        }
        // Counted once per chunk, by whichever reader marked it first.
        if !c.verified.swap(true, Ordering::AcqRel) {
            layout.unverified.fetch_sub(1, Ordering::Release);
        }
        Ok(())
    }

    pub(crate) fn record(&self, blob: &Digest) -> Result<Option<BlobRecord>> {
        let cf = self.db.require_cf(CF_BLOBS)?;
        match self.db.get(cf, blob.as_bytes())? {
            None => Ok(None),
            Some(v) => BlobRecord::decode(blob, &v).map(Some),
        }
    }

    pub(crate) fn layout(&self, blob: &Digest) -> Result<Arc<Layout>> {
        if let Some(l) = self.layouts.get(blob) {
            return Ok(l);
        }
        let record = self.record(blob)?.ok_or(Error::UnknownBlob { blob: *blob })?;
        let cf = self.db.require_cf(CF_CHUNKS)?;
        let keys: Vec<_> = record.chunks.iter().map(|(id, _)| (cf, id.as_bytes().to_vec())).collect();
        let values = self.db.rocks().multi_get_cf(keys);
        let mut chunks = Vec::with_capacity(record.chunks.len());
        let mut start = 0u64;
        for ((id, len), value) in record.chunks.iter().zip(values) {
            let value = value.map_err(|e| self.db.err(e))?;
            let value = value.ok_or(Error::MissingChunk { chunk: *id, blob: *blob })?;
            let loc = ChunkLoc::decode(id, &value)?;
            if loc.len != *len {
                return Err(Error::CorruptRecord {
                    what: format!("chunk {id}"),
                    reason: format!("index says {} bytes, blob {blob} says {len}", loc.len),
                });
            }
            chunks.push(ChunkRef { id: *id, loc, start, verified: AtomicBool::new(false) });
            start += u64::from(*len);
        }
        let info = BlobInfo {
            blob: *blob,
            len: record.len,
            sha256: record.sha256,
            chunk_index: record.chunk_index,
            chunks: chunks.len(),
        };
        let layout = Arc::new(Layout::new(info, chunks));
        self.layouts.put(layout.clone());
        Ok(layout)
    }
}
