//! The error type of the catalog.

use crate::names::{ComponentName, ModelName, ReleaseId, TargetPath};

/// Errors of catalog staging, queries and update plans.
///
/// Staging errors are raised before anything is added to the caller's batch, so a rejected
/// release leaves the batch exactly as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The index database failed.
    #[error(transparent)]
    Db(#[from] fwrepo_db::Error),
    /// An identifier, date or digest failed validation.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: &'static str },
    /// A component kind other than `firmware`, `driver` or `software`.
    #[error("unknown component kind {kind:?} (expected firmware, driver or software)")]
    UnknownKind { kind: String },
    /// A stored record could not be decoded.
    #[error("corrupt record {key:?} in {cf}: {reason}")]
    CorruptRecord { cf: &'static str, key: String, reason: String },
    /// A release with this id is already in the catalog (or earlier in the same staging call).
    #[error("release {release} is already in the catalog")]
    DuplicateRelease { release: ReleaseId },
    /// A release without components.
    #[error("release {release} has no components")]
    EmptyRelease { release: ReleaseId },
    /// A release whose display name is empty or has control characters.
    #[error("release {release} has an invalid name: {reason}")]
    InvalidReleaseName { release: ReleaseId, reason: &'static str },
    /// A component that applies to no server model.
    #[error("release {release}: component {component:?} lists no models")]
    NoModels { release: ReleaseId, component: ComponentName },
    /// A component that lists one model twice.
    #[error("release {release}: component {component:?} lists model {model:?} twice")]
    DuplicateModel { release: ReleaseId, component: ComponentName, model: ModelName },
    /// Two components of one release share a name for the same model, so an inventory (keyed
    /// by component name) could not tell them apart.
    #[error("release {release}: two components named {component:?} apply to model {model:?}")]
    DuplicateComponent { release: ReleaseId, component: ComponentName, model: ModelName },
    /// Two components of one release share a target path.
    #[error("release {release}: target path {target} is used by two components")]
    DuplicateTarget { release: ReleaseId, target: TargetPath },
    /// A target path already names different bytes or a different component in another
    /// release; one path must mean one file everywhere (signed metadata lists it once).
    #[error("release {release}: target path {target} already names a different component in release {existing}")]
    TargetConflict { release: ReleaseId, target: TargetPath, existing: ReleaseId },
    /// No release in the catalog applies to this model.
    #[error("unknown server model {model:?}")]
    UnknownModel { model: ModelName },
    /// No release with this id.
    #[error("unknown release {release}")]
    UnknownRelease { release: ReleaseId },
    /// The chosen release has no components for this model.
    #[error("release {release} has no components for model {model:?}")]
    ReleaseNotForModel { release: ReleaseId, model: ModelName },
    /// An update-plan request with more inventory entries than the catalog answers.
    #[error("inventory for model {model:?} has {entries} entries, more than {max}")]
    InventoryTooLarge { model: ModelName, entries: usize, max: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: &'static str) -> Error {
        // Cap what we echo back: values come from manifests and from HTTP requests.
        let value: String = value.chars().take(80).collect();
        Error::Invalid { what, value, reason }
    }
}
