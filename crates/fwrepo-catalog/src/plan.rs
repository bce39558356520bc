//! Update plans: what a server of a given model, with a given inventory, should install from a
//! release. The request and response are the JSON bodies of `POST /v1/catalog/plan`.

use std::collections::{BTreeMap, HashSet};

use fwrepo_store::Digest;
use fwrepo_version::Version;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::names::{ComponentName, Date, Kind, ModelName, ReleaseId, Sha256, TargetPath};

/// Most inventory entries a plan request may carry. A server has tens of components; the cap
/// bounds the work one request can cause.
pub const MAX_INVENTORY: usize = 4096;

/// A request for an update plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The server model.
    pub model: ModelName,
    /// Installed components: name → installed version. Names match component names exactly.
    #[serde(default)]
    pub inventory: BTreeMap<ComponentName, Version>,
    /// The release to plan against; the model's newest release when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseId>,
}

pub use fwrepo_version::Action;

/// One component of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanItem {
    pub component: ComponentName,
    pub kind: Kind,
    pub action: Action,
    /// Installed version, if any.
    pub from: Option<Version>,
    /// The release's version.
    pub to: Version,
    pub blob: Digest,
    pub target: TargetPath,
    pub sha256: Sha256,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub model: ModelName,
    pub release: ReleaseId,
    pub release_name: String,
    pub release_date: Date,
    /// Every component of the release for the model, sorted by name.
    pub items: Vec<PlanItem>,
    /// Inventory entries the release has no component for (sorted); left alone.
    pub not_in_release: Vec<ComponentName>,
    pub totals: PlanTotals,
}

impl Catalog {
    /// The update plan for `request`.
    ///
    /// Errors: [`Error::UnknownModel`] when no release applies to the model,
    /// [`Error::UnknownRelease`] for a chosen release that does not exist,
    /// [`Error::ReleaseNotForModel`] for a chosen release without components for the model.
    pub fn plan(&self, request: &PlanRequest) -> Result<Plan> {
        let model = &request.model;
        if request.inventory.len() > MAX_INVENTORY {
            return Err(Error::InventoryTooLarge {
                model: model.clone(),
                entries: request.inventory.len(),
                max: MAX_INVENTORY,
            });
        }
        if !self.has_model(model)? {
            return Err(Error::UnknownModel { model: model.clone() });
        }
        let id = match &request.release {
            Some(id) => id.clone(),
            None => {
                let newest = self.releases_for_model(model)?.into_iter().next();
                newest.ok_or_else(|| Error::UnknownModel { model: model.clone() })?.id
            }
        };
        let release = self.release(&id)?.ok_or_else(|| Error::UnknownRelease { release: id.clone() })?;
        let mut components: Vec<_> = release.components_for(model).collect();
        if components.is_empty() {
            return Err(Error::ReleaseNotForModel { release: id, model: model.clone() });
        }
        components.sort_by(|a, b| a.name.cmp(&b.name));

        let mut totals = PlanTotals::default();
        let mut downloads = HashSet::new();
        let mut items = Vec::with_capacity(components.len());
        for c in components {
            let from = request.inventory.get(&c.name).cloned();
            let action = Action::decide(from.as_ref(), &c.version);
            match action {
                Action::Install => totals.install += 1,
                Action::Upgrade => totals.upgrade += 1,
                Action::UpToDate => totals.up_to_date += 1,
                Action::InstalledNewer => totals.installed_newer += 1,
            }
            // A file shared by two components is fetched once.
            if action.downloads() && downloads.insert(c.blob) {
                totals.download_files += 1;
                totals.download_bytes = totals.download_bytes.saturating_add(c.length);
            }
            items.push(PlanItem {
                component: c.name.clone(),
                kind: c.kind,
                action,
                from,
                to: c.version.clone(),
                blob: c.blob,
                target: c.target.clone(),
                sha256: c.sha256,
                length: c.length,
            });
        }
        let in_release: HashSet<&ComponentName> = items.iter().map(|i| &i.component).collect();
        let not_in_release = request.inventory.keys().filter(|name| !in_release.contains(name)).cloned().collect();
        Ok(Plan {
            model: model.clone(),
            release: release.id,
            release_name: release.name,
            release_date: release.date,
            items,
            not_in_release,
            totals,
        })
    }
}
