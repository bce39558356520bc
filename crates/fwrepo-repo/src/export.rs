//! Static export: a directory any plain HTTP server or CDN can host, laid out as a TUF
//! consistent-snapshot repository.
//!
//! ```text
//! OUT -> .OUT.d/<n>               a symlink to the current tree (relative: the parent can move)
//! OUT/metadata/N.root.json        every root version (clients walk the chain)
//! OUT/metadata/V.targets.json     current targets, bins, snapshot (consistent names)
//! OUT/metadata/timestamp.json
//! OUT/targets/DIR/<sha256>.<name> target bytes from the store
//! OUT/chunks/<ab>/<id>            each target's chunk index, named by its id (the signed
//!                                 `custom.chunk_index`, `ab` its first two hex digits)
//! ```
//!
//! The chunk indexes are what lets a client fetch only the chunks it lacks from a plain HTTP
//! server: it checks each against the signed id, then asks for byte ranges of the target file.
//! ([`ChunkIndex::export_path`] is the one definition of the name.)
//!
//! Each export writes a new tree `.OUT.d/<n+1>` beside the current one, syncs it, and switches
//! `OUT` to it by renaming a new symlink over the old one. That rename is the only step a
//! reader of `OUT` can see, so whatever point a crash interrupts, `OUT` names a complete tree:
//! the previous one or the new one. The tree an export replaced stays until the next export, so
//! a reader that began before the switch (a request in flight, a copy to a CDN) can finish;
//! older trees and whatever an interrupted export left behind are removed when the next one
//! starts. An `OUT` that is a plain directory (written by an older fwrepo) is exchanged for the
//! symlink in one `renameat2(RENAME_EXCHANGE)`; only on a file system without it is there a
//! moment, once, with no `OUT`. Exports into one `OUT` take turns (a lock beside it).

use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Component, Path, PathBuf};

use fwrepo_store::{ChunkIndex, Digest};
use fwrepo_tuf::layout;

use crate::error::{Error, IoContext as _, Result};
use crate::{Repo, blob_of};

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub metadata_files: usize,
    pub metadata_bytes: u64,
    pub targets: usize,
    pub target_bytes: u64,
    /// Distinct chunk indexes written (targets with the same bytes share one).
    pub chunk_indexes: usize,
}

fn write_synced(path: &Path, parts: &[&[u8]]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let mut f = fs::File::create(path).at(path)?;
    for p in parts {
        f.write_all(p).at(path)?;
    }
    f.sync_all().at(path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl Repo {
    /// Writes the current repository to `out` (see the module docs). An existing `out` must be
    /// an earlier export (the symlink, or a directory with `metadata/`) or an empty directory.
    pub fn export(&self, out: &Path) -> Result<ExportReport> {
        let tuf = self.load()?;
        let swap = Swap::prepare(out)?;
        match self.write_tree(&tuf, swap.dir()) {
            Ok(report) => {
                swap.commit()?;
                Ok(report)
            }
            Err(e) => {
                swap.abandon();
                Err(e)
            }
        }
    }

    fn write_tree(&self, tuf: &fwrepo_tuf::Repository, dir: &Path) -> Result<ExportReport> {
        let mut report = ExportReport::default();
        let meta = dir.join("metadata");
        fs::create_dir_all(&meta).at(&meta)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for n in 1..=self.root_version()? {
            let name = layout::root_file(n);
            let bytes = self.require_file(&name)?;
            files.push((name, bytes));
        }
        for f in tuf.files() {
            if f.role != fwrepo_tuf::RoleName::root() {
                files.push((f.name, f.bytes));
            }
        }
        for (name, bytes) in &files {
            write_synced(&meta.join(name), &[bytes])?;
            report.metadata_files += 1;
            report.metadata_bytes += bytes.len() as u64;
        }
        sync_dir(&meta)?;
        let targets_dir = dir.join("targets");
        fs::create_dir_all(&targets_dir).at(&targets_dir)?;
        let mut indexes = std::collections::HashSet::new();
        for (path, t) in tuf.all_targets() {
            let blob = blob_of(&path, &t)?;
            let info = self.store.blob_info(&blob)?;
            let sha =
                t.sha256().ok_or_else(|| Error::CorruptMetadata { reason: format!("target {path}: no sha256") })?;
            if info.len != t.length || info.sha256 != *sha.as_bytes() {
                return Err(Error::CorruptMetadata {
                    reason: format!("target {path}: blob {blob} does not match its signed length and sha256"),
                });
            }
            let slices = self.store.read_all(&blob)?;
            let parts: Vec<&[u8]> = slices.iter().map(|b| b.as_ref()).collect();
            let file = targets_dir.join(layout::target_file(&path, &sha));
            write_synced(&file, &parts)?;
            report.targets += 1;
            report.target_bytes += t.length;
            let index = self.store.chunk_index(&blob)?.to_bytes();
            let id = signed_chunk_index(&path, &t)?;
            if Digest::of(&index) != id {
                return Err(Error::CorruptMetadata {
                    reason: format!("target {path}: the store's chunk index of {blob} is not the signed {id}"),
                });
            }
            if indexes.insert(id) {
                write_synced(&dir.join(ChunkIndex::export_path(&id)), &[&index])?;
                report.chunk_indexes += 1;
            }
        }
        sync_dir(dir)?;
        Ok(report)
    }
}

/// The signed `custom.chunk_index` of target `path`.
fn signed_chunk_index(path: &fwrepo_tuf::TargetPath, t: &fwrepo_tuf::TargetFile) -> Result<Digest> {
    let value = t.custom.as_ref().and_then(|c| c.get("chunk_index")).and_then(|v| v.as_str());
    let value =
        value.ok_or_else(|| Error::CorruptMetadata { reason: format!("target {path}: no custom.chunk_index") })?;
    value.parse().map_err(|e| Error::CorruptMetadata { reason: format!("target {path}: custom.chunk_index: {e}") })
}

/// What `OUT` is before an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    /// Our symlink, to generation `n` (which may be missing if someone removed it).
    Link(u64),
    /// A directory: an export by an older fwrepo, or empty.
    Directory,
}

/// One export's switch of `OUT` to a new tree: prepare, write into [`Swap::dir`], commit.
/// Dropping it without [`Swap::commit`] is what a crash does: `OUT` is left as it was.
struct Swap {
    out: PathBuf,
    parent: PathBuf,
    /// `.OUT.d`, the directory of generations.
    generations: PathBuf,
    /// `OUT`'s file name.
    name: String,
    existing: Existing,
    generation: u64,
    dir: PathBuf,
    _lock: fs::File,
}

impl Swap {
    /// Checks what `out` is, takes the export lock, removes what earlier exports left behind
    /// (every generation but the current one, temporary links) and creates the new generation.
    fn prepare(out: &Path) -> Result<Swap> {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Invalid(format!("{}: export needs a directory name", out.display())))?
            .to_owned();
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        // Refuse what is not an export before creating anything beside it; look again once
        // the lock is held, in case another export switched it meanwhile.
        existing(out, &name)?;
        fs::create_dir_all(&parent).at(&parent)?;
        let lock = lock(&parent.join(format!(".{name}.lock")))?;
        let generations = parent.join(format!(".{name}.d"));
        let existing = existing(out, &name)?;
        let current = match existing {
            Existing::Link(n) => Some(n),
            _ => None,
        };
        remove_leftovers(&parent, &name, &generations, current)?;
        fs::create_dir_all(&generations).at(&generations)?;
        let generation = current.map_or(1, |n| n + 1);
        let dir = generations.join(generation.to_string());
        fs::create_dir(&dir).at(&dir)?;
        Ok(Swap { out: out.to_owned(), parent, generations, name, existing, generation, dir, _lock: lock })
    }

    /// Where the new tree goes.
    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the new tree after a failed write; `OUT` stays as it was.
    fn abandon(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Makes the new tree durable and switches `OUT` to it.
    fn commit(self) -> Result<()> {
        let link = self.link()?;
        self.switch(&link)
    }

    /// Syncs the new tree's entry and creates the symlink that will become `OUT`.
    fn link(&self) -> Result<PathBuf> {
        sync_dir(&self.dir)?;
        sync_dir(&self.generations)?;
        let link = self.parent.join(format!(".{}.link-{}", self.name, std::process::id()));
        let _ = fs::remove_file(&link);
        let target = Path::new(&format!(".{}.d", self.name)).join(self.generation.to_string());
        std::os::unix::fs::symlink(&target, &link).at(&link)?;
        Ok(link)
    }

    /// The one step a reader sees: `link` takes `OUT`'s name.
    fn switch(&self, link: &Path) -> Result<()> {
        if self.existing == Existing::Directory {
            // A directory cannot be renamed over; exchange it with the link instead, then keep
            // the old tree as generation 0 until the next export removes it.
            let legacy = self.generations.join("0");
            if exchange(link, &self.out).at(&self.out)? {
                fs::rename(link, &legacy).at(link)?;
            } else {
                fs::rename(&self.out, &legacy).at(&self.out)?;
                fs::rename(link, &self.out).at(&self.out)?;
            }
        } else {
            fs::rename(link, &self.out).at(&self.out)?;
        }
        sync_dir(&self.parent)
    }
}

/// Holds an exclusive lock on `path` (created if missing) for as long as the file lives.
fn lock(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).at(path)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(Error::Invalid(format!("another export holds {}; wait for it to finish", path.display())));
        }
        return Err(err).at(path);
    }
    Ok(file)
}

/// What `out` is now, refusing anything an export must not replace.
fn existing(out: &Path, name: &str) -> Result<Existing> {
    let refuse = |what: String| {
        Error::Invalid(format!("{} {what}, not an fwrepo export; refusing to replace it", out.display()))
    };
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e).at(out),
    };
    if meta.file_type().is_symlink() {
        let target = fs::read_link(out).at(out)?;
        return generation_of(&target, name)
            .map(Existing::Link)
            .ok_or_else(|| refuse(format!("is a symlink to {}", target.display())));
    }
    if !meta.is_dir() {
        return Err(refuse("is a file".into()));
    }
    let empty = fs::read_dir(out).at(out)?.next().is_none();
    if !empty && !out.join("metadata").is_dir() {
        return Err(refuse("exists and has no metadata/".into()));
    }
    Ok(Existing::Directory)
}

/// `n` if `target` is `.NAME.d/n`, the only symlink an export makes.
fn generation_of(target: &Path, name: &str) -> Option<u64> {
    let mut parts = target.components();
    let (Some(Component::Normal(dir)), Some(Component::Normal(n)), None) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let n = n.to_str()?;
    if dir.to_str()? != format!(".{name}.d") || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Removes every generation but `current`, and the temporary names of interrupted exports
/// (this version's links, and the `.tmp-`/`.old-` directories of older versions).
fn remove_leftovers(parent: &Path, name: &str, generations: &Path, current: Option<u64>) -> Result<()> {
    let remove = |path: &Path| -> Result<()> {
        let is_dir = fs::symlink_metadata(path).at(path)?.is_dir();
        (if is_dir { fs::remove_dir_all(path) } else { fs::remove_file(path) }).at(path)
    };
    if generations.is_dir() {
        for entry in fs::read_dir(generations).at(generations)? {
            let entry = entry.at(generations)?;
            let keep = current.is_some_and(|n| entry.file_name().to_str() == Some(n.to_string().as_str()));
            if !keep {
                remove(&entry.path())?;
            }
        }
    }
    let prefixes = [format!(".{name}.link-"), format!(".{name}.tmp-"), format!(".{name}.old-")];
    for entry in fs::read_dir(parent).at(parent)? {
        let entry = entry.at(parent)?;
        let file_name = entry.file_name();
        if prefixes.iter().any(|p| file_name.as_bytes().starts_with(p.as_bytes())) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// Exchanges `a` and `b` atomically (`renameat2(RENAME_EXCHANGE)`). `Ok(false)`: the file
/// system cannot.
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two valid NUL-terminated paths; the call only renames.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stops an export into `OUT` at one step, as a crash there would.
    type Crash = fn(&Path);

    /// Writes a stand-in export tree whose every file names generation `tag`.
    fn write(dir: &Path, tag: &str) {
        for file in ["metadata/1.root.json", "metadata/timestamp.json", "targets/a/x.bin"] {
            write_synced(&dir.join(file), &[tag.as_bytes()]).unwrap();
        }
    }

    /// The tag of the complete tree `out` shows; panics if `out` is missing or partial.
    fn tag(out: &Path) -> String {
        let tags: Vec<String> = ["metadata/1.root.json", "metadata/timestamp.json", "targets/a/x.bin"]
            .iter()
            .map(|f| fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", out.display())))
            .collect();
        assert!(tags.iter().all(|t| *t == tags[0]), "mixed tree {tags:?}");
        tags[0].clone()
    }

    fn export(out: &Path, tag: &str) {
        let swap = Swap::prepare(out).unwrap();
        write(swap.dir(), tag);
        swap.commit().unwrap();
    }

    /// Names in `dir` other than `out` itself: what an export leaves beside it.
    fn beside(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.retain(|n| n != "out");
        names.sort();
        names
    }

    /// Before the fix, export renamed `OUT` away and then the new tree into place: between the
    /// two renames (and after a crash there) there was no `OUT` at all.
    #[test]
    fn export_crash_at_any_step_leaves_out_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        export(&out, "v1");
        let mut n = 1;
        let crashes: [(&str, Crash); 4] = [
            ("after prepare", |out| drop(Swap::prepare(out).unwrap())),
            ("mid-write", |out| {
                let swap = Swap::prepare(out).unwrap();
                write_synced(&swap.dir().join("metadata/1.root.json"), &[b"partial"]).unwrap();
            }),
            ("after write", |out| {
                let swap = Swap::prepare(out).unwrap();
                write(swap.dir(), "lost");
            }),
            ("after link", |out| {
                let swap = Swap::prepare(out).unwrap();
                write(swap.dir(), "lost");
                swap.link().unwrap();
            }),
        ];
        for (step, crash) in crashes {
            crash(&out);
            assert_eq!(tag(&out), format!("v{n}"), "after a crash {step}");
            n += 1;
            export(&out, &format!("v{n}"));
            assert_eq!(tag(&out), format!("v{n}"), "the export after a crash {step}");
            assert_eq!(beside(tmp.path()), [".out.d", ".out.lock"], "after a crash {step}");
            assert!(fs::read_dir(tmp.path().join(".out.d")).unwrap().count() <= 2);
        }
    }

    #[test]
    fn a_plain_directory_from_an_older_export_is_exchanged_for_the_link() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write(&out, "old");
        // A crash between the exchange and moving the old tree aside.
        let swap = Swap::prepare(&out).unwrap();
        write(swap.dir(), "v1");
        let link = swap.link().unwrap();
        assert!(exchange(&link, &out).unwrap(), "this file system cannot exchange");
        drop(swap);
        assert_eq!(tag(&out), "v1");
        export(&out, "v2");
        assert_eq!(tag(&out), "v2");
        assert!(fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(beside(tmp.path()), [".out.d", ".out.lock"]);

        // An uninterrupted migration keeps the old tree as generation 0 until the next export.
        let out2 = tmp.path().join("out2");
        write(&out2, "old");
        export(&out2, "v1");
        assert_eq!(tag(&out2), "v1");
        assert_eq!(tag(&tmp.path().join(".out2.d/0")), "old");
        export(&out2, "v2");
        assert!(!tmp.path().join(".out2.d/0").exists());
    }

    #[test]
    fn what_is_not_an_export_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        write(&elsewhere, "mine");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"mine").unwrap();
        let foreign = tmp.path().join("foreign");
        write_synced(&foreign.join("notes.txt"), &[b"mine"]).unwrap();
        for out in [&link, &file, &foreign] {
            assert!(matches!(Swap::prepare(out), Err(Error::Invalid(_))), "{}", out.display());
        }
        assert_eq!(tag(&link), "mine");
        assert_eq!(fs::read(&file).unwrap(), b"mine");
        assert_eq!(fs::read(foreign.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(generation_of(Path::new(".out.d/12"), "out"), Some(12));
        for bad in ["/x/.out.d/1", ".out.d/1/x", ".other.d/1", ".out.d/-1", ".out.d/", "../.out.d/1"] {
            assert_eq!(generation_of(Path::new(bad), "out"), None, "{bad}");
        }
    }

    #[test]
    fn a_second_export_into_the_same_out_waits_its_turn() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let first = Swap::prepare(&out).unwrap();
        assert!(matches!(Swap::prepare(&out), Err(Error::Invalid(_))));
        write(first.dir(), "v1");
        first.commit().unwrap();
        export(&out, "v2");
        assert_eq!(tag(&out), "v2");
    }
}
