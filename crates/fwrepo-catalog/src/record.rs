//! The records of the catalog: releases, components, and the summaries queries return.

use fwrepo_store::Digest;
use fwrepo_version::Version;
use serde::{Deserialize, Serialize};

use crate::names::{ComponentName, Date, Kind, ModelName, ReleaseId, Sha256, TargetPath};

/// An SPP release: a dated bundle of components.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Release id, such as `2014.02.0`.
    pub id: ReleaseId,
    /// Display name, such as `Service Pack for ProLiant 2014.02.0`.
    pub name: String,
    /// Release date; releases of a model are ordered by it first.
    pub date: Date,
    pub components: Vec<Component>,
}

impl Release {
    /// The components that apply to `model`, in manifest order.
    pub fn components_for<'a>(&'a self, model: &'a ModelName) -> impl Iterator<Item = &'a Component> + 'a {
        self.components.iter().filter(move |c| c.applies_to(model))
    }
}

/// One component package of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Name as inventories report it, such as `iLO 4 Firmware`.
    pub name: ComponentName,
    pub kind: Kind,
    pub version: Version,
    /// Where the file is published (the TUF target path).
    pub target: TargetPath,
    /// BLAKE3 id of the file in the store.
    pub blob: Digest,
    /// File size in bytes.
    pub length: u64,
    /// SHA-256 of the file, as signed metadata lists it.
    pub sha256: Sha256,
    /// Server models the component applies to.
    pub models: Vec<ModelName>,
}

impl Component {
    pub fn applies_to(&self, model: &ModelName) -> bool {
        self.models.contains(model)
    }

    /// Whether `other` describes the same file under the same facts (models aside), which is
    /// what lets two releases publish one target path.
    pub(crate) fn same_file(&self, other: &Component) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.version.as_str() == other.version.as_str()
            && self.target == other.target
            && self.blob == other.blob
            && self.length == other.length
            && self.sha256 == other.sha256
    }
}

/// A release as seen from one server model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSummary {
    pub id: ReleaseId,
    pub name: String,
    pub date: Date,
    /// How many of the release's components apply to the model.
    pub components: usize,
}

/// What a target path names, merged over every release that publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    pub target: TargetPath,
    pub name: ComponentName,
    pub kind: Kind,
    pub version: Version,
    pub blob: Digest,
    pub length: u64,
    pub sha256: Sha256,
    /// Models over all releases that publish the path, sorted.
    pub models: Vec<ModelName>,
    /// Releases that publish the path, oldest first (in id order).
    pub releases: Vec<ReleaseId>,
}
