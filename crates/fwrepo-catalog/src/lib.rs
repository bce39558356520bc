//! The model → release → component catalog of an fwrepo data dir, and update plans.
//!
//! An SPP release ([`Release`]) is a dated set of components ([`Component`]), each applying to
//! a list of server models. The catalog keeps releases in RocksDB column families of the data
//! dir's shared index ([`COLUMN_FAMILIES`]) and answers: which models exist, which releases
//! apply to a model (newest first), what a release holds for a model, which models a blob
//! applies to (the download gate's entitlement check), what a target path is, and what a
//! server with a given inventory should install ([`Catalog::plan`]).
//!
//! Writes are *staged*: [`Catalog::stage_release`] validates a release against the catalog
//! and adds its records to the caller's [`fwrepo_db::WriteBatch`], so `fwrepo publish` commits
//! the catalog, the store's records and anything else in one atomic RocksDB write. Staging
//! reads the database to find duplicates, which is sound because a data dir has one writer.
//!
//! # Column families and keys
//!
//! Every value is [`fwrepo_db::encode`]d with format marker [`FORMAT`]; JSON bodies use the
//! serde forms of this crate's types. Strings in keys never contain NUL (the newtypes reject
//! control characters), so NUL separates key parts unambiguously.
//!
//! | column family | key | value |
//! |---|---|---|
//! | [`CF_RELEASES`] | release id | [`Release`] as JSON |
//! | [`CF_MODELS`] | model name | empty |
//! | [`CF_MODEL_RELEASES`] | model `\0` release id | [`ReleaseSummary`] (for that model) as JSON |
//! | [`CF_BLOB_MODELS`] | blob digest (32 bytes) ‖ model name | empty |
//! | [`CF_TARGETS`] | target path `\0` release id | [`Component`] as JSON |
//!
//! Indexes are one key per fact rather than read-modify-write lists, so two releases that
//! share a blob or a target path add keys and never overwrite each other's entries.
//!
//! A read-only instance opened before the writer created these column families sees an empty
//! catalog.

mod catalog;
mod error;
mod names;
mod plan;
mod record;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use fwrepo_store::Digest;
pub use names::{
    ComponentName, Date, Kind, MAX_NAME_LEN, MAX_RELEASE_ID_LEN, MAX_TARGET_PATH_LEN, ModelName, ReleaseId, Sha256,
    TargetPath,
};
pub use plan::{Action, MAX_INVENTORY, Plan, PlanItem, PlanRequest, PlanTotals};
pub use record::{Component, Release, ReleaseSummary, TargetEntry};
// The ordering lives in its own crate so clients plan with exactly the server's rule.
pub use fwrepo_version::{MAX_VERSION_LEN, Version};

/// Release id → release record.
pub const CF_RELEASES: &str = "catalog.releases";
/// Model name → nothing: the set of models with at least one release.
pub const CF_MODELS: &str = "catalog.models";
/// Model, release id → summary of the release for that model.
pub const CF_MODEL_RELEASES: &str = "catalog.model_releases";
/// Blob digest, model → nothing: the models a blob applies to, over all releases.
pub const CF_BLOB_MODELS: &str = "catalog.blob_models";
/// Target path, release id → the component published under that path by that release.
pub const CF_TARGETS: &str = "catalog.targets";

/// The column families of the catalog; pass them to [`fwrepo_db::Db::open`] (or the store's
/// `OpenOptions::extra_column_families`).
pub const COLUMN_FAMILIES: &[&str] = &[CF_RELEASES, CF_MODELS, CF_MODEL_RELEASES, CF_BLOB_MODELS, CF_TARGETS];

/// Format marker of every value this crate writes.
pub const FORMAT: u8 = 1;
