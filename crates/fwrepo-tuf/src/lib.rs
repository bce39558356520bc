//! TUF 1.0 signed metadata for fwrepo: pure bytes in, verified structs out (no filesystem,
//! no network, no clock — callers pass "now").
//!
//! - [`cjson`]: OLPC canonical JSON, the bytes signatures cover.
//! - [`names`]: validated [`TargetPath`], [`RoleName`], [`KeyId`], [`Sha256`].
//! - [`keys`]: key objects, ed25519 [`SigningKey`] and its key-file format.
//! - [`metadata`]: root/targets/snapshot/timestamp and the [`Signed`] envelope.
//! - [`layout`]: consistent-snapshot file names.
//! - [`pattern`]: delegation path patterns, matched as python-tuf matches them.
//! - [`builder`]: the repository side ([`Repository`]).
//! - [`updater`]: the client workflow ([`Updater`]), shared by client and mirror.

pub mod builder;
pub mod cjson;
mod error;
pub mod keys;
pub mod layout;
pub mod metadata;
pub mod names;
pub mod pattern;
pub mod updater;

pub use builder::{Config, Expiries, MetadataFile, Repository, RoleSpec, RootSpec};
pub use error::{Error, Result};
pub use keys::{PublicKey, Signature, SigningKey};
pub use metadata::{
    ChunkerSizes, Component, DelegatedRole, Delegations, FwCustom, MetaFile, Metadata, ReleaseInfo, Root, Signed,
    Snapshot, TargetFile, Targets, Timestamp,
};
pub use names::{KeyId, RoleName, Sha256, TargetPath};
pub use updater::{FileRequest, Limits, Lookup, TargetInfo, TargetVerifier, Updater};
