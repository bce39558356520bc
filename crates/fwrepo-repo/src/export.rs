//! Static export: a directory any plain HTTP server or CDN can host, laid out as a TUF
//! consistent-snapshot repository.
//!
//! ```text
//! OUT/metadata/N.root.json        every root version (clients walk the chain)
//! OUT/metadata/V.targets.json     current targets, bins, snapshot (consistent names)
//! OUT/metadata/timestamp.json
//! OUT/targets/DIR/<sha256>.<name> target bytes from the store
//! ```
//!
//! The tree is written into a temporary sibling of `OUT`, synced, and renamed into place, so
//! a reader of `OUT` sees the previous export or the new one, never a half-written one.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

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
    /// an earlier export (it has `metadata/`) or empty; it is replaced whole.
    pub fn export(&self, out: &Path) -> Result<ExportReport> {
        let tuf = self.load()?;
        if out.exists() {
            let empty = fs::read_dir(out).at(out)?.next().is_none();
            if !empty && !out.join("metadata").is_dir() {
                return Err(Error::Invalid(format!(
                    "{} exists and is not an fwrepo export (no metadata/); refusing to replace it",
                    out.display()
                )));
            }
        }
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Invalid(format!("{}: export needs a directory name", out.display())))?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).at(&parent)?;
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let result = self.write_tree(&tuf, &tmp);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        if out.exists() {
            fs::rename(out, &old).at(out)?;
        }
        fs::rename(&tmp, out).at(out)?;
        sync_dir(&parent)?;
        let _ = fs::remove_dir_all(&old);
        Ok(report)
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
        }
        sync_dir(dir)?;
        Ok(report)
    }
}
