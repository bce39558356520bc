//! Pack files: append-only files of chunk bytes, read through memory maps.
//!
//! File layout (format 2): an 8-byte header `FWPACK` `\0` `\x02`, then the bytes of each chunk,
//! back to back. A chunk's location in the index (pack, offset, length) is the only record of
//! where it is, so a blob's consecutive chunks, appended in order, are one run of the file: a
//! range of it goes to the kernel as one `sendfile` extent. The committed length of each pack
//! is kept in the index; bytes past it are a torn tail from an interrupted write and are cut off
//! when the writer opens the store.
//!
//! Format 1 (header `FWPACK` `\0` `\x01`) put a 36-byte head `{len u32 LE, id [32]}` in front
//! of each chunk, which nothing read back. Such packs stay readable as they are (a location
//! points at the bytes either way); the writer never appends to one, it starts a new pack, and
//! `gc` rewrites them into format 2 like any other pack it compacts.
//!
//! Invariant: bytes below a pack's committed length are never modified and the file is never
//! shortened below it; a pack leaves only by being unlinked whole (after garbage collection has
//! moved its live chunks). That is what makes handing out slices of the mappings sound.
//!
//! Pack ids are never reused (the index keeps a high-water mark), and a reader drops its maps of
//! packs the index no longer lists when it refreshes, so an unlinked pack stops holding disk
//! space once the slices handed out of it are dropped.
//!
//! [`PackWriter`] writes with `O_DIRECT` from aligned staging buffers where the file system
//! takes it, so appending does not pay for the page cache (on ext4 here the buffered path spent
//! 0.5–3.6 s of CPU per GiB in `pwrite`, depending on the machine's state, the direct one
//! 0.15 s); it writes through the page cache where it does not, or when
//! `FWREPO_PACK_IO=buffered` says so. Either way a committed byte is never written again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};

/// The header of the packs the writer creates (format 2: chunk bytes back to back).
pub const HEADER: &[u8; 8] = b"FWPACK\0\x02";
/// The header of format 1 packs, whose chunks each have a head in front.
pub const HEADER_V1: &[u8; 8] = b"FWPACK\0\x01";
/// Bytes in front of each chunk in a format 1 pack: its length and id.
pub const V1_RECORD_OVERHEAD: u64 = 4 + 32;
/// Start writeback of what has been appended every this many bytes, so the fsync at commit
/// finds little left to do.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// The layout of a pack file, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Each chunk behind a 36-byte head (read only).
    V1,
    /// Chunk bytes back to back (what the writer creates and appends to).
    V2,
}

impl Format {
    /// Bytes each chunk takes in the file besides its own.
    pub fn record_overhead(self) -> u64 {
        match self {
            Format::V1 => V1_RECORD_OVERHEAD,
            Format::V2 => 0,
        }
    }

    /// The format of the pack file at `path`; a header of neither format is an error.
    pub fn of(path: &Path) -> Result<Format> {
        let mut head = [0u8; 8];
        let file = File::open(path).at(path)?;
        let n = file.read_at(&mut head, 0).at(path)?;
        match &head[..n] {
            h if h == HEADER => Ok(Format::V2),
            h if h == HEADER_V1 => Ok(Format::V1),
            h => Err(Error::CorruptRecord {
                what: path.display().to_string(),
                reason: format!("not a pack header: {}", h.escape_ascii()),
            }),
        }
    }
}

pub fn pack_path(dir: &Path, pack: u32) -> PathBuf {
    dir.join(format!("{pack:08}.pack"))
}

/// The pack id of a file name such as `00000012.pack`.
pub fn parse_pack_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".pack")?;
    if stem.len() != 8 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A read-only memory map of a pack file.
struct PackMap(Mmap);

impl AsRef<[u8]> for PackMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PackMap {
    /// Maps the whole of `file` as it is now.
    ///
    /// # Safety
    /// The caller guarantees the pack invariant: the bytes it will read from the map (those below
    /// the pack's committed length) are never modified or truncated while any map of the file is
    /// alive. Only the store writes pack files, and it only appends and truncates uncommitted
    /// tails, so the invariant holds for every file under `packs/`.
    ///
    /// The map asks for huge pages (`MADV_HUGEPAGE`): a fault then reads the pack into the page
    /// cache in 2 MiB folios instead of 4 KiB pages, whatever order chunks are first read in.
    /// `sendfile` of those bytes later looks up one folio per 2 MiB instead of one per page
    /// (docs/BENCHMARKS.md). A kernel without transparent huge pages refuses the advice, which
    /// changes nothing but that.
    unsafe fn new(file: &File) -> std::io::Result<PackMap> {
        // SAFETY: see the contract above.
        let map = unsafe { Mmap::map(file) }?;
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(PackMap(map))
    }
}

/// Which file a map was made of: device and inode, so a refresh can tell a pack file that was
/// removed and recreated under the same name from the one it mapped.
pub(crate) type FileId = (u64, u64);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

struct Map {
    bytes: Bytes,
    file: FileId,
    /// The file the map was made of, open for `sendfile` of the same bytes.
    handle: Arc<File>,
}

/// The pack files of a store, each mapped once and remapped only when a read needs bytes
/// appended after the current map was made.
pub struct Packs {
    dir: PathBuf,
    maps: RwLock<HashMap<u32, Map>>,
}

impl Packs {
    pub fn new(dir: PathBuf) -> Packs {
        Packs { dir, maps: RwLock::new(HashMap::new()) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `len` bytes at `offset` of pack `pack`, as a slice of its map (no copy).
    pub fn slice(&self, pack: u32, offset: u64, len: u32) -> Result<Bytes> {
        self.slice_with_file(pack, offset, len).map(|(bytes, _)| bytes)
    }

    /// The same slice, and the pack file it was mapped from (the same bytes lie at `offset`
    /// in it, by the pack invariant), for callers that send them with `sendfile`.
    pub fn slice_with_file(&self, pack: u32, offset: u64, len: u32) -> Result<(Bytes, Arc<File>)> {
        let end = offset + u64::from(len);
        if let Some(map) = self.maps.read().unwrap().get(&pack)
            && map.bytes.len() as u64 >= end
        {
            return Ok((map.bytes.slice(offset as usize..end as usize), Arc::clone(&map.handle)));
        }
        let mut maps = self.maps.write().unwrap();
        if let Some(map) = maps.get(&pack)
            && map.bytes.len() as u64 >= end
        {
            return Ok((map.bytes.slice(offset as usize..end as usize), Arc::clone(&map.handle)));
        }
        let path = pack_path(&self.dir, pack);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(Error::MissingPack { pack }),
            Err(e) => return Err(e).at(&path),
        };
        let file_id = file_id(&file.metadata().at(&path)?);
        // SAFETY: files under packs/ follow the pack invariant (module docs).
        let map = unsafe { PackMap::new(&file) }.at(&path)?;
        let map = Bytes::from_owner(map);
        if (map.len() as u64) < end {
            return Err(Error::CorruptRecord {
                what: format!("pack {pack}"),
                reason: format!("{} bytes long, a chunk ends at {end}", map.len()),
            });
        }
        let out = map.slice(offset as usize..end as usize);
        let handle = Arc::new(file);
        maps.insert(pack, Map { bytes: map, file: file_id, handle: Arc::clone(&handle) });
        Ok((out, handle))
    }

    /// Drops the map of a pack that has been removed; slices already handed out stay valid.
    pub fn forget(&self, pack: u32) {
        self.maps.write().unwrap().remove(&pack);
    }

    /// Drops the maps of packs not in `listed` (the packs the index knows), and of packs whose
    /// file is no longer the one mapped. Dropping a map is always safe: slices handed out keep
    /// it alive, and the next read of a listed pack maps it again.
    pub fn retain(&self, listed: &HashSet<u32>) {
        self.drop_maps(self.stale(listed));
    }

    /// The mapped packs [`Packs::retain`] would drop: not in `listed`, or whose file is no
    /// longer the one mapped (with the file that was mapped).
    pub(crate) fn stale(&self, listed: &HashSet<u32>) -> Vec<(u32, FileId)> {
        let mapped: Vec<(u32, FileId)> = self.maps.read().unwrap().iter().map(|(&p, m)| (p, m.file)).collect();
        // Look at the files without holding the lock, so reads go on meanwhile.
        mapped
            .into_iter()
            .filter(|&(pack, file)| {
                !listed.contains(&pack)
                    || std::fs::metadata(pack_path(&self.dir, pack)).map(|m| file_id(&m)).ok() != Some(file)
            })
            .collect()
    }

    /// Drops the maps [`Packs::stale`] found, unless a read has mapped the pack again since.
    pub(crate) fn drop_maps(&self, stale: Vec<(u32, FileId)>) {
        if stale.is_empty() {
            return;
        }
        let mut maps = self.maps.write().unwrap();
        for (pack, file) in stale {
            // A read may have mapped the pack again since; that map is current.
            if maps.get(&pack).is_some_and(|m| m.file == file) {
                tracing::debug!(pack, "dropping map of a pack the index no longer lists");
                maps.remove(&pack);
            }
        }
    }

    /// The ids of the packs mapped now.
    #[cfg(test)]
    fn mapped(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.maps.read().unwrap().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The ids of the pack files present on disk.
    pub fn list(&self) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_pack_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }
}

/// How a pack writer gets its bytes into the file (`FWREPO_PACK_IO`, read when the writer opens
/// the store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackIo {
    /// `O_DIRECT` from aligned staging buffers where the file system takes it (the default,
    /// `FWREPO_PACK_IO=direct`), else buffered.
    #[default]
    Direct,
    /// Every record through the page cache, writeback started from a thread
    /// (`FWREPO_PACK_IO=buffered`).
    Buffered,
}

/// The environment variable that chooses [`PackIo`]: `direct` (or unset) or `buffered`.
pub const PACK_IO_ENV: &str = "FWREPO_PACK_IO";

impl PackIo {
    /// The mode `FWREPO_PACK_IO` asks for; an unknown value is an error, not a guess.
    pub fn from_env() -> std::result::Result<PackIo, String> {
        PackIo::parse(std::env::var_os(PACK_IO_ENV).as_deref())
    }

    fn parse(value: Option<&std::ffi::OsStr>) -> std::result::Result<PackIo, String> {
        match value.map(|v| v.to_str()) {
            None => Ok(PackIo::Direct),
            Some(Some("" | "direct")) => Ok(PackIo::Direct),
            Some(Some("buffered")) => Ok(PackIo::Buffered),
            Some(v) => Err(format!("{PACK_IO_ENV}={v:?}: expected `direct` or `buffered`", v = v.unwrap_or("?"))),
        }
    }
}

/// Size of one staging buffer of the direct path: one `pwrite` each time it fills.
const STAGE: usize = 16 << 20;
/// Staging buffers per writer: one filling while the other is written by the flush thread, so
/// the appender waits on the device only when the disk is slower than it (1 would write each
/// full buffer from the appender's own thread). Measured on ext4 here (docs/BENCHMARKS.md):
/// two of 16 MiB were as fast as the best single buffer (8 MiB) and 5 % faster than one of 4;
/// two of 4 MiB were 11 % slower than one, so the buffers are large.
const STAGES: usize = 2;
/// Largest alignment a file system may ask for that the direct path accepts.
const MAX_ALIGN: u64 = 1 << 20;

/// The pack being appended to.
///
/// Records are written either straight into the page cache (`pwrite` per record, writeback
/// started every 16 MiB from a thread) or, where the file system takes `O_DIRECT`, copied into
/// an aligned staging buffer that goes to the disk in one direct `pwrite` when full. On the
/// direct path:
///
/// - only whole aligned blocks past everything already in the file are written directly; the
///   bytes from the file's end to the next alignment boundary (after [`PackWriter::open`] at an
///   unaligned committed length, and after every [`PackWriter::sync`]) and the partial block at
///   sync time go through the page cache. A direct write drops and writes back the cached
///   pages of its own range only (`kiocb_invalidate_pages`), and the alignment is at least the
///   page size, so a page holding committed bytes, which readers may have mapped, is never
///   touched by one, and no byte is written twice;
/// - appended bytes reach the file only as buffers fill or at [`PackWriter::sync`]: nothing may
///   read a location `append` returned before `sync` (the store reads only committed chunks,
///   and commits sync first);
/// - a direct write refused with `EINVAL` is redone buffered and the writer goes on as a
///   buffered one; so does a writer whose `O_DIRECT` open fails.
pub struct PackWriter {
    pub id: u32,
    files: Arc<Files>,
    /// Bytes in the pack, committed or not (on the direct path, some may still be staged).
    pub len: u64,
    out: Out,
}

/// A pack's descriptors: the ordinary one (header, unaligned pieces, the buffered path,
/// fdatasync, truncation) and, on the direct path, one opened with `O_DIRECT`.
struct Files {
    path: PathBuf,
    buffered: File,
    direct: Option<File>,
}

enum Out {
    Buffered(Writeback),
    Direct(Box<Direct>),
}

/// The buffered path's writeback state.
struct Writeback {
    /// Where the last writeback request ended.
    from: u64,
    /// Requests to the writeback thread, started with the first request.
    tx: Option<Sender<(u64, u64)>>,
}

/// The direct path's staging state. Stage byte `i` is file byte `base + i`; the file holds
/// (or the flush thread is writing) every byte below `flushed`, and the stage holds
/// `flushed..len`.
struct Direct {
    align: u64,
    /// A multiple of `align`.
    base: u64,
    flushed: u64,
    /// The buffer being filled; allocated at the first append.
    stage: Option<Stage>,
    /// Buffers back from the flush thread.
    spare: Vec<Stage>,
    flusher: Option<Flusher>,
    /// A buffer is with the flush thread.
    in_flight: bool,
    /// A direct write was refused: redo as a buffered writer at the next append or sync.
    fell_back: bool,
    /// A write failed; everything but `truncate` fails until one cuts the pack back.
    failed: bool,
}

/// A staging buffer of `STAGE` bytes starting at an address aligned for direct I/O.
///
/// The buffer is its own anonymous mapping, aligned to 2 MiB and advised to use transparent
/// huge pages (where the kernel's setting is `madvise`, as here, memory gets them only when
/// asked): copying chunks in and pinning the pages for each direct write then take one
/// translation per 2 MiB instead of one per 4 KiB page. Ingesting 1 GiB on ext4 here took about
/// 0.06 s less CPU with it and ran 9% faster (docs/BENCHMARKS.md, 2026-12-08). A kernel without
/// them refuses the advice, which changes nothing but that.
struct Stage {
    mem: memmap2::MmapMut,
    start: usize,
}

/// The alignment a stage starts at, so its huge pages can back all of it.
const STAGE_ALIGN: usize = 2 << 20;

impl Stage {
    /// A zeroed stage starting at a multiple of `align` (a power of two up to `MAX_ALIGN`).
    fn new(align: usize) -> std::io::Result<Stage> {
        let align = align.max(STAGE_ALIGN);
        let mem = memmap2::MmapMut::map_anon(STAGE + align)?;
        let start = (align - mem.as_ptr() as usize % align) % align;
        let _ = mem.advise_range(memmap2::Advice::HugePage, start, STAGE);
        Ok(Stage { mem, start })
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..self.start + STAGE]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + STAGE]
    }
}

/// A full buffer for the flush thread: write `stage[from - base..end - base]` at `from`.
struct Job {
    stage: Stage,
    /// Write the aligned blocks with `O_DIRECT` (false once a direct write was refused).
    direct: bool,
    base: u64,
    from: u64,
    end: u64,
}

/// The buffer back from the flush thread, and whether the write fell back to buffered.
struct Done {
    stage: Stage,
    result: std::io::Result<bool>,
}

/// The thread that writes full staging buffers; ends when the writer is dropped.
struct Flusher {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Wait for a write still running, so nothing writes to the pack once its writer is gone
        // (the store may cut or remove it next).
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_flusher(files: &Arc<Files>, align: u64) -> Option<Flusher> {
    let files = Arc::clone(files);
    let (jobs, jobs_rx) = bounded::<Job>(1);
    let (done_tx, done) = bounded::<Done>(STAGES);
    let thread = std::thread::Builder::new()
        .name("pack-flush".into())
        .spawn(move || {
            for job in jobs_rx {
                let result = write_out(&files, job.direct, align, job.stage.bytes(), job.base, job.from, job.end);
                if done_tx.send(Done { stage: job.stage, result }).is_err() {
                    break;
                }
            }
        })
        .ok()?;
    Some(Flusher { jobs: Some(jobs), done, thread: Some(thread) })
}

fn round_down(n: u64, align: u64) -> u64 {
    n - n % align
}

/// Writes `stage[from - base..end - base]` at file offset `from` (`base` aligned): the bytes up
/// to the first alignment boundary through the page cache, then (with `direct`) the whole
/// aligned blocks with `O_DIRECT`, then whatever is left (a partial block at the end, or
/// everything once a direct write is refused or comes back short) through the page cache.
/// Returns whether a direct write was refused with `EINVAL`.
fn write_out(
    files: &Files,
    direct: bool,
    align: u64,
    stage: &[u8],
    base: u64,
    from: u64,
    end: u64,
) -> std::io::Result<bool> {
    let piece = |a: u64, b: u64| &stage[(a - base) as usize..(b - base) as usize];
    let body_from = from.next_multiple_of(align).min(end);
    let body_end = round_down(end, align).max(body_from);
    if body_from > from {
        files.buffered.write_all_at(piece(from, body_from), from)?;
    }
    let mut refused = false;
    let mut at = body_from;
    while direct && at < body_end && at.is_multiple_of(align) {
        match direct_write(files, piece(at, body_end), at) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => at += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                log_fallback(&files.path, &e);
                refused = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if end > at {
        files.buffered.write_all_at(piece(at, end), at)?;
    }
    Ok(refused)
}

/// One `pwrite` on the `O_DIRECT` descriptor.
fn direct_write(files: &Files, buf: &[u8], at: u64) -> std::io::Result<usize> {
    #[cfg(test)]
    if let Some(e) = tests::before_direct_write(&files.path, at, buf.len()) {
        return Err(e);
    }
    files.direct.as_ref().ok_or_else(|| std::io::Error::from(ErrorKind::Unsupported))?.write_at(buf, at)
}

/// Logs, once per process, that pack writes go through the page cache after all.
fn log_fallback(path: &Path, why: &dyn std::fmt::Display) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::debug!(path = %path.display(), %why, "O_DIRECT refused; writing packs through the page cache");
    }
}

/// The alignment direct writes to `file` need: the file system's (statx `STATX_DIOALIGN`, where
/// the kernel reports it), its block size and the page size, whichever is largest, so a direct
/// write never covers part of a page (4096 where nothing is reported). `None` when that is
/// more than the direct path handles.
fn dio_align(file: &File) -> Option<u64> {
    // SAFETY: sysconf with a constant name has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    };
    let mut align = page.max(4096);
    // SAFETY: an all-zero statx is a valid value for the kernel to overwrite.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, an empty NUL-terminated path with AT_EMPTY_PATH (the
    // descriptor itself), and a writable statx.
    let rc =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stx) };
    if rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        align = align.max(u64::from(stx.stx_dio_offset_align)).max(u64::from(stx.stx_dio_mem_align));
    }
    if let Ok(meta) = file.metadata()
        && meta.blksize() <= 64 << 10
    {
        align = align.max(meta.blksize());
    }
    (align.is_power_of_two() && align <= MAX_ALIGN).then_some(align)
}

/// Starts writeback of `n` bytes at `from` without waiting for it to finish.
fn sync_file_range(file: &File, from: u64, n: u64) {
    // SAFETY: plain syscall on an fd we own; it only schedules I/O. Failure is harmless:
    // durability comes from the fdatasync at commit.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), from as libc::off64_t, n as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// A thread that starts writeback for one pack, so the appender never waits on it: on ext4,
/// `sync_file_range` allocates blocks and queues the I/O in the caller's thread and blocks
/// while the device queue is full, which stalled the whole ingest pipeline behind the disk.
/// It ends when its `Sender` is dropped with the `PackWriter`.
fn spawn_writeback(files: &Arc<Files>) -> Option<Sender<(u64, u64)>> {
    let files = Arc::clone(files);
    let (tx, rx) = bounded::<(u64, u64)>(1);
    std::thread::Builder::new()
        .name("pack-writeback".into())
        .spawn(move || {
            for (from, n) in rx {
                sync_file_range(&files.buffered, from, n);
            }
        })
        .ok()?;
    Some(tx)
}

/// Cuts pack `pack` (of either format) back to `len` bytes, dropping a torn tail, and makes that
/// durable.
pub fn cut_tail(dir: &Path, pack: u32, len: u64) -> Result<()> {
    let path = pack_path(dir, pack);
    let file = std::fs::OpenOptions::new().write(true).open(&path).at(&path)?;
    cut_durably(&file, &path, len)
}

/// Shortens `file` (at `path`) to `len` bytes and makes the new length durable.
fn cut_durably(file: &File, path: &Path, len: u64) -> Result<()> {
    file.set_len(len).at(path)?;
    file.sync_all().at(path)
}

impl PackWriter {
    /// Creates a new, empty pack file with its header (not yet durable).
    pub fn create(dir: &Path, id: u32, io: PackIo) -> Result<PackWriter> {
        let path = pack_path(dir, id);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).at(&path)?;
        file.write_all_at(HEADER, 0).at(&path)?;
        Ok(PackWriter::with_file(id, path, file, HEADER.len() as u64, io))
    }

    /// Opens an existing format 2 pack to append after its committed length `len` (the caller
    /// has cut any tail already). A format 1 pack is refused: chunks appended to it would lack
    /// the heads its format promises.
    pub fn open(dir: &Path, id: u32, len: u64, io: PackIo) -> Result<PackWriter> {
        let path = pack_path(dir, id);
        if Format::of(&path)? != Format::V2 {
            return Err(Error::CorruptRecord {
                what: path.display().to_string(),
                reason: "a format 1 pack is never appended to".into(),
            });
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
        Ok(PackWriter::with_file(id, path, file, len, io))
    }

    fn with_file(id: u32, path: PathBuf, buffered: File, len: u64, io: PackIo) -> PackWriter {
        let direct = match io {
            PackIo::Buffered => None,
            PackIo::Direct => match dio_align(&buffered) {
                None => {
                    log_fallback(&path, &"unsupported direct I/O alignment");
                    None
                }
                Some(align) => match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path) {
                    Ok(f) => Some((f, align)),
                    Err(e) => {
                        log_fallback(&path, &e);
                        None
                    }
                },
            },
        };
        let (direct, out) = match direct {
            None => (None, Out::Buffered(Writeback { from: len, tx: None })),
            Some((f, align)) => (
                Some(f),
                Out::Direct(Box::new(Direct {
                    align,
                    base: round_down(len, align),
                    flushed: len,
                    stage: None,
                    spare: Vec::new(),
                    flusher: None,
                    in_flight: false,
                    fell_back: false,
                    failed: false,
                })),
            ),
        };
        PackWriter { id, files: Arc::new(Files { path, buffered, direct }), len, out }
    }

    /// Whether appends go through `O_DIRECT` (for tests and benchmarks).
    pub fn is_direct(&self) -> bool {
        matches!(&self.out, Out::Direct(d) if !d.fell_back)
    }

    /// Appends one chunk's bytes right after the last and returns their offset. On the direct
    /// path the bytes may stay staged until [`PackWriter::sync`].
    pub fn append(&mut self, data: &[u8]) -> Result<u64> {
        self.settle_fallback()?;
        let offset = self.len;
        let end = offset + data.len() as u64;
        match &mut self.out {
            Out::Buffered(_) => {
                self.files.buffered.write_all_at(data, offset).at(&self.files.path)?;
                self.len = end;
                self.maybe_start_writeback();
            }
            Out::Direct(d) => {
                if let Err(e) = d.put(&self.files, offset, data) {
                    d.failed = true;
                    return Err(e).at(&self.files.path);
                }
                self.len = end;
            }
        }
        Ok(offset)
    }

    /// Turns a writer whose direct write was refused into a buffered one, once what it staged
    /// is in the file.
    fn settle_fallback(&mut self) -> Result<()> {
        let Out::Direct(d) = &mut self.out else { return Ok(()) };
        d.check().at(&self.files.path)?;
        if !d.fell_back {
            return Ok(());
        }
        d.flush(&self.files, self.len).at(&self.files.path)?;
        self.out = Out::Buffered(Writeback { from: self.len, tx: None });
        Ok(())
    }

    /// On the buffered path, asks the kernel to start writing what was appended, without
    /// waiting for it, every `WRITEBACK_EVERY` bytes. While the writeback thread is still busy
    /// with the last request, this one waits and the next one covers both.
    fn maybe_start_writeback(&mut self) {
        let Out::Buffered(wb) = &mut self.out else { return };
        if self.len - wb.from < WRITEBACK_EVERY {
            return;
        }
        let (from, n) = (wb.from, self.len - wb.from);
        if wb.tx.is_none() {
            wb.tx = spawn_writeback(&self.files);
        }
        match &wb.tx {
            Some(tx) => match tx.try_send((from, n)) {
                Ok(()) => wb.from = self.len,
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    wb.tx = None;
                    sync_file_range(&self.files.buffered, from, n);
                    wb.from = self.len;
                }
            },
            None => {
                sync_file_range(&self.files.buffered, from, n);
                wb.from = self.len;
            }
        }
    }

    /// Makes everything appended so far durable: staged bytes are written out first.
    pub fn sync(&mut self) -> Result<()> {
        self.settle_fallback()?;
        if let Out::Direct(d) = &mut self.out {
            d.flush(&self.files, self.len).at(&self.files.path)?;
        }
        self.files.buffered.sync_data().at(&self.files.path)
    }

    /// Cuts the file back to `len` bytes (dropping an uncommitted tail, staged or written) and
    /// makes that durable.
    pub fn truncate(&mut self, len: u64) -> Result<()> {
        match &mut self.out {
            Out::Buffered(wb) => wb.from = len,
            Out::Direct(d) => {
                // A write still running must not land after the cut.
                let _ = d.wait();
                d.base = round_down(len, d.align);
                d.flushed = len;
                d.failed = false;
            }
        }
        cut_durably(&self.files.buffered, &self.files.path, len)?;
        self.len = len;
        Ok(())
    }
}

impl Direct {
    /// The error for every call after a failed write, until `truncate`.
    fn check(&self) -> std::io::Result<()> {
        if self.failed {
            return Err(std::io::Error::other("an earlier write to this pack failed; it must be cut back first"));
        }
        Ok(())
    }

    /// Copies `bytes`, which go at file offset `at` (the end of what is staged), into the
    /// staging buffers, handing each one off as it fills.
    fn put(&mut self, files: &Arc<Files>, mut at: u64, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let align = self.align as usize;
            let stage = match &mut self.stage {
                Some(s) => s,
                none => none.insert(match self.spare.pop() {
                    Some(s) => s,
                    None => Stage::new(align)?,
                }),
            };
            let pos = (at - self.base) as usize;
            let n = (STAGE - pos).min(bytes.len());
            stage.bytes_mut()[pos..pos + n].copy_from_slice(&bytes[..n]);
            at += n as u64;
            bytes = &bytes[n..];
            if pos + n == STAGE {
                self.hand_off(files)?;
            }
        }
        Ok(())
    }

    /// Writes a full staging buffer: to the flush thread (after the one it has, so at most one
    /// write runs), or in this thread when there is no flush thread.
    fn hand_off(&mut self, files: &Arc<Files>) -> std::io::Result<()> {
        let stage = self.stage.take().expect("a full stage");
        let (base, from, end) = (self.base, self.flushed, self.base + STAGE as u64);
        self.base = end;
        self.flushed = end;
        if STAGES > 1 && self.flusher.is_none() {
            self.flusher = spawn_flusher(files, self.align);
        }
        match self.flusher.as_ref().and_then(|f| f.jobs.clone()) {
            Some(jobs) => {
                self.wait()?;
                let direct = !self.fell_back;
                if jobs.send(Job { stage, direct, base, from, end }).is_err() {
                    return Err(std::io::Error::other("the pack flush thread is gone"));
                }
                self.in_flight = true;
            }
            None => {
                let result = write_out(files, !self.fell_back, self.align, stage.bytes(), base, from, end);
                self.spare.push(stage);
                self.fell_back |= result?;
            }
        }
        Ok(())
    }

    /// Waits for the buffer with the flush thread, if any, and takes it back.
    fn wait(&mut self) -> std::io::Result<()> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        let done = self.flusher.as_ref().and_then(|f| f.done.recv().ok());
        let Some(Done { stage, result }) = done else {
            self.failed = true;
            return Err(std::io::Error::other("the pack flush thread is gone"));
        };
        self.spare.push(stage);
        match result {
            Ok(fell_back) => {
                self.fell_back |= fell_back;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Writes out everything staged, up to `len`, from this thread (after the flush thread's
    /// write): the partial block at the end goes through the page cache, and the next bytes
    /// appended start a new block after it.
    fn flush(&mut self, files: &Files, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.wait()?;
        if self.flushed < len {
            let stage = self.stage.as_ref().expect("staged bytes have a buffer");
            match write_out(files, !self.fell_back, self.align, stage.bytes(), self.base, self.flushed, len) {
                Ok(refused) => self.fell_back |= refused,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        self.flushed = len;
        self.base = round_down(len, self.align);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::Digest;

    /// Direct writes seen per pack path (offset, length), and a fault to inject into them.
    #[derive(Default)]
    struct Probe {
        writes: Vec<(u64, usize)>,
        /// After this many more direct writes succeed, each fails with this errno.
        fault: Option<(usize, i32)>,
    }

    static PROBES: Mutex<Vec<(PathBuf, Probe)>> = Mutex::new(Vec::new());

    fn with_probe<T>(path: &Path, f: impl FnOnce(&mut Probe) -> T) -> T {
        let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
        let i = match probes.iter().position(|(p, _)| p == path) {
            Some(i) => i,
            None => {
                probes.push((path.to_owned(), Probe::default()));
                probes.len() - 1
            }
        };
        f(&mut probes[i].1)
    }

    /// Called by `direct_write` before each direct `pwrite`.
    pub(super) fn before_direct_write(path: &Path, at: u64, len: usize) -> Option<std::io::Error> {
        with_probe(path, |p| match &mut p.fault {
            Some((0, errno)) => Some(std::io::Error::from_raw_os_error(*errno)),
            Some((n, _)) => {
                *n -= 1;
                p.writes.push((at, len));
                None
            }
            None => {
                p.writes.push((at, len));
                None
            }
        })
    }

    fn direct_writes(path: &Path) -> Vec<(u64, usize)> {
        with_probe(path, |p| p.writes.clone())
    }

    fn inject(path: &Path, after: usize, errno: i32) {
        with_probe(path, |p| p.fault = Some((after, errno)));
    }

    /// Whether the file system under `dir` takes `O_DIRECT` at all: where it does, the writer
    /// must use it.
    fn fs_takes_direct(dir: &Path) -> bool {
        let probe = dir.join("probe");
        let ok = std::fs::OpenOptions::new().write(true).create(true).custom_flags(libc::O_DIRECT).open(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }

    /// Deterministic bytes for record `i` of `len` bytes.
    fn data(i: u64, len: usize) -> Vec<u8> {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_stage_is_zeroed_and_aligned_for_direct_writes_and_huge_pages() {
        for align in [512usize, 4096, 1 << 20] {
            let mut stage = Stage::new(align).unwrap();
            assert_eq!(stage.bytes().as_ptr() as usize % STAGE_ALIGN, 0, "align {align}");
            assert_eq!(stage.bytes().len(), STAGE);
            assert!(stage.bytes().iter().all(|&b| b == 0));
            stage.bytes_mut()[STAGE - 1] = 7;
            assert_eq!(stage.bytes()[STAGE - 1], 7);
        }
    }

    #[test]
    fn pack_names_are_strict() {
        assert_eq!(parse_pack_name("00000012.pack"), Some(12));
        for bad in ["12.pack", "0000001x.pack", "00000012.pak", "00000012.pack.tmp"] {
            assert_eq!(parse_pack_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_are_told_by_header_and_a_format_1_pack_is_never_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(dir.path(), 1, PackIo::Buffered).unwrap();
        w.append(b"abc").unwrap();
        w.sync().unwrap();
        assert_eq!(Format::of(&pack_path(dir.path(), 1)).unwrap(), Format::V2);
        let mut v1 = HEADER_V1.to_vec();
        v1.extend_from_slice(&3u32.to_le_bytes());
        v1.extend_from_slice(Digest::of(b"abc").as_bytes());
        v1.extend_from_slice(b"abc");
        std::fs::write(pack_path(dir.path(), 2), &v1).unwrap();
        assert_eq!(Format::of(&pack_path(dir.path(), 2)).unwrap(), Format::V1);
        assert_eq!(Format::V1.record_overhead(), 36);
        let e = PackWriter::open(dir.path(), 2, v1.len() as u64, PackIo::Buffered).err().unwrap();
        assert!(e.to_string().contains("format 1"), "{e}");
        assert_eq!(std::fs::read(pack_path(dir.path(), 2)).unwrap(), v1);
        // Bytes of format 1 chunks are read where their location points.
        assert_eq!(&Packs::new(dir.path().to_owned()).slice(2, 44, 3).unwrap()[..], b"abc");
        for junk in [&b"FWPACK\0\x03"[..], b"FWPA", b"", b"ELF\x7f\0\0\0\0"] {
            std::fs::write(pack_path(dir.path(), 3), junk).unwrap();
            let e = Format::of(&pack_path(dir.path(), 3)).unwrap_err();
            assert!(matches!(e, Error::CorruptRecord { .. }) && e.to_string().contains("not a pack header"), "{e}");
            assert!(PackWriter::open(dir.path(), 3, junk.len() as u64, PackIo::Buffered).is_err());
        }
        // Cutting a torn tail works on either format.
        std::fs::write(pack_path(dir.path(), 2), [&v1[..], b"torn"].concat()).unwrap();
        cut_tail(dir.path(), 2, v1.len() as u64).unwrap();
        assert_eq!(std::fs::read(pack_path(dir.path(), 2)).unwrap(), v1);
    }

    #[test]
    fn pack_io_comes_from_the_environment_and_refuses_unknown_values() {
        use std::ffi::OsStr;
        assert_eq!(PackIo::parse(None), Ok(PackIo::Direct));
        assert_eq!(PackIo::parse(Some(OsStr::new(""))), Ok(PackIo::Direct));
        assert_eq!(PackIo::parse(Some(OsStr::new("direct"))), Ok(PackIo::Direct));
        assert_eq!(PackIo::parse(Some(OsStr::new("buffered"))), Ok(PackIo::Buffered));
        for bad in ["Buffered", "odirect", "buffered "] {
            let e = PackIo::parse(Some(OsStr::new(bad))).unwrap_err();
            assert!(e.contains(PACK_IO_ENV) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn appended_chunks_are_readable_through_remapped_slices() {
        for io in [PackIo::Direct, PackIo::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let mut w = PackWriter::create(dir.path(), 1, io).unwrap();
            let packs = Packs::new(dir.path().to_owned());
            let a = w.append(b"first").unwrap();
            assert_eq!(a, HEADER.len() as u64);
            w.sync().unwrap();
            assert_eq!(&packs.slice(1, a, 5).unwrap()[..], b"first");
            // Written after the first map was made: the read must remap, and the old slice
            // survives.
            let old = packs.slice(1, a, 5).unwrap();
            let b = w.append(b"second").unwrap();
            assert_eq!(b, a + 5, "chunk bytes lie back to back");
            w.sync().unwrap();
            assert_eq!(&packs.slice(1, b, 6).unwrap()[..], b"second");
            assert_eq!(&old[..], b"first");
            assert_eq!(std::fs::read(pack_path(dir.path(), 1)).unwrap(), b"FWPACK\0\x02firstsecond");
            assert!(matches!(packs.slice(2, 8, 1), Err(Error::MissingPack { pack: 2 })));
        }
    }

    /// Appends chunks of `lens` (syncing after the indexes in `syncs`), then checks the file
    /// holds exactly them, back to back after what it held, on disk and through the mapping.
    fn round_trip(w: &mut PackWriter, dir: &Path, first: u64, lens: &[usize], syncs: &[usize]) -> Vec<(u64, Vec<u8>)> {
        let mut written = Vec::new();
        let start = w.len;
        for (i, &len) in lens.iter().enumerate() {
            let bytes = data(first + i as u64, len);
            let at = w.append(&bytes).unwrap();
            assert_eq!(at, written.last().map_or(start, |(a, b): &(u64, Vec<u8>)| a + b.len() as u64));
            written.push((at, bytes));
            if syncs.contains(&i) {
                w.sync().unwrap();
                assert_eq!(std::fs::metadata(pack_path(dir, w.id)).unwrap().len(), w.len);
            }
        }
        w.sync().unwrap();
        let path = pack_path(dir, w.id);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), w.len);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(&file[..HEADER.len()], HEADER);
        assert!(file[start as usize..] == written.iter().flat_map(|(_, b)| b.iter().copied()).collect::<Vec<u8>>()[..]);
        let packs = Packs::new(dir.to_owned());
        for (at, want) in &written {
            assert!(packs.slice(w.id, *at, want.len() as u32).unwrap() == want[..], "mapped record at {at} differs");
        }
        written
    }

    #[test]
    fn direct_records_straddle_buffers_and_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(dir.path(), 1, PackIo::Direct).unwrap();
        assert_eq!(w.is_direct(), fs_takes_direct(dir.path()));
        let lens = [
            // Ends exactly at the end of the first staging buffer.
            STAGE - HEADER.len(),
            1,
            // Larger than a whole staging buffer.
            STAGE + 5000,
            // A chunk ending one byte short of a block, then one ending on one.
            4096 - 5000 % 4096 - 1 - 1,
            1,
            0,
            65_537,
            200_000,
            3,
            STAGE - 4096,
            100_000,
        ];
        // Syncs in the middle leave unaligned tails that the next appends start from.
        round_trip(&mut w, dir.path(), 0, &lens, &[1, 4, 6, 8]);
        let path = pack_path(dir.path(), 1);
        let writes = direct_writes(&path);
        if w.is_direct() {
            assert!(!writes.is_empty());
            let align = dio_align(&File::open(&path).unwrap()).unwrap();
            for &(at, len) in &writes {
                assert!(
                    at.is_multiple_of(align) && (len as u64).is_multiple_of(align),
                    "unaligned direct write {len} at {at}"
                );
            }
            // Most bytes went direct: all but a block at each sync and the end.
            let direct: usize = writes.iter().map(|&(_, n)| n).sum();
            assert!(direct as u64 >= w.len - 6 * align, "{direct} of {} bytes direct", w.len);
        }
    }

    #[test]
    fn reopening_at_an_unaligned_length_never_changes_committed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = pack_path(dir.path(), 1);
        let mut w = PackWriter::create(dir.path(), 1, PackIo::Direct).unwrap();
        round_trip(&mut w, dir.path(), 0, &[1000, 70_001, 3], &[]);
        let committed = w.len;
        assert!(!committed.is_multiple_of(4096));
        drop(w);
        with_probe(&path, |p| p.writes.clear());
        let before = std::fs::read(&path).unwrap();
        // A reader maps the committed bytes, as the server does, for the whole append.
        let packs = Packs::new(dir.path().to_owned());
        let mapped = packs.slice(1, 0, committed as u32).unwrap();
        assert!(mapped == before[..]);

        let mut w = PackWriter::open(dir.path(), 1, committed, PackIo::Direct).unwrap();
        assert_eq!(w.is_direct(), fs_takes_direct(dir.path()));
        let lens: Vec<usize> = (0..40).map(|i| 1 + (i * 37_171) % 400_000).collect();
        round_trip(&mut w, dir.path(), 100, &lens, &[5, 17, 30]);
        let after = std::fs::read(&path).unwrap();
        assert!(after[..committed as usize] == before[..], "committed bytes changed on disk");
        assert!(mapped == before[..], "committed bytes changed in a live mapping");
        let fresh = Packs::new(dir.path().to_owned());
        assert!(fresh.slice(1, 0, committed as u32).unwrap() == before[..]);
        if w.is_direct() {
            // No direct write touched the block the committed length ends in.
            let first_direct = committed.next_multiple_of(dio_align(&File::open(&path).unwrap()).unwrap());
            let writes = direct_writes(&path);
            assert!(!writes.is_empty());
            assert!(writes.iter().all(|&(at, _)| at >= first_direct), "{writes:?} below {first_direct}");
        }
    }

    #[test]
    fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        if !fs_takes_direct(dir.path()) {
            return;
        }
        let path = pack_path(dir.path(), 1);
        // The second direct write is refused as a file system without O_DIRECT would.
        inject(&path, 1, libc::EINVAL);
        let mut w = PackWriter::create(dir.path(), 1, PackIo::Direct).unwrap();
        assert!(w.is_direct());
        let lens: Vec<usize> = (0..50).map(|i| 50_000 + i * 20_011).collect();
        round_trip(&mut w, dir.path(), 0, &lens, &[10, 20]);
        assert!(!w.is_direct(), "still direct after EINVAL");
        assert!(matches!(w.out, Out::Buffered(_)));
        assert_eq!(direct_writes(&path).len(), 1);
        // And on, buffered.
        round_trip(&mut w, dir.path(), 100, &[1, 300_000], &[]);

        // Asked for buffered, it never writes directly.
        let mut b = PackWriter::create(dir.path(), 2, PackIo::Buffered).unwrap();
        round_trip(&mut b, dir.path(), 200, &lens, &[3]);
        assert!(!b.is_direct());
        assert!(direct_writes(&pack_path(dir.path(), 2)).is_empty());
    }

    #[test]
    fn a_failed_write_fails_every_call_until_the_pack_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        if !fs_takes_direct(dir.path()) {
            return;
        }
        let path = pack_path(dir.path(), 1);
        let mut w = PackWriter::create(dir.path(), 1, PackIo::Direct).unwrap();
        round_trip(&mut w, dir.path(), 0, &[5000, 123], &[]);
        let committed = w.len;
        let before = std::fs::read(&path).unwrap();
        inject(&path, 2, libc::EIO);
        let mut failed = false;
        for i in 0..(4 * STAGE / 100_000) as u64 {
            let bytes = data(1000 + i, 100_000);
            if w.append(&bytes).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed || w.sync().is_err(), "the injected error never surfaced");
        let bytes = data(7, 10);
        assert!(w.append(&bytes).is_err(), "append after a failed write");
        assert!(w.sync().is_err(), "sync after a failed write");
        assert!(std::fs::read(&path).unwrap()[..committed as usize] == before[..]);
        w.truncate(committed).unwrap();
        assert!(std::fs::read(&path).unwrap() == before);
        with_probe(&path, |p| p.fault = None);
        round_trip(&mut w, dir.path(), 2000, &[70_000, 4096, 1], &[0]);
        assert!(std::fs::read(&path).unwrap()[..committed as usize] == before[..]);
    }

    #[test]
    fn a_writer_dropped_without_sync_leaves_the_committed_part() {
        for io in [PackIo::Direct, PackIo::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let path = pack_path(dir.path(), 1);
            let mut w = PackWriter::create(dir.path(), 1, io).unwrap();
            round_trip(&mut w, dir.path(), 0, &[33_333, 1], &[]);
            let committed = w.len;
            let before = std::fs::read(&path).unwrap();
            // More than both staging buffers: some of it is in the file, some only staged.
            for i in 0..(3 * STAGE / 90_000) as u64 {
                let bytes = data(10 + i, 90_000);
                w.append(&bytes).unwrap();
            }
            drop(w);
            let after = std::fs::read(&path).unwrap();
            assert!(after.len() as u64 >= committed);
            assert!(after[..committed as usize] == before[..], "{io:?}");
            // What the writer's next open does to a torn tail.
            PackWriter::open(dir.path(), 1, after.len() as u64, PackIo::Buffered).unwrap().truncate(committed).unwrap();
            assert!(std::fs::read(&path).unwrap() == before);
        }
    }

    /// The store through each path: ingest, gc and fsck agree, whatever writes the packs.
    #[test]
    fn the_store_works_through_either_path() {
        for io in [PackIo::Direct, PackIo::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let data_dir = dir.path().join("data");
            let sizes = crate::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 };
            crate::Store::init(&data_dir, &crate::InitOptions { chunk_sizes: sizes, pack_max_size: 8 << 20 }).unwrap();
            let store = crate::Store::open(&data_dir).unwrap();
            store.writer("test").unwrap().pack_io = io;
            let blobs: Vec<(Digest, Vec<u8>)> = (0..4)
                .map(|i| {
                    let bytes = fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(i), 3_000_000 + i as usize);
                    (store.ingest_reader(&bytes[..], "blob").unwrap().blob, bytes)
                })
                .collect();
            let direct = store.writer("test").unwrap().active.as_ref().map(PackWriter::is_direct);
            assert_eq!(direct, Some(io == PackIo::Direct && fs_takes_direct(dir.path())), "{io:?}");
            for (blob, bytes) in &blobs {
                assert!(store.read_all(blob).unwrap().concat() == *bytes);
            }
            assert!(store.fsck().unwrap().is_clean());
            let keep: HashSet<Digest> = blobs.iter().skip(2).map(|(b, _)| *b).collect();
            let report = store.gc(&crate::GcOptions { roots: Some(keep), min_dead_fraction: 0.1 }).unwrap();
            assert!(report.packs_rewritten + report.packs_removed > 0, "{report:?}");
            for (blob, bytes) in blobs.iter().skip(2) {
                assert!(store.read_all(blob).unwrap().concat() == *bytes);
            }
            assert!(store.fsck().unwrap().is_clean());
            drop(store);
            let store = crate::Store::open(&data_dir).unwrap();
            assert!(store.fsck().unwrap().is_clean());
        }
    }

    #[test]
    fn retain_drops_maps_of_unlisted_and_replaced_packs() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path().to_owned());
        let mut offsets = Vec::new();
        for id in 1..=3 {
            let mut w = PackWriter::create(dir.path(), id, PackIo::Direct).unwrap();
            offsets.push(w.append(b"x").unwrap());
            w.sync().unwrap();
            packs.slice(id, offsets[0], 1).unwrap();
        }
        assert_eq!(packs.mapped(), [1, 2, 3]);
        // Pack 3 is replaced by another file under the same name while it is mapped.
        std::fs::remove_file(pack_path(dir.path(), 3)).unwrap();
        let mut w = PackWriter::create(dir.path(), 3, PackIo::Direct).unwrap();
        let at = w.append(b"y").unwrap();
        w.sync().unwrap();
        packs.retain(&HashSet::from([2, 3]));
        assert_eq!(packs.mapped(), [2]);
        assert_eq!(&packs.slice(3, at, 1).unwrap()[..], b"y");
        assert_eq!(packs.mapped(), [2, 3]);
    }
}
