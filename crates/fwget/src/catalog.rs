//! The catalog rebuilt from signed targets alone (each firmware target's `custom` carries its
//! release, release facts and component), and update plans computed from it with the
//! server's rules: the same version ordering, the same choice of newest release, the same JSON.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use fwrepo_tuf::{FwCustom, TargetInfo};
use fwrepo_version::Version;
use serde::Serialize;

pub use fwrepo_version::Action;

use crate::error::{Error, Result};

/// One signed firmware target with its parsed `custom`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub info: TargetInfo,
    pub custom: FwCustom,
    pub version: Version,
}

/// A release as signed metadata describes it.
#[derive(Clone, Debug, Serialize)]
pub struct Release {
    pub id: String,
    pub name: String,
    pub date: String,
    /// Indexes into [`Catalog::entries`].
    #[serde(skip)]
    pub entries: Vec<usize>,
}

/// Releases and models from signed metadata.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
    pub releases: BTreeMap<String, Release>,
}

/// Release ids order as versions, ties broken by the raw text (as the server's `ReleaseId`).
fn cmp_release_id(a: &str, b: &str) -> Ordering {
    fwrepo_version::compare(a, b).then_with(|| a.cmp(b))
}

impl Catalog {
    /// The catalog of `targets`; targets without firmware `custom` are skipped.
    pub fn from_targets(targets: Vec<TargetInfo>) -> Catalog {
        let mut cat = Catalog::default();
        for info in targets {
            let Some(custom) = info.file.custom.clone().and_then(|c| serde_json::from_value::<FwCustom>(c).ok()) else {
                continue;
            };
            let Ok(version) = Version::new(custom.component.version.clone()) else { continue };
            let i = cat.entries.len();
            let (name, date) = custom
                .release_info
                .as_ref()
                .map_or((String::new(), String::new()), |r| (r.name.clone(), r.date.clone()));
            cat.releases
                .entry(custom.release.clone())
                .or_insert_with(|| Release { id: custom.release.clone(), name, date, entries: Vec::new() })
                .entries
                .push(i);
            cat.entries.push(Entry { info, custom, version });
        }
        cat
    }

    fn applies(&self, i: usize, model: &str) -> bool {
        self.entries[i].custom.component.models.iter().any(|m| m == model)
    }

    /// Every model any signed component names, sorted.
    pub fn models(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.entries.iter().flat_map(|e| e.custom.component.models.iter()).collect();
        set.into_iter().cloned().collect()
    }

    /// The releases for `model`, newest first: by date, then by id as a version.
    pub fn releases_for(&self, model: &str) -> Vec<&Release> {
        let mut out: Vec<&Release> =
            self.releases.values().filter(|r| r.entries.iter().any(|&i| self.applies(i, model))).collect();
        out.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| cmp_release_id(&b.id, &a.id)));
        out
    }

    /// The plan for `model` with `inventory` against `release` (the newest when `None`).
    pub fn plan(&self, model: &str, inventory: &BTreeMap<String, Version>, release: Option<&str>) -> Result<Plan> {
        let releases = self.releases_for(model);
        if releases.is_empty() {
            return Err(Error::Usage(format!("no signed release applies to model {model:?}")));
        }
        let release = match release {
            None => releases[0],
            Some(id) => self.releases.get(id).ok_or_else(|| Error::Usage(format!("no signed release {id:?}")))?,
        };
        let mut comps: Vec<usize> = release.entries.iter().copied().filter(|&i| self.applies(i, model)).collect();
        if comps.is_empty() {
            return Err(Error::Usage(format!("release {} has no component for model {model:?}", release.id)));
        }
        comps.sort_by(|&a, &b| self.entries[a].custom.component.name.cmp(&self.entries[b].custom.component.name));
        let mut totals = PlanTotals::default();
        let mut downloads = HashSet::new();
        let mut items = Vec::new();
        for i in comps {
            let e = &self.entries[i];
            let from = inventory.get(&e.custom.component.name).cloned();
            let action = Action::decide(from.as_ref(), &e.version);
            match action {
                Action::Install => totals.install += 1,
                Action::Upgrade => totals.upgrade += 1,
                Action::UpToDate => totals.up_to_date += 1,
                Action::InstalledNewer => totals.installed_newer += 1,
            }
            if action.downloads() && downloads.insert(e.custom.blake3.clone()) {
                totals.download_files += 1;
                totals.download_bytes = totals.download_bytes.saturating_add(e.info.file.length);
            }
            items.push(PlanItem {
                component: e.custom.component.name.clone(),
                kind: e.custom.component.kind.clone(),
                action,
                from,
                to: e.version.clone(),
                blob: e.custom.blake3.clone(),
                target: e.info.path.to_string(),
                sha256: e.info.file.sha256().map(|s| s.to_string()).unwrap_or_default(),
                length: e.info.file.length,
                entry: i,
            });
        }
        let names: HashSet<&str> = items.iter().map(|i| i.component.as_str()).collect();
        let not_in_release = inventory.keys().filter(|n| !names.contains(n.as_str())).cloned().collect();
        Ok(Plan {
            model: model.to_owned(),
            release: release.id.clone(),
            release_name: release.name.clone(),
            release_date: release.date.clone(),
            items,
            not_in_release,
            totals,
        })
    }
}

/// One component of a plan, in the JSON shape of `POST /v1/catalog/plan`.
#[derive(Clone, Debug, Serialize)]
pub struct PlanItem {
    pub component: String,
    pub kind: String,
    pub action: Action,
    pub from: Option<Version>,
    pub to: Version,
    pub blob: String,
    pub target: String,
    pub sha256: String,
    pub length: u64,
    #[serde(skip)]
    pub entry: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanTotals {
    pub install: usize,
    pub upgrade: usize,
    pub up_to_date: usize,
    pub installed_newer: usize,
    pub download_files: usize,
    pub download_bytes: u64,
}

/// An update plan, in the JSON shape of `POST /v1/catalog/plan`.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub release: String,
    pub release_name: String,
    pub release_date: String,
    pub items: Vec<PlanItem>,
    pub not_in_release: Vec<String>,
    pub totals: PlanTotals,
}
