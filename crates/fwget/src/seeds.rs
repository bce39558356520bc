//! Seeds: local files chunked with the repository's signed chunker sizes, indexed chunk id →
//! (file, offset). The index is kept on disk keyed by path, size, mtime and inode, so an
//! unchanged seed is not chunked again and a changed one is.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use fwrepo_chunk::{Chunker, ChunkerParams, Digest};
use serde::{Deserialize, Serialize};

use crate::dir::write_atomic;
use crate::error::{Error, Result};

/// Prefix of fwget's own working files in an out dir (never used as seeds).
pub const WORK_PREFIX: &str = ".fwget-";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    inode: u64,
    /// min, avg, max chunk sizes the list was cut with.
    params: [u32; 3],
    /// (id, offset, length).
    chunks: Vec<(Digest, u64, u32)>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    files: BTreeMap<PathBuf, Entry>,
}

/// Where a chunk can be read locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u32,
}

/// What a scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files: u64,
    /// Files chunked this time (the others came from the index).
    pub rescanned: u64,
    pub bytes_scanned: u64,
}

/// The chunks of a set of seed files.
pub struct Seeds {
    path: PathBuf,
    disk: OnDisk,
    by_id: HashMap<Digest, Vec<Source>>,
    pub stats: ScanStats,
}

fn params_key(p: &ChunkerParams) -> [u32; 3] {
    [p.min_size, p.avg_size, p.max_size]
}

/// Every regular file under `roots` (files themselves, directories recursively), skipping
/// fwget's working files; bounded in depth.
fn walk(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, u32)> = roots.iter().map(|r| (r.clone(), 0)).collect();
    while let Some((p, depth)) = stack.pop() {
        let Ok(meta) = fs::metadata(&p) else { continue };
        let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(WORK_PREFIX));
        if hidden {
            continue;
        }
        if meta.is_file() {
            out.push(p);
        } else if meta.is_dir()
            && depth < 16
            && let Ok(rd) = fs::read_dir(&p)
        {
            for e in rd.flatten() {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Seeds {
    /// Indexes the files under `roots`, reusing `index_path`'s entries for unchanged files.
    pub fn scan(index_path: &Path, roots: &[PathBuf], params: ChunkerParams) -> Result<Seeds> {
        let old: OnDisk = fs::read(index_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let chunker = Chunker::new(params);
        let mut disk = OnDisk::default();
        let mut stats = ScanStats::default();
        for path in walk(roots) {
            let path = fs::canonicalize(&path).unwrap_or(path);
            let Ok(meta) = fs::metadata(&path) else { continue };
            let (size, mtime_ns, inode) =
                (meta.len(), meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()), meta.ino());
            stats.files += 1;
            if let Some(e) = old.files.get(&path)
                && e.size == size
                && e.mtime_ns == mtime_ns
                && e.inode == inode
                && e.params == params_key(&params)
            {
                disk.files.insert(path, e.clone());
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            stats.rescanned += 1;
            stats.bytes_scanned += bytes.len() as u64;
            let chunks = chunker
                .chunks(&bytes)
                .map(|r| (Digest::of(&bytes[r.clone()]), r.start as u64, r.len() as u32))
                .collect();
            disk.files.insert(path, Entry { size, mtime_ns, inode, params: params_key(&params), chunks });
        }
        let mut seeds = Seeds { path: index_path.to_owned(), disk, by_id: HashMap::new(), stats };
        seeds.rebuild();
        Ok(seeds)
    }

    fn rebuild(&mut self) {
        self.by_id.clear();
        for (path, e) in &self.disk.files {
            for &(id, offset, len) in &e.chunks {
                self.by_id.entry(id).or_default().push(Source { path: path.clone(), offset, len });
            }
        }
    }

    /// Where chunk `id` may be read.
    pub fn sources(&self, id: &Digest) -> &[Source] {
        self.by_id.get(id).map_or(&[], Vec::as_slice)
    }

    /// Each seed file with its chunk list (id, length) in file order: what a target is
    /// aligned with to choose delta bases.
    pub fn files(&self) -> impl Iterator<Item = (&Path, Vec<(Digest, u32)>)> {
        self.disk.files.iter().map(|(p, e)| (p.as_path(), e.chunks.iter().map(|&(id, _, len)| (id, len)).collect()))
    }

    /// Drops `path` from the saved index (a chunk read from it did not hash to its id), so
    /// it is rescanned next time; its other chunks stay usable now, each re-hashed as read.
    /// Returns whether it was still indexed.
    pub fn forget(&mut self, path: &Path) -> bool {
        self.disk.files.remove(path).is_some()
    }

    /// Writes the index back.
    pub fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&self.disk).expect("seed index serializes");
        write_atomic(&self.path, &bytes, 0o644)
    }
}

/// Reads `src` and returns its bytes if they hash to `id` (a seed can change underneath).
pub fn read_verified(src: &Source, id: &Digest) -> Result<Option<Vec<u8>>> {
    let f = fs::File::open(&src.path).map_err(|source| Error::Io { path: src.path.clone(), source })?;
    let mut buf = vec![0u8; src.len as usize];
    match f.read_exact_at(&mut buf, src.offset) {
        Ok(()) => Ok((Digest::of(&buf) == *id).then_some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(source) => Err(Error::Io { path: src.path.clone(), source }),
    }
}
