//! The mirror's switch: upstream metadata files as served, and the catalog rebuilt from the
//! signed `custom` of the targets they list, staged together into the caller's batch.

use std::collections::BTreeMap;

use fwrepo_catalog::{Component, Release, ReleaseId};
use fwrepo_db::WriteBatch;
use fwrepo_tuf::{FwCustom, TargetFile, TargetPath};

use crate::{CF_METADATA, Error, FORMAT, Repo, Result};

/// The catalog releases that the signed targets `targets` describe: every target whose
/// `custom` is a firmware [`FwCustom`] with `release_info`, grouped by release id. Targets
/// without it (auth documents, files published by `publish_files`) are not firmware and are
/// skipped. Components keep target-path order.
pub fn releases_from_targets<'a>(
    targets: impl IntoIterator<Item = (&'a TargetPath, &'a TargetFile)>,
) -> Result<Vec<Release>> {
    let mut out: BTreeMap<String, Release> = BTreeMap::new();
    for (path, t) in targets {
        let Some(custom) = t.custom.as_ref() else { continue };
        let Ok(fw) = serde_json::from_value::<FwCustom>(custom.clone()) else { continue };
        let Some(info) = &fw.release_info else { continue };
        let bad = |field: &str, e: &dyn std::fmt::Display| Error::CorruptMetadata {
            reason: format!("target {path}: custom.{field}: {e}"),
        };
        let sha = t.hashes.get("sha256").ok_or_else(|| bad("hashes", &"no sha256"))?;
        let component = Component {
            name: fw.component.name.parse().map_err(|e| bad("component.name", &e))?,
            kind: fw.component.kind.parse().map_err(|e| bad("component.kind", &e))?,
            version: fwrepo_catalog::Version::new(fw.component.version.clone())
                .map_err(|e| bad("component.version", &e))?,
            target: fwrepo_catalog::TargetPath::new(path.as_str())?,
            blob: fw.blake3.parse().map_err(|e| bad("blake3", &e))?,
            length: t.length,
            sha256: sha.parse().map_err(|e| bad("sha256", &e))?,
            models: fw
                .component
                .models
                .iter()
                .map(|m| m.parse())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad("component.models", &e))?,
        };
        let id: ReleaseId = fw.release.parse().map_err(|e| bad("release", &e))?;
        let release = match out.get_mut(id.as_str()) {
            Some(r) => r,
            None => {
                let date = info.date.parse().map_err(|e| bad("release_info.date", &e))?;
                let r = Release { id: id.clone(), name: info.name.clone(), date, components: Vec::new() };
                out.entry(id.as_str().to_owned()).or_insert(r)
            }
        };
        if release.name != info.name || release.date.to_string() != info.date {
            return Err(bad("release_info", &format!("differs between the targets of release {id}")));
        }
        release.components.push(component);
    }
    Ok(out.into_values().collect())
}

impl Repo {
    /// Stages the mirror's switch into `batch`: the metadata `files` (consistent-snapshot
    /// name, bytes exactly as served) and the catalog records of the releases `targets`
    /// describe that the catalog does not hold yet. Nothing else: the caller adds its own
    /// state and commits the batch once every blob the files name is complete. Returns the
    /// ids of the releases staged.
    pub fn stage_mirror_switch<'a>(
        &self,
        files: &[(String, Vec<u8>)],
        targets: impl IntoIterator<Item = (&'a TargetPath, &'a TargetFile)>,
        batch: &mut WriteBatch,
    ) -> Result<Vec<String>> {
        let mut new = Vec::new();
        for r in releases_from_targets(targets)? {
            if self.catalog.release(&r.id)?.is_none() {
                new.push(r);
            }
        }
        let cf = self.store.db().require_cf(CF_METADATA)?;
        self.catalog.stage_releases(&new, batch)?;
        for (name, bytes) in files {
            batch.put_cf(cf, name.as_bytes(), fwrepo_db::encode(FORMAT, bytes));
        }
        Ok(new.iter().map(|r| r.id.to_string()).collect())
    }
}
