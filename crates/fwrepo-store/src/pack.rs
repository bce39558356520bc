//! Pack files: append-only files of chunk records, read through memory maps.
//!
//! File layout: an 8-byte header `FWPACK` `\0` `\x01`, then records `{len u32 LE, id [32],
//! bytes [len]}`. A chunk's location points at its bytes. The committed length of each pack is
//! kept in the index; bytes past it are a torn tail from an interrupted write and are cut off when
//! the writer opens the store.
//!
//! Invariant: bytes below a pack's committed length are never modified and the file is never
//! shortened below it; a pack leaves only by being unlinked whole (after garbage collection has
//! moved its live chunks). That is what makes handing out slices of the mappings sound.
//!
//! Pack ids are never reused (the index keeps a high-water mark), and a reader drops its maps of
//! packs the index no longer lists when it refreshes, so an unlinked pack stops holding disk
//! space once the slices handed out of it are dropped.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError, bounded};
use memmap2::Mmap;

use crate::Digest;
use crate::error::{Error, IoContext, Result};

pub const HEADER: &[u8; 8] = b"FWPACK\0\x01";
/// Bytes in front of each chunk's data: its length and id.
pub const RECORD_OVERHEAD: u64 = 4 + 32;
/// Start writeback of what has been appended every this many bytes, so the fsync at commit
/// finds little left to do.
const WRITEBACK_EVERY: u64 = 16 << 20;

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
    unsafe fn new(file: &File) -> std::io::Result<PackMap> {
        // SAFETY: see the contract above.
        unsafe { Mmap::map(file) }.map(PackMap)
    }
}

/// Which file a map was made of: device and inode, so a refresh can tell a pack file that was
/// removed and recreated under the same name from the one it mapped.
type FileId = (u64, u64);

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
        let mapped: Vec<(u32, FileId)> = self.maps.read().unwrap().iter().map(|(&p, m)| (p, m.file)).collect();
        // Look at the files without holding the lock, so reads go on meanwhile.
        let stale: Vec<(u32, FileId)> = mapped
            .into_iter()
            .filter(|&(pack, file)| {
                !listed.contains(&pack)
                    || std::fs::metadata(pack_path(&self.dir, pack)).map(|m| file_id(&m)).ok() != Some(file)
            })
            .collect();
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

/// The pack being appended to.
pub struct PackWriter {
    pub id: u32,
    path: PathBuf,
    file: File,
    /// Bytes in the file, committed or not.
    pub len: u64,
    /// Where the last writeback request ended.
    writeback_from: u64,
    /// Requests to the writeback thread, started with the first request.
    writeback: Option<Sender<(u64, u64)>>,
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
fn spawn_writeback(file: &File) -> Option<Sender<(u64, u64)>> {
    let file = file.try_clone().ok()?;
    let (tx, rx) = bounded::<(u64, u64)>(1);
    std::thread::Builder::new()
        .name("pack-writeback".into())
        .spawn(move || {
            for (from, n) in rx {
                sync_file_range(&file, from, n);
            }
        })
        .ok()?;
    Some(tx)
}

impl PackWriter {
    /// Creates a new, empty pack file with its header (not yet durable).
    pub fn create(dir: &Path, id: u32) -> Result<PackWriter> {
        let path = pack_path(dir, id);
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).at(&path)?;
        file.write_all_at(HEADER, 0).at(&path)?;
        let len = HEADER.len() as u64;
        Ok(PackWriter { id, path, file, len, writeback_from: 0, writeback: None })
    }

    /// Opens an existing pack to append after its committed length `len` (the caller has cut
    /// any tail already).
    pub fn open(dir: &Path, id: u32, len: u64) -> Result<PackWriter> {
        let path = pack_path(dir, id);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
        Ok(PackWriter { id, path, file, len, writeback_from: len, writeback: None })
    }

    /// Appends one chunk record and returns the offset of the chunk's bytes.
    pub fn append(&mut self, id: &Digest, data: &[u8]) -> Result<u64> {
        let mut head = [0u8; RECORD_OVERHEAD as usize];
        head[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(id.as_bytes());
        self.file.write_all_at(&head, self.len).at(&self.path)?;
        let offset = self.len + RECORD_OVERHEAD;
        self.file.write_all_at(data, offset).at(&self.path)?;
        self.len = offset + data.len() as u64;
        if self.len - self.writeback_from >= WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(offset)
    }

    /// Asks the kernel to start writing what was appended, without waiting for it. While the
    /// writeback thread is still busy with the last request, this one waits and the next one
    /// covers both.
    fn start_writeback(&mut self) {
        let (from, n) = (self.writeback_from, self.len - self.writeback_from);
        if self.writeback.is_none() {
            self.writeback = spawn_writeback(&self.file);
        }
        match &self.writeback {
            Some(tx) => match tx.try_send((from, n)) {
                Ok(()) => self.writeback_from = self.len,
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    self.writeback = None;
                    sync_file_range(&self.file, from, n);
                    self.writeback_from = self.len;
                }
            },
            None => {
                sync_file_range(&self.file, from, n);
                self.writeback_from = self.len;
            }
        }
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// Cuts the file back to `len` bytes (dropping an uncommitted tail) and makes that durable.
    pub fn truncate(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        self.len = len;
        self.writeback_from = len;
        Ok(())
    }
}

/// Reads pack `path` record by record up to `len` and calls `f(id, offset, bytes)` for each.
/// Lets tests look at a pack without the index.
#[cfg(test)]
pub fn scan(path: &Path, len: u64, mut f: impl FnMut(Digest, u64, &[u8])) -> Result<()> {
    let data = std::fs::read(path).at(path)?;
    let end = (len as usize).min(data.len());
    if data.len() < HEADER.len() || &data[..HEADER.len()] != HEADER {
        return Err(Error::CorruptRecord { what: path.display().to_string(), reason: "bad pack header".into() });
    }
    let mut pos = HEADER.len();
    while pos + RECORD_OVERHEAD as usize <= end {
        let n = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let id = Digest::from_slice(&data[pos + 4..pos + 36]).unwrap();
        let start = pos + RECORD_OVERHEAD as usize;
        if start + n > end {
            break;
        }
        f(id, start as u64, &data[start..start + n]);
        pos = start + n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_are_strict() {
        assert_eq!(parse_pack_name("00000012.pack"), Some(12));
        for bad in ["12.pack", "0000001x.pack", "00000012.pak", "00000012.pack.tmp"] {
            assert_eq!(parse_pack_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn appended_chunks_are_readable_through_remapped_slices() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(dir.path(), 1).unwrap();
        let packs = Packs::new(dir.path().to_owned());
        let a = w.append(&Digest::of(b"first"), b"first").unwrap();
        assert_eq!(&packs.slice(1, a, 5).unwrap()[..], b"first");
        // Written after the first map was made: the read must remap, and the old slice survives.
        let old = packs.slice(1, a, 5).unwrap();
        let b = w.append(&Digest::of(b"second"), b"second").unwrap();
        assert_eq!(&packs.slice(1, b, 6).unwrap()[..], b"second");
        assert_eq!(&old[..], b"first");
        let mut seen = Vec::new();
        scan(&pack_path(dir.path(), 1), w.len, |id, off, bytes| seen.push((id, off, bytes.to_vec()))).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], (Digest::of(b"second"), b, b"second".to_vec()));
        assert!(matches!(packs.slice(2, 8, 1), Err(Error::MissingPack { pack: 2 })));
    }

    #[test]
    fn retain_drops_maps_of_unlisted_and_replaced_packs() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path().to_owned());
        let mut offsets = Vec::new();
        for id in 1..=3 {
            let mut w = PackWriter::create(dir.path(), id).unwrap();
            offsets.push(w.append(&Digest::of(b"x"), b"x").unwrap());
            packs.slice(id, offsets[0], 1).unwrap();
        }
        assert_eq!(packs.mapped(), [1, 2, 3]);
        // Pack 3 is replaced by another file under the same name while it is mapped.
        std::fs::remove_file(pack_path(dir.path(), 3)).unwrap();
        let mut w = PackWriter::create(dir.path(), 3).unwrap();
        let at = w.append(&Digest::of(b"y"), b"y").unwrap();
        packs.retain(&HashSet::from([2, 3]));
        assert_eq!(packs.mapped(), [2]);
        assert_eq!(&packs.slice(3, at, 1).unwrap()[..], b"y");
        assert_eq!(packs.mapped(), [2, 3]);
    }
}
