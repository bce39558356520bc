//! Update plans: what a server of one model, with an inventory of installed versions, should
//! install from one release. The server (`POST /v1/catalog/plan`, over its catalog) and
//! `fwget plan` (over signed metadata) choose the release and gather its components each their
//! own way, then both call [`plan`]: one loop decides every action and adds up the totals, and
//! one set of types gives both the same JSON.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Action, Version};

/// The types a plan's fields have: the server's validated names, or a client's strings. Each
/// serializes as a JSON string either way.
pub trait PlanTypes {
    type Model: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    type Release: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    type Date: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// A component name: inventories are keyed by it and items sorted by it.
    type Component: Clone + std::fmt::Debug + Ord + Hash + Serialize + DeserializeOwned;
    type Kind: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    /// A blob id: two components with the same blob are one download.
    type Blob: Clone + std::fmt::Debug + Eq + Hash + Serialize + DeserializeOwned;
    type Target: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
    type Sha256: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned;
}

/// What the release offers for one component of the model.
#[derive(Clone, Debug)]
pub struct Offer<T: PlanTypes> {
    pub component: T::Component,
    pub kind: T::Kind,
    pub version: Version,
    pub blob: T::Blob,
    pub target: T::Target,
    pub sha256: T::Sha256,
    pub length: u64,
}

/// One component of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct PlanItem<T: PlanTypes> {
    pub component: T::Component,
    pub kind: T::Kind,
    pub action: Action,
    /// Installed version, if any.
    pub from: Option<Version>,
    /// The release's version.
    pub to: Version,
    pub blob: T::Blob,
    pub target: T::Target,
    pub sha256: T::Sha256,
    /// File size in bytes.
    pub length: u64,
}

/// Counts and sizes over a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTotals {
    pub install: usize,
    pub upgrade: usize,
    pub up_to_date: usize,
    pub installed_newer: usize,
    /// Files to download: distinct blobs among installs and upgrades.
    pub download_files: usize,
    /// Bytes to download: the sum of those blobs' lengths, each blob counted once.
    pub download_bytes: u64,
}

/// An update plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct Plan<T: PlanTypes> {
    pub model: T::Model,
    pub release: T::Release,
    pub release_name: String,
    pub release_date: T::Date,
    /// Every component of the release for the model, sorted by name.
    pub items: Vec<PlanItem<T>>,
    /// Inventory entries the release has no component for (sorted); left alone.
    pub not_in_release: Vec<T::Component>,
    pub totals: PlanTotals,
}

/// The release a plan is made against.
#[derive(Clone, Debug)]
pub struct ReleaseFacts<T: PlanTypes> {
    pub id: T::Release,
    pub name: String,
    pub date: T::Date,
}

/// The plan for `model` with `inventory` against `release`, whose components for the model
/// are `offers` (in any order; the plan sorts them by name).
pub fn plan<T: PlanTypes>(
    model: T::Model,
    release: ReleaseFacts<T>,
    mut offers: Vec<Offer<T>>,
    inventory: &BTreeMap<T::Component, Version>,
) -> Plan<T> {
    offers.sort_by(|a, b| a.component.cmp(&b.component));
    let mut totals = PlanTotals::default();
    let mut downloads = HashSet::new();
    let mut items = Vec::with_capacity(offers.len());
    for o in offers {
        let from = inventory.get(&o.component).cloned();
        let action = Action::decide(from.as_ref(), &o.version);
        match action {
            Action::Install => totals.install += 1,
            Action::Upgrade => totals.upgrade += 1,
            Action::UpToDate => totals.up_to_date += 1,
            Action::InstalledNewer => totals.installed_newer += 1,
        }
        // A file shared by two components is fetched once.
        if action.downloads() && downloads.insert(o.blob.clone()) {
            totals.download_files += 1;
            totals.download_bytes = totals.download_bytes.saturating_add(o.length);
        }
        items.push(PlanItem {
            component: o.component,
            kind: o.kind,
            action,
            from,
            to: o.version,
            blob: o.blob,
            target: o.target,
            sha256: o.sha256,
            length: o.length,
        });
    }
    let in_release: HashSet<&T::Component> = items.iter().map(|i| &i.component).collect();
    let not_in_release = inventory.keys().filter(|name| !in_release.contains(name)).cloned().collect();
    Plan {
        model,
        release: release.id,
        release_name: release.name,
        release_date: release.date,
        items,
        not_in_release,
        totals,
    }
}

/// Plain strings for every name: what a client reads from signed metadata (`fwget`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strings;

impl PlanTypes for Strings {
    type Model = String;
    type Release = String;
    type Date = String;
    type Component = String;
    type Kind = String;
    type Blob = String;
    type Target = String;
    type Sha256 = String;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, version: &str, blob: &str, length: u64) -> Offer<Strings> {
        Offer {
            component: name.into(),
            kind: "firmware".into(),
            version: Version::new(version).unwrap(),
            blob: blob.into(),
            target: format!("r/{name}.bin"),
            sha256: "00".into(),
            length,
        }
    }

    #[test]
    fn actions_totals_and_a_shared_blob_counted_once() {
        let offers = vec![
            offer("nic", "2.0", "b1", 10),
            offer("bios", "1.10", "b2", 100),
            offer("ilo", "3.0", "b1", 10),
            offer("raid", "1.0", "b3", 7),
            offer("drive", "5", "b4", 1),
        ];
        let v = |s: &str| Version::new(s).unwrap();
        let inventory: BTreeMap<String, Version> = [
            ("bios".to_owned(), v("1.9")),
            ("raid".to_owned(), v("1.0")),
            ("drive".to_owned(), v("6")),
            ("gone".to_owned(), v("1")),
        ]
        .into_iter()
        .collect();
        let facts = ReleaseFacts::<Strings> { id: "2026.01.0".into(), name: "SPP".into(), date: "2026-01-01".into() };
        let p = plan("DL380".to_owned(), facts, offers, &inventory);
        let names: Vec<&str> = p.items.iter().map(|i| i.component.as_str()).collect();
        assert_eq!(names, ["bios", "drive", "ilo", "nic", "raid"]);
        let actions: Vec<Action> = p.items.iter().map(|i| i.action).collect();
        use Action::*;
        assert_eq!(actions, [Upgrade, InstalledNewer, Install, Install, UpToDate]);
        let want = PlanTotals {
            install: 2,
            upgrade: 1,
            up_to_date: 1,
            installed_newer: 1,
            download_files: 2,
            download_bytes: 110,
        };
        assert_eq!(p.totals, want);
        assert_eq!(p.not_in_release, ["gone"]);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["items"][0]["from"], "1.9");
        let back: Plan<Strings> = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
