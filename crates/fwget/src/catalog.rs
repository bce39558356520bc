//! The catalog rebuilt from signed targets alone (each firmware target's `custom` carries its
//! release, release facts and component), and update plans computed from it with the
//! server's rules: the same version ordering, the same choice of newest release, and the same
//! plan computation and JSON (`fwrepo_version::plan`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use fwrepo_tuf::{FwCustom, TargetInfo};
use fwrepo_version::Version;
use fwrepo_version::plan::{Offer, ReleaseFacts};
use serde::Serialize;

pub use fwrepo_version::Action;
pub use fwrepo_version::plan::PlanTotals;

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
        let comps: Vec<usize> = release.entries.iter().copied().filter(|&i| self.applies(i, model)).collect();
        if comps.is_empty() {
            return Err(Error::Usage(format!("release {} has no component for model {model:?}", release.id)));
        }
        let offers = comps
            .into_iter()
            .map(|i| {
                let e = &self.entries[i];
                Offer {
                    component: e.custom.component.name.clone(),
                    kind: e.custom.component.kind.clone(),
                    version: e.version.clone(),
                    blob: e.custom.blake3.clone(),
                    target: e.info.path.to_string(),
                    sha256: e.info.file.sha256().map(|s| s.to_string()).unwrap_or_default(),
                    length: e.info.file.length,
                }
            })
            .collect();
        let facts = ReleaseFacts { id: release.id.clone(), name: release.name.clone(), date: release.date.clone() };
        Ok(fwrepo_version::plan::plan(model.to_owned(), facts, offers, inventory))
    }

    /// The entry a plan item names (by its target path).
    pub fn entry_of(&self, item: &PlanItem) -> Option<&Entry> {
        self.entries.iter().find(|e| e.info.path.as_str() == item.target)
    }
}

/// The client's names in a plan: the strings signed metadata carries.
pub use fwrepo_version::plan::Strings;

/// One component of a plan, in the JSON shape of `POST /v1/catalog/plan`.
pub type PlanItem = fwrepo_version::plan::PlanItem<Strings>;

/// An update plan, in the JSON shape of `POST /v1/catalog/plan`.
pub type Plan = fwrepo_version::plan::Plan<Strings>;
