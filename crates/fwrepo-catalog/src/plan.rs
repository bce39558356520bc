//! Update plans: what a server of a given model, with a given inventory, should install from a
//! release. The request and response are the JSON bodies of `POST /v1/catalog/plan`.

use std::collections::BTreeMap;

use fwrepo_store::Digest;
use fwrepo_version::Version;
use fwrepo_version::plan::{Offer, ReleaseFacts};
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
pub use fwrepo_version::plan::PlanTotals;

/// The catalog's names in a plan: validated newtypes, serialized as the strings they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogNames;

impl fwrepo_version::plan::PlanTypes for CatalogNames {
    type Model = ModelName;
    type Release = ReleaseId;
    type Date = Date;
    type Component = ComponentName;
    type Kind = Kind;
    type Blob = Digest;
    type Target = TargetPath;
    type Sha256 = Sha256;
}

/// One component of the plan.
pub type PlanItem = fwrepo_version::plan::PlanItem<CatalogNames>;

/// An update plan.
pub type Plan = fwrepo_version::plan::Plan<CatalogNames>;

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
        let components: Vec<_> = release.components_for(model).collect();
        if components.is_empty() {
            return Err(Error::ReleaseNotForModel { release: id, model: model.clone() });
        }
        let offers = components
            .into_iter()
            .map(|c| Offer {
                component: c.name.clone(),
                kind: c.kind,
                version: c.version.clone(),
                blob: c.blob,
                target: c.target.clone(),
                sha256: c.sha256,
                length: c.length,
            })
            .collect();
        let facts = ReleaseFacts { id: release.id, name: release.name, date: release.date };
        Ok(fwrepo_version::plan::plan(model.clone(), facts, offers, &request.inventory))
    }
}
