//! File names of a consistent-snapshot repository: `N.root.json`, `V.ROLE.json` (the role
//! name percent-encoded), `timestamp.json`, and targets at `DIR/<hash>.<name>`.

use crate::names::{RoleName, Sha256, TargetPath};

/// Name of the timestamp file, the one unversioned metadata file.
pub const TIMESTAMP_FILE: &str = "timestamp.json";

/// `N.root.json`.
pub fn root_file(version: u64) -> String {
    format!("{version}.root.json")
}

/// `V.ROLE.json` for snapshot and targets roles (top-level or delegated), with the role name
/// percent-encoded as python-tuf encodes it ([`RoleName::encoded`]).
pub fn versioned_file(role: &RoleName, version: u64) -> String {
    format!("{version}.{}.json", role.encoded())
}

/// `ROLE.json`, the name without a version (repositories without consistent snapshots).
pub fn unversioned_file(role: &RoleName) -> String {
    format!("{}.json", role.encoded())
}

/// Metadata file name of `role` at `version`: the timestamp is never versioned.
pub fn metadata_file(role: &RoleName, version: u64) -> String {
    if role.as_str() == "timestamp" { TIMESTAMP_FILE.to_owned() } else { versioned_file(role, version) }
}

/// Consistent-snapshot name of a target: `DIR/<sha256>.<name>` (no `DIR/` at top level).
pub fn target_file(path: &TargetPath, sha256: &Sha256) -> String {
    target_file_hex(path, &sha256.to_string())
}

/// Consistent-snapshot name of a target under any of its hashes, given as lowercase hex.
pub fn target_file_hex(path: &TargetPath, hash: &str) -> String {
    match path.dir() {
        "" => format!("{hash}.{}", path.file_name()),
        dir => format!("{dir}/{hash}.{}", path.file_name()),
    }
}
