//! Streaming ingest: chunk, hash, deduplicate and append a blob with bounded memory.
//!
//! The work is split into stages joined by bounded channels, so it spreads over the cores:
//!
//! ```text
//! caller thread:  read input → FastCDC cut ─┬→ SHA-256                            (TUF hash)
//!                                           └→ blob BLAKE3, chunk BLAKE3 ids → dedup, pack append
//! ```
//!
//! SHA-256 is the costliest hash (about as much CPU as FastCDC and both BLAKE3s together), so
//! it has a stage of its own; the two BLAKE3s share one, and the write stage does only lookups
//! and copies into the pack writer's staging buffer (or the page cache, see `pack.rs`). That keeps the two heaviest threads (cut, SHA-256) near
//! half the work each, which is what two cores need.
//!
//! Input is read into a small pool of large buffers that travel through the stages and come back
//! for reuse, so memory stays at `POOL × BUFFER` whatever the blob size. A regular file that
//! can be held still with a read lease ([`crate::held`]) is instead read through windows of
//! `BUFFER` bytes mapped from it, which saves the copy out of the page cache; the pool's
//! buffers then stay empty and only bound how many windows are in flight. The blob becomes
//! visible only in the final index batch, written after its chunks are durable.
//!
//! Each stage keeps a [`StageTime`] (its thread's CPU time, the time it waited for input and for
//! room downstream, the time in reads or pack writes): [`Store::ingest_path_profiled`] returns
//! them, so a stall shows as the stage that waits least while the others wait on it.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use fwrepo_db::WriteBatch;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::chunk_index::ChunkIndex;
use crate::error::{Error, IoContext, Result};
use crate::held::{HeldFile, Window};
use crate::index::{BlobRecord, CF_BLOBS, CF_CHUNKS, ChunkLoc};
use crate::{BlobInfo, Digest, Store, Txn, Writer};

const BUFFER: usize = 8 << 20;
const POOL: usize = 4;
/// Most mapped windows in flight. They cost no buffer memory, and twice the pool's number
/// kept the stages waiting on each other less (docs/BENCHMARKS.md, 2026-12-06).
const WINDOWS: usize = 8;

/// What ingesting one blob did: the blob's facts plus what this ingest added to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    #[serde(flatten)]
    pub info: BlobInfo,
    /// Chunks this ingest stored (the rest were already in the store).
    pub new_chunks: usize,
    /// Chunk bytes this ingest stored.
    pub new_bytes: u64,
}

impl std::ops::Deref for IngestReport {
    type Target = BlobInfo;

    fn deref(&self) -> &BlobInfo {
        &self.info
    }
}

/// Where one ingest stage spent its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTime {
    /// `read+cut`, `sha256`, `blake3`, `write`.
    pub name: &'static str,
    /// CPU time of the stage's thread (user + system).
    pub cpu: Duration,
    /// Wall time from the stage's start to its end.
    pub wall: Duration,
    /// Blocked waiting for input (a filled batch, or a free buffer for the reader).
    pub wait_in: Duration,
    /// Blocked waiting for room in the next stage's channel.
    pub wait_out: Duration,
    /// In `read` of the input (reader) or appending to packs (write stage).
    pub io: Duration,
}

/// Per-stage timings of one ingest (see [`Store::ingest_path_profiled`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestProfile {
    pub stages: Vec<StageTime>,
    /// The final fsync of packs and the index batch.
    pub commit: Duration,
    /// Whether the pack this ingest ended in was written with `O_DIRECT` (else through the
    /// page cache).
    pub direct_io: bool,
    /// Whether the input was read through mappings under a read lease (else with `read()`).
    pub mapped: bool,
}

impl StageTime {
    fn start(name: &'static str) -> (StageTime, Instant, Duration) {
        (StageTime { name, ..StageTime::default() }, Instant::now(), thread_cpu())
    }

    fn finish(mut self, started: Instant, cpu0: Duration) -> StageTime {
        self.wall = started.elapsed();
        self.cpu = thread_cpu().saturating_sub(cpu0);
        self
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `rx.recv()`, adding the time blocked to `waited`.
fn recv_timed<T>(rx: &Receiver<T>, waited: &mut Duration) -> Option<T> {
    let t = Instant::now();
    let got = rx.recv().ok();
    *waited += t.elapsed();
    got
}

/// `tx.send(v)`, adding the time blocked to `waited`; false when the receiver is gone.
fn send_timed<T>(tx: &Sender<T>, v: T, waited: &mut Duration) -> bool {
    let t = Instant::now();
    let sent = tx.send(v).is_ok();
    *waited += t.elapsed();
    sent
}

/// A filled input buffer (or a window of a held file) and the chunks cut from it.
/// `buf[..covered]` is exactly those chunks; bytes after `covered` were carried over to the
/// next batch.
struct Batch {
    buf: Span,
    covered: usize,
    lens: Vec<u32>,
}

/// Where a batch's bytes are.
enum Span {
    /// A pool buffer, filled by `read()`.
    Pool(Vec<u8>),
    /// A mapped window of a held file.
    Mapped(Window),
}

impl std::ops::Deref for Span {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Span::Pool(v) => v,
            Span::Mapped(w) => w,
        }
    }
}

/// What an ingest reads.
enum Source<'a> {
    Reader(&'a mut dyn Read),
    Held(&'a HeldFile),
}

/// The reader's ends of the pipeline.
#[derive(Clone, Copy)]
struct ReadChannels<'a> {
    pool_rx: &'a Receiver<Vec<u8>>,
    pool_tx: &'a Sender<Vec<u8>>,
    sha_tx: &'a Sender<Arc<Batch>>,
    ids_tx: &'a Sender<Arc<Batch>>,
    /// Set by the write stage when it fails, so the reader stops reading.
    failed: &'a AtomicBool,
}

/// What the write stage hands back.
struct Written {
    chunks: Vec<(Digest, u32)>,
    new_locs: Vec<(Digest, ChunkLoc)>,
    new_bytes: u64,
}

impl Store {
    /// Ingests the file at `path`.
    pub fn ingest_path(&self, path: &Path) -> Result<IngestReport> {
        self.ingest_path_profiled(path).map(|(report, _)| report)
    }

    /// [`Store::ingest_path`], also returning where each stage spent its time (for benchmarks).
    pub fn ingest_path_profiled(&self, path: &Path) -> Result<(IngestReport, IngestProfile)> {
        let meta = std::fs::metadata(path).at(path)?;
        if !meta.is_file() {
            return Err(Error::Input {
                name: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        let file = std::fs::File::open(path).at(path)?;
        let name = path.display().to_string();
        match HeldFile::hold(file) {
            Ok(held) => self.ingest_profiled(Source::Held(&held), &name),
            Err(mut file) => self.ingest_profiled(Source::Reader(&mut file), &name),
        }
    }

    /// Ingests everything `input` yields; `name` labels read errors.
    pub fn ingest_reader(&self, mut input: impl Read, name: &str) -> Result<IngestReport> {
        self.ingest_reader_profiled(&mut input, name).map(|(report, _)| report)
    }

    /// [`Store::ingest_reader`], also returning where each stage spent its time (for
    /// benchmarks: on a file, the `read()` path that [`Store::ingest_path`] falls back to).
    pub fn ingest_reader_profiled(&self, mut input: impl Read, name: &str) -> Result<(IngestReport, IngestProfile)> {
        self.ingest_profiled(Source::Reader(&mut input), name)
    }

    fn ingest_profiled(&self, input: Source<'_>, name: &str) -> Result<(IngestReport, IngestProfile)> {
        let mapped = matches!(input, Source::Held(_));
        let mut w = self.writer("ingest")?;
        let mut txn = Txn::default();
        match self.ingest_in(&mut w, &mut txn, input, name) {
            Ok((report, batch, stages)) => {
                let t = Instant::now();
                self.commit(&mut w, txn, batch)?;
                let direct_io = w.active.as_ref().is_some_and(|a| a.is_direct());
                Ok((report, IngestProfile { stages, commit: t.elapsed(), direct_io, mapped }))
            }
            Err(e) => {
                w.abort(&self.packs, txn);
                Err(e)
            }
        }
    }

    pub(crate) fn commit(&self, w: &mut Writer, mut txn: Txn, mut batch: WriteBatch) -> Result<()> {
        let done = w.prepare_commit(&self.packs, &mut txn, &mut batch, &self.db).and_then(|()| {
            // The chunks are durable now; one synced batch makes them and the blob visible.
            self.db.write(batch, true).map_err(Error::from)
        });
        match done {
            Ok(()) => {
                w.committed(txn);
                Ok(())
            }
            Err(e) => {
                w.abort(&self.packs, txn);
                Err(e)
            }
        }
    }

    fn ingest_in(
        &self,
        w: &mut Writer,
        txn: &mut Txn,
        mut input: Source<'_>,
        name: &str,
    ) -> Result<(IngestReport, WriteBatch, Vec<StageTime>)> {
        // Room for every buffer or window in flight, so only the pool bounds them.
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(POOL.max(WINDOWS));
        let (sha_tx, sha_rx) = bounded::<Arc<Batch>>(POOL.max(WINDOWS));
        let (ids_tx, ids_rx) = bounded::<Arc<Batch>>(POOL.max(WINDOWS));
        let (write_tx, write_rx) = bounded::<(Arc<Batch>, Vec<Digest>)>(POOL.max(WINDOWS));

        let failed = AtomicBool::new(false);
        let (sha256, blob_hash, written, read) = std::thread::scope(|s| {
            let sha = s.spawn({
                let pool_tx = pool_tx.clone();
                move || {
                    let (mut st, t0, cpu0) = StageTime::start("sha256");
                    let mut h = Sha256::new();
                    while let Some(b) = recv_timed(&sha_rx, &mut st.wait_in) {
                        h.update(&b.buf[..b.covered]);
                        recycle(b, &pool_tx);
                    }
                    (<[u8; 32]>::from(h.finalize()), st.finish(t0, cpu0))
                }
            });
            let ids = s.spawn(move || {
                let (mut st, t0, cpu0) = StageTime::start("blake3");
                let mut whole = blake3::Hasher::new();
                while let Some(b) = recv_timed(&ids_rx, &mut st.wait_in) {
                    whole.update(&b.buf[..b.covered]);
                    let mut pos = 0usize;
                    let ids = b
                        .lens
                        .iter()
                        .map(|&len| {
                            let id = Digest::of(&b.buf[pos..pos + len as usize]);
                            pos += len as usize;
                            id
                        })
                        .collect();
                    if !send_timed(&write_tx, (b, ids), &mut st.wait_out) {
                        break;
                    }
                }
                (Digest::from(whole.finalize()), st.finish(t0, cpu0))
            });
            let write = s.spawn({
                let pool_tx = pool_tx.clone();
                let failed = &failed;
                move || {
                    let (mut st, t0, cpu0) = StageTime::start("write");
                    let out = self.write_stage(w, txn, &write_rx, &pool_tx, &mut st);
                    if out.is_err() {
                        // Tell the reader to stop, and keep buffers flowing back so it never
                        // waits on an empty pool.
                        failed.store(true, Ordering::Relaxed);
                        for (b, _) in write_rx {
                            recycle(b, &pool_tx);
                        }
                    }
                    (out, st.finish(t0, cpu0))
                }
            });
            let channels = ReadChannels {
                pool_rx: &pool_rx,
                pool_tx: &pool_tx,
                sha_tx: &sha_tx,
                ids_tx: &ids_tx,
                failed: &failed,
            };
            let (mut st, t0, cpu0) = StageTime::start("read+cut");
            let read = match &mut input {
                Source::Reader(r) => self.read_stage(*r, name, &channels, &mut st),
                Source::Held(held) => self.map_stage(held, name, &channels, &mut st),
            };
            let read = (read, st.finish(t0, cpu0));
            drop((sha_tx, ids_tx, pool_tx));
            let sha256 = sha.join().expect("hash stage panicked");
            let blob_hash = ids.join().expect("id stage panicked");
            let written = write.join().expect("write stage panicked");
            (sha256, blob_hash, written, read)
        });
        let ((read, read_time), (sha256, sha_time), (blob_hash, ids_time), (written, write_time)) =
            (read, sha256, blob_hash, written);
        let stages = vec![read_time, sha_time, ids_time, write_time];
        let len = read?;
        let written = written?;
        // Every stage is done with the windows: if the lease still holds, nobody opened the
        // file for writing while they read it, so all of them saw the same bytes.
        if let Source::Held(held) = input
            && !held.intact()
        {
            return Err(changed_during_ingest(name));
        }

        let index = ChunkIndex { blob_len: len, chunks: written.chunks };
        let chunk_index = index.id();
        let record = BlobRecord { len, sha256, chunk_index, chunks: index.chunks };
        let mut batch = WriteBatch::default();
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        for (id, loc) in &written.new_locs {
            batch.put_cf(chunks_cf, id.as_bytes(), loc.encode());
        }
        batch.put_cf(self.db.require_cf(CF_BLOBS)?, blob_hash.as_bytes(), record.encode());
        let info = BlobInfo { blob: blob_hash, len, sha256, chunk_index, chunks: record.chunks.len() };
        let report = IngestReport { info, new_chunks: written.new_locs.len(), new_bytes: written.new_bytes };
        Ok((report, batch, stages))
    }

    /// Fills buffers from `input`, cuts them into chunks and sends them down the pipeline.
    /// Returns the number of bytes read.
    fn read_stage(&self, input: &mut dyn Read, name: &str, ch: &ReadChannels<'_>, st: &mut StageTime) -> Result<u64> {
        let ReadChannels { pool_rx, pool_tx, sha_tx, ids_tx, failed } = *ch;
        for _ in 0..POOL {
            pool_tx.send(vec![0u8; BUFFER]).expect("pool has room");
        }
        let max = self.chunker.max_size();
        let mut total = 0u64;
        let mut buf = pool_rx.recv().expect("pool is filled");
        let mut filled = 0usize;
        loop {
            if failed.load(Ordering::Relaxed) {
                return Ok(total);
            }
            let mut eof = false;
            let t = Instant::now();
            while filled < buf.len() {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(source) => return Err(Error::Input { name: name.to_owned(), source }),
                }
            }
            st.io += t.elapsed();
            let mut pos = 0usize;
            let mut lens = Vec::with_capacity(filled / (self.config.chunk_sizes.avg_size as usize) + 4);
            while pos < filled && (eof || filled - pos >= max) {
                let len = self.chunker.next_len(&buf[pos..filled]);
                lens.push(len as u32);
                pos += len;
            }
            total += pos as u64;
            // A later stage failed: stop reading; its error is the one reported.
            let Some(mut next) = recv_timed(pool_rx, &mut st.wait_in) else { return Ok(total) };
            next[..filled - pos].copy_from_slice(&buf[pos..filled]);
            let carried = filled - pos;
            if !lens.is_empty() {
                let batch = Arc::new(Batch { buf: Span::Pool(buf), covered: pos, lens });
                if !send_timed(sha_tx, batch.clone(), &mut st.wait_out) || !send_timed(ids_tx, batch, &mut st.wait_out)
                {
                    return Ok(total);
                }
            } else {
                let _ = pool_tx.send(buf);
            }
            buf = next;
            filled = carried;
            if eof {
                return Ok(total);
            }
        }
    }

    /// Maps `held` window by window, cuts the windows into chunks and sends them down the
    /// pipeline (a window starts where the last one's chunks ended, so nothing is carried
    /// over); stops with an error as soon as the lease is seen broken. Returns the number of
    /// bytes cut. The pool's (empty) buffers bound how many windows are in flight (`WINDOWS`).
    fn map_stage(&self, held: &HeldFile, name: &str, ch: &ReadChannels<'_>, st: &mut StageTime) -> Result<u64> {
        let ReadChannels { pool_rx, pool_tx, sha_tx, ids_tx, failed } = *ch;
        for _ in 0..WINDOWS {
            pool_tx.send(Vec::new()).expect("pool has room");
        }
        let max = self.chunker.max_size();
        let len = held.len();
        let mut total = 0u64;
        while total < len {
            // A later stage failed: stop; its error is the one reported.
            let Some(token) = recv_timed(pool_rx, &mut st.wait_in) else { return Ok(total) };
            if failed.load(Ordering::Relaxed) {
                return Ok(total);
            }
            if !held.intact() {
                return Err(changed_during_ingest(name));
            }
            let n = (len - total).min(BUFFER as u64) as usize;
            let eof = total + n as u64 == len;
            let t = Instant::now();
            let window = held.window(total, n).map_err(|source| Error::Input { name: name.to_owned(), source })?;
            st.io += t.elapsed();
            let mut pos = 0usize;
            let mut lens = Vec::with_capacity(n / (self.config.chunk_sizes.avg_size as usize) + 4);
            while pos < n && (eof || n - pos >= max) {
                let cut = self.chunker.next_len(&window[pos..]);
                lens.push(cut as u32);
                pos += cut;
            }
            total += pos as u64;
            drop(token);
            let batch = Arc::new(Batch { buf: Span::Mapped(window), covered: pos, lens });
            if !send_timed(sha_tx, batch.clone(), &mut st.wait_out) || !send_timed(ids_tx, batch, &mut st.wait_out) {
                return Ok(total);
            }
            #[cfg(test)]
            tests::after_window(held);
        }
        Ok(total)
    }

    /// Deduplication against the store, and appending new chunks to packs.
    fn write_stage(
        &self,
        w: &mut Writer,
        txn: &mut Txn,
        rx: &Receiver<(Arc<Batch>, Vec<Digest>)>,
        pool_tx: &Sender<Vec<u8>>,
        st: &mut StageTime,
    ) -> Result<Written> {
        let chunks_cf = self.db.require_cf(CF_CHUNKS)?;
        let max_pack = self.config.pack_max_size;
        let mut chunks = Vec::new();
        // Chunks stored by this ingest, not yet in the index.
        let mut pending: HashMap<Digest, ChunkLoc> = HashMap::new();
        let mut new_locs = Vec::new();
        let mut new_bytes = 0u64;
        while let Some((b, ids)) = recv_timed(rx, &mut st.wait_in) {
            let t = Instant::now();
            let mut pos = 0usize;
            for (id, &len) in ids.iter().zip(&b.lens) {
                let data = &b.buf[pos..pos + len as usize];
                pos += len as usize;
                chunks.push((*id, len));
                if pending.contains_key(id) || self.has_chunk(chunks_cf, id)? {
                    continue;
                }
                let pack = w.pack_for(&self.packs, max_pack, u64::from(len), txn)?;
                let offset = pack.append(data)?;
                let loc = ChunkLoc { pack: pack.id, offset, len };
                pending.insert(*id, loc);
                new_locs.push((*id, loc));
                new_bytes += u64::from(len);
            }
            st.io += t.elapsed();
            recycle(b, pool_tx);
        }
        Ok(Written { chunks, new_locs, new_bytes })
    }
}

impl Store {
    pub(crate) fn has_chunk(&self, cf: &fwrepo_db::ColumnFamily, id: &Digest) -> Result<bool> {
        let found = self.db.rocks().get_pinned_cf(cf, id.as_bytes()).map_err(|e| self.db.err(e))?;
        Ok(found.is_some())
    }
}

/// Returns a batch's buffer to the pool once the last stage holding it lets go (a window is
/// unmapped, and an empty buffer stands for it in the pool).
fn recycle(batch: Arc<Batch>, pool_tx: &Sender<Vec<u8>>) {
    if let Some(b) = Arc::into_inner(batch) {
        let buf = match b.buf {
            Span::Pool(v) => v,
            Span::Mapped(_) => Vec::new(),
        };
        let _ = pool_tx.send(buf);
    }
}

fn changed_during_ingest(name: &str) -> Error {
    Error::Input {
        name: name.to_owned(),
        source: std::io::Error::other(
            "the file was opened for writing or truncated while it was being ingested; nothing was stored \
             (ingest it again once it is complete)",
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::{ChunkerParams, InitOptions};

    type Hook = Box<dyn FnMut(&HeldFile)>;

    thread_local! {
        /// Run by the map stage after each window it sends, on the ingesting thread.
        static AFTER_WINDOW: RefCell<Option<Hook>> = RefCell::new(None);
    }

    pub(crate) fn after_window(held: &HeldFile) {
        AFTER_WINDOW.with(|h| {
            if let Some(hook) = h.borrow_mut().as_mut() {
                hook(held);
            }
        });
    }

    fn store(dir: &Path) -> Store {
        let data = dir.join("data");
        let params = ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
        Store::init(&data, &InitOptions { chunk_sizes: params, pack_max_size: 64 << 20 }).unwrap();
        Store::open(&data).unwrap()
    }

    fn input(dir: &Path, seed: u64, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes = fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(seed), len);
        let path = dir.join(format!("input-{seed}"));
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    /// Opens `path` for writing from another thread once the window numbered `after` (from 1)
    /// has gone out, and waits for the lease to be seen broken; the thread then writes `new`
    /// over the file's start (once the ingest lets go of the lease).
    fn write_during_ingest(path: &Path, after: usize, new: &'static [u8]) -> std::sync::mpsc::Receiver<()> {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let path = path.to_owned();
        let mut seen = 0;
        let mut done_tx = Some(done_tx);
        AFTER_WINDOW.with(|h| {
            *h.borrow_mut() = Some(Box::new(move |held: &HeldFile| {
                seen += 1;
                if seen != after {
                    return;
                }
                let path = path.clone();
                let done_tx = done_tx.take().expect("once");
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.write_all(new).unwrap();
                    let _ = done_tx.send(());
                });
                crate::held::tests::wait_broken(held);
            }));
        });
        done_rx
    }

    fn clear_hook() {
        AFTER_WINDOW.with(|h| *h.borrow_mut() = None);
    }

    #[test]
    fn a_held_file_is_read_through_windows_and_stored_as_read_would_store_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // Three windows, the last one short.
        let (path, bytes) = input(dir.path(), 1, 2 * BUFFER + 123_457);
        let (mapped, profile) = store.ingest_path_profiled(&path).unwrap();
        assert!(profile.mapped, "a file nobody writes is held and mapped");
        let other = tempfile::tempdir().unwrap();
        let read = self::store(other.path()).ingest_reader(&bytes[..], "same bytes").unwrap();
        assert_eq!(mapped.info, read.info, "the same blob, chunks and hashes either way");
        assert_eq!(store.read_all(&mapped.blob).unwrap().concat(), bytes);
        assert!(std::fs::OpenOptions::new().write(true).open(&path).is_ok(), "the lease is gone after ingest");
    }

    #[test]
    fn a_file_open_for_writing_is_read_with_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (path, bytes) = input(dir.path(), 2, BUFFER + 1000);
        let _writer = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let (report, profile) = store.ingest_path_profiled(&path).unwrap();
        assert!(!profile.mapped);
        assert_eq!(store.read_all(&report.blob).unwrap().concat(), bytes);
    }

    #[test]
    fn a_writer_during_ingest_fails_it_and_nothing_is_stored() {
        // Seen between windows (after the first of three), and by the final check (the only
        // window of a small file has already gone out when the writer comes).
        for (seed, len, after) in [(3, 2 * BUFFER + 5000, 1), (4, 300_000, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let store = store(dir.path());
            let (path, bytes) = input(dir.path(), seed, len);
            let wrote = write_during_ingest(&path, after, b"NEW BYTES");
            let err = store.ingest_path(&path).unwrap_err();
            clear_hook();
            assert!(err.to_string().contains("opened for writing or truncated while it was being ingested"), "{err}");
            wrote.recv_timeout(std::time::Duration::from_secs(10)).expect("the writer went on once ingest let go");
            assert!(!store.contains(&Digest::of(&bytes)).unwrap(), "the old bytes are not stored");
            assert!(store.list_blobs().unwrap().is_empty(), "nothing is stored");
            // Once the writer is done, the file ingests as it now is.
            let mut now = bytes.clone();
            now[..9].copy_from_slice(b"NEW BYTES");
            let again = store.ingest_path(&path).unwrap();
            assert_eq!(store.read_all(&again.blob).unwrap().concat(), now);
        }
    }
}
