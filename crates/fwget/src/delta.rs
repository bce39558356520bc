//! Downloads with deltas: each target is assembled in a temporary file in the out dir from
//! verified chunks (resumed from its journal, copied from seeds, fetched from peers), then
//! checked against its signed length, SHA-256 and BLAKE3, fsynced and renamed into place.
//!
//! Chunks no seed holds are asked for as chunk-pair deltas: per target, the seed file sharing
//! the most chunks with it is taken as its earlier version, and each missing chunk is named
//! with the chunk of that file in its place (`fwrepo_chunk::bases`) as its base. Base bytes
//! are re-read and re-hashed from the seed when a request is made; a peer without the delta
//! endpoint, or `--no-deltas`, gets range requests instead.
//!
//! Working files, next to the final one: `.fwget-NAME.part` (the blob being assembled, at its
//! final length) and `.fwget-NAME.journal` (a header naming the blob, then one
//! `offset chunk-id` line per verified chunk written). A run killed at any point leaves
//! these; the next run re-hashes every journaled chunk before it counts.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use fwrepo_chunk::Digest;
use fwrepo_chunk::bases::{choose_bases, shared_chunks};
use fwrepo_fetch::{
    BaseSource, Bases, BlobVerifier, BoxError, ChunkSink, Fetcher, RemoteBlob, Transport, VerifiedChunk,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::seeds::{Seeds, Source, WORK_PREFIX, read_verified};

/// A peer blobs can be fetched from: a mirror or the origin.
pub struct Peer<T> {
    /// Its base URL, as the user gave it.
    pub name: String,
    pub fetcher: Fetcher<T>,
}

/// Per file, as `--json` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub target: String,
    pub path: PathBuf,
    pub length: u64,
    /// Bytes received for this file: its chunk index, its range answers and delta replies,
    /// heads included.
    pub wire_bytes: u64,
    /// Of those, bytes of chunk-pair delta frames.
    pub delta_bytes: u64,
    /// Bytes copied from seeds (the out dir, `--seed`, a resumed partial file).
    pub seed_bytes: u64,
    /// Requests for its chunk index, its ranges and its delta batches.
    pub requests: u64,
    /// Chunks reused from an interrupted run's journal.
    #[serde(skip)]
    pub resumed_chunks: u64,
}

/// Something the user should hear about, printed as a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A mirror served bytes that do not match signed metadata; it is not used again this run.
    BadMirror { peer: String, error: String },
    /// A peer failed (network, 5xx); the next one is tried.
    PeerFailed { peer: String, error: String },
    /// A seed's chunk did not hash to its id (the file changed or is corrupt).
    BadSeed { path: PathBuf },
    /// The peer ignores `Range`: whole files were read.
    NoRanges { peer: String },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::BadMirror { peer, error } => {
                write!(f, "{peer} served data that does not match signed metadata ({error}); not using it again")
            }
            Notice::PeerFailed { peer, error } => write!(f, "{peer} failed ({error}); trying the next peer"),
            Notice::BadSeed { path } => {
                write!(f, "seed {} does not match its index (changed or corrupt); fetching its chunks", path.display())
            }
            Notice::NoRanges { peer } => {
                write!(f, "{peer} does not support Range requests; read whole files (verified)")
            }
        }
    }
}

/// One target being assembled.
struct Part {
    blob: RemoteBlob,
    final_path: PathBuf,
    part_path: PathBuf,
    journal_path: PathBuf,
    file: File,
    journal: Mutex<File>,
    offsets: Vec<u64>,
    done: Mutex<Vec<bool>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// Where target `path` lands under `out`: its file name, in `out` itself.
pub fn final_path(out: &Path, target: &str) -> PathBuf {
    out.join(target.rsplit('/').next().unwrap_or(target))
}

fn journal_header(blob: &RemoteBlob) -> String {
    format!("fwget-journal 1 {} {}\n", blob.blob, blob.len())
}

impl Part {
    fn open(out: &Path, blob: RemoteBlob) -> Result<Part> {
        let final_path = final_path(out, blob.target.path.as_str());
        let name = final_path.file_name().and_then(|n| n.to_str()).unwrap_or("target").to_owned();
        let part_path = out.join(format!("{WORK_PREFIX}{name}.part"));
        let journal_path = out.join(format!("{WORK_PREFIX}{name}.journal"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part_path)
            .map_err(io(&part_path))?;
        file.set_len(blob.len()).map_err(io(&part_path))?;
        let offsets: Vec<u64> = blob.index.offsets().map(|(o, _)| o).collect();
        let n = offsets.len();
        let mut journal =
            OpenOptions::new().read(true).append(true).create(true).open(&journal_path).map_err(io(&journal_path))?;
        let mut text = String::new();
        let _ = journal.read_to_string(&mut text);
        let header = journal_header(&blob);
        let part = Part {
            blob,
            final_path,
            part_path,
            journal_path: journal_path.clone(),
            file,
            journal: Mutex::new(journal),
            offsets,
            done: Mutex::new(vec![false; n]),
        };
        if text.starts_with(&header) {
            part.resume(&text[header.len()..])?;
        } else {
            // A journal of another blob, or none: start over.
            let j = part.journal.lock().unwrap_or_else(|e| e.into_inner());
            j.set_len(0).map_err(io(&journal_path))?;
            (&*j).write_all(header.as_bytes()).map_err(io(&journal_path))?;
        }
        Ok(part)
    }

    /// Marks every journaled chunk whose bytes in the part file still hash to its id.
    fn resume(&self, lines: &str) -> Result<()> {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        for line in lines.lines() {
            let Some((off, id)) = line.split_once(' ') else { continue };
            let (Ok(off), Ok(id)) = (off.parse::<u64>(), id.parse::<Digest>()) else { continue };
            let Ok(i) = self.offsets.binary_search(&off) else { continue };
            let (want, len) = self.blob.index.chunks[i];
            if want != id || done[i] {
                continue;
            }
            let src = Source { path: self.part_path.clone(), offset: off, len };
            if read_verified(&src, &id)?.is_some() {
                done[i] = true;
            }
        }
        Ok(())
    }

    /// Writes verified bytes of chunk `i` and journals it.
    fn write_chunk(&self, i: usize, bytes: &[u8]) -> std::io::Result<()> {
        let off = self.offsets[i];
        self.file.write_all_at(bytes, off)?;
        let line = format!("{off} {}\n", self.blob.index.chunks[i].0);
        (&*self.journal.lock().unwrap_or_else(|e| e.into_inner())).write_all(line.as_bytes())?;
        self.done.lock().unwrap_or_else(|e| e.into_inner())[i] = true;
        Ok(())
    }

    fn is_done(&self, i: usize) -> bool {
        self.done.lock().unwrap_or_else(|e| e.into_inner())[i]
    }

    fn complete(&self) -> bool {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).iter().all(|&d| d)
    }

    /// Checks length, signed SHA-256 and BLAKE3, fsyncs and renames into place. A part that
    /// fails is removed with its journal: nothing unverified is left under any name.
    fn finish(self) -> Result<()> {
        let check = || -> Result<()> {
            let mut v = BlobVerifier::new(&self.blob)?;
            let mut f = File::open(&self.part_path).map_err(io(&self.part_path))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(io(&self.part_path))?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n])?;
            }
            v.finish()?;
            Ok(())
        };
        if let Err(e) = check() {
            let _ = fs::remove_file(&self.part_path);
            let _ = fs::remove_file(&self.journal_path);
            return Err(Error::Verification(format!("{}: {e}", self.blob.target.path)));
        }
        self.file.sync_all().map_err(io(&self.part_path))?;
        fs::rename(&self.part_path, &self.final_path).map_err(io(&self.final_path))?;
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let _ = fs::remove_file(&self.journal_path);
        Ok(())
    }
}

struct Sink<'a> {
    parts: &'a [Part],
}

impl ChunkSink for Sink<'_> {
    fn put(&self, chunk: &VerifiedChunk) -> std::result::Result<(), BoxError> {
        for p in chunk.placements() {
            let part = &self.parts[p.blob];
            let i = part.offsets.binary_search(&p.offset).map_err(|_| "placement at no chunk offset")?;
            part.write_chunk(i, chunk.bytes())?;
        }
        Ok(())
    }
}

/// Delta bases read from seed files, each re-hashed as it is read (the fetch engine checks
/// again); files whose chunk no longer matches are remembered to be rescanned.
struct SeedBases<'a> {
    seeds: &'a Seeds,
    bad: Mutex<Vec<PathBuf>>,
}

impl BaseSource for SeedBases<'_> {
    fn read_base(&self, id: &Digest) -> Option<Bytes> {
        for src in self.seeds.sources(id) {
            match read_verified(src, id) {
                Ok(Some(bytes)) => return Some(Bytes::from(bytes)),
                Ok(None) => self.bad.lock().unwrap_or_else(|e| e.into_inner()).push(src.path.clone()),
                Err(e) => tracing::debug!(error = %e, "seed unreadable as a delta base"),
            }
        }
        None
    }
}

/// Per part, per chunk: the bases to ask its delta against, from the seed file most like an
/// earlier version of the target: the one sharing the most chunks with it; when none shares
/// any (a compressed image rebuilt, a file of one chunk), the seed file of the same name, or
/// the only seed file there is. No bases when none of these exists.
fn choose_seed_bases(parts: &[Part], seeds: &Seeds) -> Vec<Vec<Vec<Digest>>> {
    let files: Vec<(&Path, Vec<(Digest, u32)>)> = seeds.files().collect();
    parts
        .iter()
        .map(|p| {
            let target = &p.blob.index.chunks;
            match earlier_version(target, &p.final_path, &files) {
                Some(seed) => choose_bases(target, seed),
                None => vec![Vec::new(); target.len()],
            }
        })
        .collect()
}

/// Of the seed `files`, the chunk list of the one taken as an earlier version of the target
/// (chunks `target`, to be written at `final_path`): see [`choose_seed_bases`].
fn earlier_version<'a>(
    target: &[(Digest, u32)],
    final_path: &Path,
    files: &'a [(&Path, Vec<(Digest, u32)>)],
) -> Option<&'a Vec<(Digest, u32)>> {
    let by_chunks = files
        .iter()
        .map(|(_, f)| (shared_chunks(target, f), f))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(_, f)| f);
    let by_name = || {
        let name = final_path.file_name()?;
        files.iter().find(|(path, _)| path.file_name() == Some(name)).map(|(_, f)| f)
    };
    let only = || match files {
        [(_, f)] => Some(f),
        _ => None,
    };
    by_chunks.or_else(by_name).or_else(only)
}

/// Progress callbacks: bytes placed so far out of the total.
pub trait Progress: Sync {
    fn set(&self, done: u64, total: u64);
}

impl Progress for () {
    fn set(&self, _: u64, _: u64) {}
}

/// What [`download`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub files: Vec<FileReport>,
    pub notices: Vec<Notice>,
}

/// Fetches each `targets` chunk index from the first peer that serves one matching the signed
/// id; on any error the next peer is tried.
pub async fn resolve<T: Transport>(
    peers: &[&Peer<T>],
    target: &fwrepo_tuf::TargetInfo,
    notices: &mut Vec<Notice>,
) -> Result<(RemoteBlob, u64, u64)> {
    let mut last = None;
    for peer in peers {
        let before = peer.fetcher.transport().wire().stats();
        match peer.fetcher.remote_blob(target).await {
            Ok(b) => {
                let after = peer.fetcher.transport().wire().stats();
                return Ok((b, after.wire_bytes() - before.wire_bytes(), after.requests - before.requests));
            }
            Err(e) => {
                notices.push(if crate::error::fetch_exit_code(&e) == crate::error::exit::VERIFICATION {
                    Notice::BadMirror { peer: peer.name.clone(), error: e.to_string() }
                } else {
                    Notice::PeerFailed { peer: peer.name.clone(), error: e.to_string() }
                });
                last = Some(e);
            }
        }
    }
    Err(last.map_or_else(|| Error::Usage("no peer configured".into()), Error::Fetch))
}

/// Downloads `blobs` into `out`: journaled chunks first, then seed chunks (each re-hashed as
/// it is copied), then the rest from `peers` in order; a peer that serves a wrong chunk or
/// fails is left for the next. Every file is verified before it gets its final name.
pub async fn download<T: Transport>(
    peers: &[&Peer<T>],
    blobs: Vec<(RemoteBlob, u64, u64)>,
    out: &Path,
    seeds: &mut Seeds,
    progress: &dyn Progress,
) -> Result<Outcome> {
    fs::create_dir_all(out).map_err(io(out))?;
    let mut outcome = Outcome::default();
    let mut parts = Vec::new();
    let mut names = HashSet::new();
    for (blob, ..) in &blobs {
        if !names.insert(final_path(out, blob.target.path.as_str())) {
            return Err(Error::Usage(format!(
                "{}: another target of this run has the same file name; fetch it into another --out",
                blob.target.path
            )));
        }
    }
    for (blob, index_wire, index_requests) in blobs {
        let target = blob.target.path.to_string();
        let length = blob.len();
        let part = Part::open(out, blob)?;
        let resumed = part.done.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|&&d| d).count() as u64;
        outcome.files.push(FileReport {
            target,
            path: part.final_path.clone(),
            length,
            wire_bytes: index_wire,
            requests: index_requests,
            resumed_chunks: resumed,
            ..FileReport::default()
        });
        parts.push(part);
    }
    let total: u64 = parts.iter().map(|p| p.blob.len()).sum();
    let placed = |parts: &[Part]| -> u64 {
        parts
            .iter()
            .map(|p| {
                let d = p.done.lock().unwrap_or_else(|e| e.into_inner());
                p.blob.index.chunks.iter().zip(d.iter()).filter(|(_, d)| **d).map(|(c, _)| u64::from(c.1)).sum::<u64>()
            })
            .sum()
    };
    progress.set(placed(&parts), total);

    // Local copies: from the journaled parts themselves, then from seeds.
    let mut local: HashMap<Digest, Vec<Source>> = HashMap::new();
    for p in &parts {
        for (i, (id, len)) in p.blob.index.chunks.iter().enumerate() {
            if p.is_done(i) {
                local.entry(*id).or_default().push(Source {
                    path: p.part_path.clone(),
                    offset: p.offsets[i],
                    len: *len,
                });
            }
        }
    }
    for (b, p) in parts.iter().enumerate() {
        for (i, (id, _)) in p.blob.index.chunks.iter().enumerate() {
            if p.is_done(i) {
                continue;
            }
            let resumed = local.get(id).into_iter().flatten().map(|s| (s.clone(), false));
            let candidates: Vec<(Source, bool)> =
                resumed.chain(seeds.sources(id).iter().map(|s| (s.clone(), true))).collect();
            for (src, is_seed) in candidates {
                match read_verified(&src, id)? {
                    Some(bytes) => {
                        p.write_chunk(i, &bytes).map_err(io(&p.part_path))?;
                        if is_seed {
                            outcome.files[b].seed_bytes += bytes.len() as u64;
                        }
                        break;
                    }
                    None if is_seed && seeds.forget(&src.path) => {
                        outcome.notices.push(Notice::BadSeed { path: src.path.clone() });
                    }
                    None => {}
                }
            }
        }
    }
    seeds.save()?;
    progress.set(placed(&parts), total);

    // The rest from the peers, in order.
    let blobs: Vec<RemoteBlob> = parts.iter().map(|p| p.blob.clone()).collect();
    let sink = Sink { parts: &parts };
    let base_source = SeedBases { seeds: &*seeds, bad: Mutex::new(Vec::new()) };
    let deltas = peers.iter().any(|p| p.fetcher.options().deltas);
    let bases =
        Bases { chosen: if deltas { choose_seed_bases(&parts, seeds) } else { Vec::new() }, source: &base_source };
    let mut last_err = None;
    for peer in peers {
        if parts.iter().all(Part::complete) {
            break;
        }
        let missing: HashSet<Digest> = parts
            .iter()
            .flat_map(|p| p.blob.index.chunks.iter().enumerate().filter(|(i, _)| !p.is_done(*i)).map(|(_, c)| c.0))
            .collect();
        let have = |id: &Digest| !missing.contains(id);
        let result = if peer.fetcher.options().deltas {
            peer.fetcher.fetch_deltas(&blobs, have, &bases, &sink).await
        } else {
            peer.fetcher.fetch_chunks(&blobs, have, &sink).await
        };
        progress.set(placed(&parts), total);
        match result {
            Ok(report) => {
                for (b, s) in report.blobs.iter().enumerate() {
                    outcome.files[b].wire_bytes += s.head_bytes + s.body_bytes;
                    outcome.files[b].delta_bytes += s.delta_bytes;
                    outcome.files[b].requests += s.requests;
                }
                if report.ranges_ignored {
                    outcome.notices.push(Notice::NoRanges { peer: peer.name.clone() });
                }
                last_err = None;
            }
            Err(e) => {
                let bad = crate::error::fetch_exit_code(&e) == crate::error::exit::VERIFICATION;
                outcome.notices.push(if bad {
                    Notice::BadMirror { peer: peer.name.clone(), error: e.to_string() }
                } else {
                    Notice::PeerFailed { peer: peer.name.clone(), error: e.to_string() }
                });
                last_err = Some(e);
            }
        }
    }
    let bad_bases = base_source.bad.into_inner().unwrap_or_else(|e| e.into_inner());
    if !bad_bases.is_empty() {
        for path in bad_bases {
            if seeds.forget(&path) {
                outcome.notices.push(Notice::BadSeed { path });
            }
        }
        seeds.save()?;
    }
    if let Some(e) = last_err
        && !parts.iter().all(Part::complete)
    {
        return Err(Error::Fetch(e));
    }
    for p in parts {
        if !p.complete() {
            return Err(Error::Usage(format!("{}: chunks still missing after every peer", p.blob.target.path)));
        }
        p.finish()?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str) -> (Digest, u32) {
        (Digest::of(name.as_bytes()), 100)
    }

    #[test]
    fn the_earlier_version_is_the_seed_sharing_most_then_the_same_name_then_the_only_one() {
        let target = vec![c("a"), c("b"), c("new")];
        let (one, two) = (vec![c("a"), c("x")], vec![c("a"), c("b")]);
        let (p1, p2) = (Path::new("/s/rom-1.bin"), Path::new("/s/rom.bin"));
        let out = Path::new("/out/rom.bin");
        // Most shared chunks wins over the name.
        let files = [(p2, one.clone()), (p1, two.clone())];
        assert_eq!(earlier_version(&target, out, &files), Some(&two));
        // Nothing shared: the seed of the same file name.
        let unrelated = vec![c("new2")];
        let files = [(p1, vec![c("p")]), (p2, vec![c("q")])];
        assert_eq!(earlier_version(&unrelated, out, &files), Some(&vec![c("q")]));
        // Nothing shared, no such name: the only seed there is, or none of several.
        let files = [(p1, vec![c("p")])];
        assert_eq!(earlier_version(&unrelated, out, &files), Some(&vec![c("p")]));
        let files = [(p1, vec![c("p")]), (Path::new("/s/other.bin"), vec![c("q")])];
        assert_eq!(earlier_version(&unrelated, out, &files), None);
        assert_eq!(earlier_version(&unrelated, out, &[]), None);
    }
}
