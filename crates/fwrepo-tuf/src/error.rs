//! The crate's error type: one variant per way metadata, keys or targets can be refused,
//! each naming the role, key id, path or digest it is about.

use chrono::{DateTime, Utc};

use crate::names::{KeyId, RoleName};

/// Errors of signed-metadata handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("canonical JSON cannot encode {what}")]
    CanonicalJson { what: String },
    #[error("{role}: malformed metadata: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{role}: expected _type {expected:?}, found {found:?}")]
    WrongType { role: String, expected: &'static str, found: String },
    #[error("{role}: spec_version {found:?} is not a 1.x version")]
    UnsupportedSpecVersion { role: String, found: String },
    #[error("invalid target path {path:?}: {reason}")]
    InvalidTargetPath { path: String, reason: &'static str },
    #[error("invalid role name {name:?}: {reason}")]
    InvalidRoleName { name: String, reason: &'static str },
    #[error("invalid key id {input:?}: expected 64 lowercase hex digits")]
    InvalidKeyId { input: String },
    #[error("invalid sha256 digest {input:?}: expected 64 lowercase hex digits")]
    InvalidDigest { input: String },
    #[error("key {key_id}: {reason}")]
    InvalidKey { key_id: String, reason: String },
    #[error("key file: {reason}")]
    KeyFile { reason: String },
    #[error("no randomness from the operating system: {reason}")]
    Randomness { reason: String },
    #[error("{role}: {count} signatures, more than the limit of {max}")]
    TooManySignatures { role: RoleName, count: usize, max: usize },
    #[error("{role}: {valid} valid signatures from its keys, threshold is {threshold}")]
    ThresholdNotMet { role: RoleName, valid: usize, threshold: u32 },
    #[error("{role}: more than one signature from key {key_id}")]
    DuplicateSignature { role: RoleName, key_id: KeyId },
    #[error("{role}: threshold must be at least 1")]
    ZeroThreshold { role: RoleName },
    #[error("{role}: key {key_id} is not one of the role's keys")]
    KeyNotInRole { role: RoleName, key_id: KeyId },
    #[error("{role}: role is not defined by {delegator}")]
    UnknownRole { role: RoleName, delegator: RoleName },
    #[error("{role}: expired at {expires}, now is {now}")]
    Expired { role: RoleName, expires: DateTime<Utc>, now: DateTime<Utc> },
    #[error("{role}: version {new} is lower than the trusted version {trusted}")]
    Rollback { role: RoleName, trusted: u64, new: u64 },
    #[error("{role}: version {found}, expected {expected}")]
    VersionMismatch { role: RoleName, expected: u64, found: u64 },
    #[error("{role}: {what} does not match what {referrer} recorded for it")]
    MetaMismatch { role: RoleName, referrer: RoleName, what: &'static str },
    #[error("{role}: not listed in {referrer}")]
    NotListed { role: RoleName, referrer: RoleName },
    #[error("{role}: file is {length} bytes, more than the limit of {max}")]
    TooLarge { role: RoleName, length: u64, max: u64 },
    #[error("root chain longer than {max} versions")]
    RootChainTooLong { max: u64 },
    #[error("{what} must be loaded before {role}")]
    OutOfOrder { role: RoleName, what: &'static str },
    #[error("target {path}: {reason}")]
    TargetMismatch { path: String, reason: String },
    #[error("target {path}: more than the {expected} signed bytes received")]
    TargetTooLong { path: String, expected: u64 },
    #[error("target {path} already exists with different content (sha256 {existing})")]
    TargetConflict { path: String, existing: String },
    #[error("delegation graph visits more than {max} roles")]
    TooManyDelegations { max: usize },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
