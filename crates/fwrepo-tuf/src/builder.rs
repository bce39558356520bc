//! Repository side: create version-1 metadata, add targets, re-sign timestamp and snapshot,
//! rotate root, and split large target sets into hashed-bin delegations.
//!
//! [`Repository`] holds the current signed files in memory. Every operation builds the new
//! state aside and swaps it in only when every file signed and checked, so a failed operation
//! (unknown key, threshold not met, conflicting target, size cap) leaves the repository as it
//! was. Operations return the files that changed, in the order to write them: delegated
//! targets, targets, snapshot, root, timestamp last — a reader never sees a timestamp that
//! points at files not yet written.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Map;

use crate::error::{Error, Result};
use crate::keys::{PublicKey, SigningKey};
use crate::layout;
use crate::metadata::{
    DelegatedRole, Delegations, MetaFile, Metadata, RoleKeys, Root, SPEC_VERSION, Signed, Snapshot, TargetFile,
    Targets, Timestamp,
};
use crate::names::{KeyId, RoleName, TargetPath};

/// python-tuf's default cap on a targets file (`targets_max_length`).
pub const PYTHON_TUF_TARGETS_MAX: usize = 5_000_000;
/// python-tuf's default cap on the snapshot file (`snapshot_max_length`).
pub const PYTHON_TUF_SNAPSHOT_MAX: usize = 2_000_000;
/// Longest hashed-bin prefix used: 16^4 bins. Beyond it the snapshot outgrows its own cap.
pub const MAX_BIN_PREFIX_LEN: usize = 4;

/// How long each role's metadata stays valid after signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiries {
    /// Root; default 365 days.
    pub root: TimeDelta,
    /// Targets and delegated targets; default 90 days.
    pub targets: TimeDelta,
    /// Snapshot; default 7 days.
    pub snapshot: TimeDelta,
    /// Timestamp; default 1 day.
    pub timestamp: TimeDelta,
}

impl Default for Expiries {
    fn default() -> Self {
        Self {
            root: TimeDelta::days(365),
            targets: TimeDelta::days(90),
            snapshot: TimeDelta::days(7),
            timestamp: TimeDelta::days(1),
        }
    }
}

/// Builder settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Validity periods.
    pub expiries: Expiries,
    /// Target sets whose targets file would exceed this many bytes move into hashed bins, and
    /// bins that would exceed it are split further. Smaller means clients re-fetch less
    /// metadata per publish, at the cost of more files.
    pub split_bytes: usize,
    /// Bins are named `PREFIX-<hex>`.
    pub bin_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Self { expiries: Expiries::default(), split_bytes: 1_000_000, bin_prefix: "bins".into() }
    }
}

/// Keys and threshold of one top-level role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    /// Public keys.
    pub keys: Vec<PublicKey>,
    /// Signatures needed.
    pub threshold: u32,
}

impl RoleSpec {
    /// A role with `keys` and `threshold`.
    pub fn new(keys: Vec<PublicKey>, threshold: u32) -> Self {
        Self { keys, threshold }
    }
}

/// Keys and thresholds of the four top-level roles: what a root says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSpec {
    /// Root role.
    pub root: RoleSpec,
    /// Timestamp role.
    pub timestamp: RoleSpec,
    /// Snapshot role.
    pub snapshot: RoleSpec,
    /// Targets role (its keys also sign the hashed bins).
    pub targets: RoleSpec,
}

impl RootSpec {
    /// The spec a root describes.
    pub fn from_root(root: &Root) -> Self {
        let spec = |name: &str| {
            let r = &root.roles[name];
            RoleSpec {
                keys: r.keyids.iter().filter_map(|id| root.keys.get(id).cloned()).collect(),
                threshold: r.threshold,
            }
        };
        Self { root: spec("root"), timestamp: spec("timestamp"), snapshot: spec("snapshot"), targets: spec("targets") }
    }

    /// A root with these keys.
    pub fn to_root(&self, version: u64, expires: DateTime<Utc>) -> Result<Root> {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (name, spec) in [
            ("root", &self.root),
            ("timestamp", &self.timestamp),
            ("snapshot", &self.snapshot),
            ("targets", &self.targets),
        ] {
            if spec.threshold == 0 {
                return Err(Error::ZeroThreshold { role: RoleName::new(name)? });
            }
            let mut keyids = Vec::new();
            for key in &spec.keys {
                key.validate()?;
                let id = key.key_id();
                if !keyids.contains(&id) {
                    keyids.push(id);
                }
                keys.insert(id, key.clone());
            }
            roles.insert(name.to_owned(), RoleKeys { keyids, threshold: spec.threshold, extra: Map::new() });
        }
        Ok(Root {
            type_: "root".into(),
            spec_version: SPEC_VERSION.into(),
            consistent_snapshot: true,
            version,
            expires,
            keys,
            roles,
            extra: Map::new(),
        })
    }
}

/// One metadata file to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataFile {
    /// Its role.
    pub role: RoleName,
    /// Its version.
    pub version: u64,
    /// Consistent-snapshot file name (`timestamp.json` for the timestamp).
    pub name: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

impl MetadataFile {
    fn of<T: Metadata>(role: &RoleName, file: &Signed<T>) -> Self {
        let version = file.signed.version();
        let name =
            if role.as_str() == "root" { layout::root_file(version) } else { layout::metadata_file(role, version) };
        Self { role: role.clone(), version, name, bytes: file.bytes().to_vec() }
    }
}

/// Signs `signed` as `role` with the keys of `ring` the role lists, then checks the threshold.
fn sign_as<T: Metadata>(
    role: &RoleName,
    signed: T,
    keys: &BTreeMap<KeyId, PublicKey>,
    role_keys: &RoleKeys,
    ring: &[&SigningKey],
) -> Result<Signed<T>> {
    let signers: Vec<&SigningKey> = ring.iter().copied().filter(|k| role_keys.keyids.contains(&k.key_id())).collect();
    let file = Signed::sign(signed, &signers)?;
    file.verify(role, keys, &role_keys.keyids, role_keys.threshold)?;
    Ok(file)
}

/// The signed state of a repository.
#[derive(Clone, Debug)]
pub struct Repository {
    config: Config,
    root: Signed<Root>,
    targets: Signed<Targets>,
    /// Every delegated role ever published, retired bins included: the spec forbids a role to
    /// disappear from snapshot, so retired bins stay listed (emptied).
    delegated: BTreeMap<RoleName, Signed<Targets>>,
    snapshot: Signed<Snapshot>,
    timestamp: Signed<Timestamp>,
}

impl Repository {
    /// Creates version 1 of every role, signed by the keys of `ring`.
    pub fn init(spec: &RootSpec, ring: &[&SigningKey], now: DateTime<Utc>, config: Config) -> Result<Self> {
        let root_meta = spec.to_root(1, now + config.expiries.root)?;
        let root =
            sign_as(&RoleName::root(), root_meta.clone(), &root_meta.keys, root_meta.role(&RoleName::root())?, ring)?;
        let targets = sign_as(
            &RoleName::targets(),
            Targets::new(1, now + config.expiries.targets),
            &root_meta.keys,
            root_meta.role(&RoleName::targets())?,
            ring,
        )?;
        let (snapshot, timestamp) =
            Self::sign_snapshot_timestamp(&root_meta, &targets, &BTreeMap::new(), None, None, ring, now, &config)?;
        Ok(Self { config, root, targets, delegated: BTreeMap::new(), snapshot, timestamp })
    }

    /// Loads a repository from its current files; `delegated` holds every delegated targets
    /// role the snapshot lists, with its name. Each file's signatures are checked against the
    /// root, so a corrupted state is refused rather than extended.
    pub fn load(
        root: &[u8],
        targets: &[u8],
        delegated: &[(RoleName, &[u8])],
        snapshot: &[u8],
        timestamp: &[u8],
        config: Config,
    ) -> Result<Self> {
        let root = Signed::<Root>::from_bytes(&RoleName::root(), root)?;
        let r = root.signed.clone();
        let verify_top =
            |role: RoleName, check: &dyn Fn(&RoleName, &RoleKeys) -> Result<()>| check(&role, r.role(&role)?);
        verify_top(RoleName::root(), &|n, k| root.verify(n, &r.keys, &k.keyids, k.threshold))?;
        let targets = Signed::<Targets>::from_bytes(&RoleName::targets(), targets)?;
        verify_top(RoleName::targets(), &|n, k| targets.verify(n, &r.keys, &k.keyids, k.threshold))?;
        let snapshot = Signed::<Snapshot>::from_bytes(&RoleName::snapshot(), snapshot)?;
        verify_top(RoleName::snapshot(), &|n, k| snapshot.verify(n, &r.keys, &k.keyids, k.threshold))?;
        let timestamp = Signed::<Timestamp>::from_bytes(&RoleName::timestamp(), timestamp)?;
        verify_top(RoleName::timestamp(), &|n, k| timestamp.verify(n, &r.keys, &k.keyids, k.threshold))?;
        let tk = r.role(&RoleName::targets())?;
        let mut map = BTreeMap::new();
        for (role, bytes) in delegated {
            let file = Signed::<Targets>::from_bytes(role, bytes)?;
            // Bins are signed by the targets keys; see `delegations_for`.
            file.verify(role, &r.keys, &tk.keyids, tk.threshold)?;
            map.insert(role.clone(), file);
        }
        for name in snapshot.signed.meta.keys() {
            let role = name.strip_suffix(".json").unwrap_or(name);
            if role != "targets" && !map.keys().any(|k: &RoleName| k.as_str() == role) {
                return Err(Error::Malformed {
                    role: role.to_owned(),
                    reason: "listed in snapshot but its file was not given".into(),
                });
            }
        }
        Ok(Self { config, root, targets, delegated: map, snapshot, timestamp })
    }

    /// The current root.
    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }
    /// The current top-level targets.
    pub fn targets(&self) -> &Signed<Targets> {
        &self.targets
    }
    /// The current delegated targets roles, retired bins included.
    pub fn delegated(&self) -> &BTreeMap<RoleName, Signed<Targets>> {
        &self.delegated
    }
    /// The current snapshot.
    pub fn snapshot(&self) -> &Signed<Snapshot> {
        &self.snapshot
    }
    /// The current timestamp.
    pub fn timestamp(&self) -> &Signed<Timestamp> {
        &self.timestamp
    }

    /// Every target, wherever it is signed.
    pub fn all_targets(&self) -> BTreeMap<TargetPath, TargetFile> {
        let mut all = self.targets.signed.targets.clone();
        for file in self.delegated.values() {
            all.extend(file.signed.targets.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }

    /// Every current file, for a full export; timestamp last.
    pub fn files(&self) -> Vec<MetadataFile> {
        let mut out: Vec<MetadataFile> = self.delegated.iter().map(|(r, f)| MetadataFile::of(r, f)).collect();
        out.push(MetadataFile::of(&RoleName::targets(), &self.targets));
        out.push(MetadataFile::of(&RoleName::snapshot(), &self.snapshot));
        out.push(MetadataFile::of(&RoleName::root(), &self.root));
        out.push(MetadataFile::of(&RoleName::timestamp(), &self.timestamp));
        out
    }

    /// Adds targets and publishes new targets (or bins), snapshot and timestamp. Adding a
    /// path that exists with the same description is a no-op; with another, an error.
    pub fn add_targets(
        &mut self,
        new: impl IntoIterator<Item = (TargetPath, TargetFile)>,
        ring: &[&SigningKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<MetadataFile>> {
        let mut all = self.all_targets();
        for (path, file) in new {
            if let Some(old) = all.get(&path) {
                if *old != file {
                    return Err(Error::TargetConflict {
                        path: path.to_string(),
                        existing: old.hashes.get("sha256").cloned().unwrap_or_default(),
                    });
                }
                continue;
            }
            all.insert(path, file);
        }
        self.republish(all, ring, now, false)
    }

    /// Adds targets, replacing any existing target of the same path, and publishes new
    /// targets (or bins), snapshot and timestamp. For files whose content changes under a
    /// fixed name (issuer keys, revocation lists); firmware paths use [`Self::add_targets`],
    /// which refuses to change what a published path means.
    pub fn upsert_targets(
        &mut self,
        new: impl IntoIterator<Item = (TargetPath, TargetFile)>,
        ring: &[&SigningKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<MetadataFile>> {
        let mut all = self.all_targets();
        all.extend(new);
        self.republish(all, ring, now, false)
    }

    /// Re-signs the timestamp, and every role that would otherwise expire within two timestamp
    /// periods (so clients never see a live timestamp over expired metadata). For a timer.
    pub fn refresh(&mut self, ring: &[&SigningKey], now: DateTime<Utc>) -> Result<Vec<MetadataFile>> {
        let all = self.all_targets();
        self.republish(all, ring, now, false)
    }

    /// Publishes root N+1 with `spec`, signed by the keys of `ring` that either root lists;
    /// it must meet the threshold of both. When the online roles' keys change, their files
    /// are re-signed with the new keys.
    pub fn rotate_root(
        &mut self,
        spec: &RootSpec,
        ring: &[&SigningKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<MetadataFile>> {
        let old = &self.root.signed;
        let new = spec.to_root(old.version + 1, now + self.config.expiries.root)?;
        let old_rk = old.role(&RoleName::root())?;
        let new_rk = new.role(&RoleName::root())?;
        let signers: Vec<&SigningKey> = ring
            .iter()
            .copied()
            .filter(|k| old_rk.keyids.contains(&k.key_id()) || new_rk.keyids.contains(&k.key_id()))
            .collect();
        let file = Signed::sign(new.clone(), &signers)?;
        file.verify(&RoleName::root(), &old.keys, &old_rk.keyids, old_rk.threshold)?;
        file.verify(&RoleName::root(), &new.keys, &new_rk.keyids, new_rk.threshold)?;
        let targets_keys_changed = RootSpec::from_root(old).targets != spec.targets;
        let mut next = self.clone();
        next.root = file;
        let all = next.all_targets();
        let mut changed = next.republish(all, ring, now, targets_keys_changed)?;
        // Root goes before the timestamp that may already depend on its new keys.
        changed.insert(changed.len() - 1, MetadataFile::of(&RoleName::root(), &next.root));
        *self = next;
        Ok(changed)
    }

    /// Lays `all` out into targets and bins, re-signs what changed or nears expiry, and swaps
    /// the result in.
    fn republish(
        &mut self,
        all: BTreeMap<TargetPath, TargetFile>,
        ring: &[&SigningKey],
        now: DateTime<Utc>,
        force: bool,
    ) -> Result<Vec<MetadataFile>> {
        let root = self.root.signed.clone();
        let cfg = &self.config;
        let margin = cfg.expiries.timestamp * 2;
        let stale = |expires: DateTime<Utc>| force || expires <= now + margin;
        let targets_rk = root.role(&RoleName::targets())?.clone();

        let prefix_len = self.choose_prefix_len(&all)?;
        let mut bins: BTreeMap<RoleName, BTreeMap<TargetPath, TargetFile>> = BTreeMap::new();
        if prefix_len > 0 {
            for i in 0..16usize.pow(prefix_len as u32) {
                bins.insert(self.bin_name(prefix_len, i)?, BTreeMap::new());
            }
            for (path, file) in &all {
                let hash = path.path_hash();
                let name = RoleName::new(format!("{}-{}", cfg.bin_prefix, &hash[..prefix_len]))?;
                bins.get_mut(&name).expect("every prefix has a bin").insert(path.clone(), file.clone());
            }
        }

        let mut changed = Vec::new();
        let mut delegated = BTreeMap::new();
        // Retired bins (and any role not in the new layout) stay listed, emptied.
        let mut layout: Vec<(RoleName, BTreeMap<TargetPath, TargetFile>)> = bins.into_iter().collect();
        for name in self.delegated.keys() {
            if !layout.iter().any(|(n, _)| n == name) {
                layout.push((name.clone(), BTreeMap::new()));
            }
        }
        for (name, content) in layout {
            let old = self.delegated.get(&name);
            let keep = old.is_some_and(|o| {
                o.signed.targets == content && o.signed.delegations.is_none() && !stale(o.signed.expires)
            });
            let file = match (keep, old) {
                (true, Some(o)) => o.clone(),
                _ => {
                    let mut t = Targets::new(old.map_or(1, |o| o.signed.version + 1), now + cfg.expiries.targets);
                    t.targets = content;
                    let f = sign_as(&name, t, &root.keys, &targets_rk, ring)?;
                    check_cap(&name, f.bytes().len(), PYTHON_TUF_TARGETS_MAX)?;
                    changed.push(MetadataFile::of(&name, &f));
                    f
                }
            };
            delegated.insert(name, file);
        }

        let (top_targets, delegations) = if prefix_len > 0 {
            (BTreeMap::new(), Some(self.delegations_for(&root, prefix_len)?))
        } else {
            (all, None)
        };
        let old = &self.targets.signed;
        let targets = if old.targets == top_targets && old.delegations == delegations && !stale(old.expires) {
            self.targets.clone()
        } else {
            let mut t = Targets::new(old.version + 1, now + cfg.expiries.targets);
            t.targets = top_targets;
            t.delegations = delegations;
            let f = sign_as(&RoleName::targets(), t, &root.keys, &targets_rk, ring)?;
            check_cap(&RoleName::targets(), f.bytes().len(), PYTHON_TUF_TARGETS_MAX)?;
            changed.push(MetadataFile::of(&RoleName::targets(), &f));
            f
        };

        let (snapshot, timestamp) = Self::sign_snapshot_timestamp(
            &root,
            &targets,
            &delegated,
            Some(&self.snapshot),
            Some(&self.timestamp),
            ring,
            now,
            cfg,
        )?;
        if snapshot.signed.version != self.snapshot.signed.version {
            changed.push(MetadataFile::of(&RoleName::snapshot(), &snapshot));
        }
        changed.push(MetadataFile::of(&RoleName::timestamp(), &timestamp));
        self.targets = targets;
        self.delegated = delegated;
        self.snapshot = snapshot;
        self.timestamp = timestamp;
        Ok(changed)
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_snapshot_timestamp(
        root: &Root,
        targets: &Signed<Targets>,
        delegated: &BTreeMap<RoleName, Signed<Targets>>,
        old_snapshot: Option<&Signed<Snapshot>>,
        old_timestamp: Option<&Signed<Timestamp>>,
        ring: &[&SigningKey],
        now: DateTime<Utc>,
        cfg: &Config,
    ) -> Result<(Signed<Snapshot>, Signed<Timestamp>)> {
        let mut meta = BTreeMap::new();
        meta.insert("targets.json".to_owned(), MetaFile::describing(targets.signed.version, targets.bytes()));
        for (name, f) in delegated {
            meta.insert(format!("{name}.json"), MetaFile::describing(f.signed.version, f.bytes()));
        }
        let snap_rk = root.role(&RoleName::snapshot())?;
        let margin = cfg.expiries.timestamp * 2;
        let snapshot = match old_snapshot {
            Some(old)
                if old.signed.meta == meta
                    && old.signed.expires > now + margin
                    && old.verify(&RoleName::snapshot(), &root.keys, &snap_rk.keyids, snap_rk.threshold).is_ok() =>
            {
                old.clone()
            }
            _ => {
                let snap = Snapshot {
                    type_: "snapshot".into(),
                    spec_version: SPEC_VERSION.into(),
                    version: old_snapshot.map_or(1, |s| s.signed.version + 1),
                    expires: now + cfg.expiries.snapshot,
                    meta,
                    extra: Map::new(),
                };
                sign_as(&RoleName::snapshot(), snap, &root.keys, snap_rk, ring)?
            }
        };
        check_cap(&RoleName::snapshot(), snapshot.bytes().len(), PYTHON_TUF_SNAPSHOT_MAX)?;
        let ts = Timestamp {
            type_: "timestamp".into(),
            spec_version: SPEC_VERSION.into(),
            version: old_timestamp.map_or(1, |t| t.signed.version + 1),
            expires: now + cfg.expiries.timestamp,
            meta: BTreeMap::from([(
                "snapshot.json".to_owned(),
                MetaFile::describing(snapshot.signed.version, snapshot.bytes()),
            )]),
            extra: Map::new(),
        };
        let timestamp = sign_as(&RoleName::timestamp(), ts, &root.keys, root.role(&RoleName::timestamp())?, ring)?;
        Ok((snapshot, timestamp))
    }

    fn bin_name(&self, prefix_len: usize, index: usize) -> Result<RoleName> {
        RoleName::new(format!("{}-{:0width$x}", self.config.bin_prefix, index, width = prefix_len))
    }

    /// The hashed-bin delegations for `prefix_len` hex digits, signed by the targets keys.
    fn delegations_for(&self, root: &Root, prefix_len: usize) -> Result<Delegations> {
        let rk = root.role(&RoleName::targets())?;
        let keys = rk.keyids.iter().filter_map(|id| root.keys.get(id).map(|k| (*id, k.clone()))).collect();
        let roles = (0..16usize.pow(prefix_len as u32))
            .map(|i| {
                Ok(DelegatedRole {
                    name: self.bin_name(prefix_len, i)?,
                    keyids: rk.keyids.clone(),
                    threshold: rk.threshold,
                    // Bins partition the whole hash space: a miss in its bin is a miss.
                    terminating: true,
                    paths: None,
                    path_hash_prefixes: Some(vec![format!("{:0width$x}", i, width = prefix_len)]),
                    extra: Map::new(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Delegations { keys, roles, extra: Map::new() })
    }

    fn current_prefix_len(&self) -> usize {
        self.targets
            .signed
            .delegations
            .as_ref()
            .and_then(|d| d.roles.first())
            .and_then(|r| r.path_hash_prefixes.as_ref())
            .and_then(|p| p.first())
            .map_or(0, String::len)
    }

    /// Fewest hex digits (never fewer than now: bins only split) that keep every targets file
    /// under `split_bytes`.
    fn choose_prefix_len(&self, all: &BTreeMap<TargetPath, TargetFile>) -> Result<usize> {
        // Serialized size of each entry, plus a little for the path's quotes and the comma.
        let sizes: Vec<(String, usize)> = all
            .iter()
            .map(|(p, f)| (p.path_hash(), p.as_str().len() + serde_json::to_vec(f).map_or(0, |v| v.len()) + 4))
            .collect();
        // Envelope, signatures and (for top-level) a small margin.
        const OVERHEAD: usize = 4096;
        let mut len = self.current_prefix_len();
        loop {
            let biggest = if len == 0 {
                sizes.iter().map(|(_, s)| s).sum::<usize>()
            } else {
                let mut per_bin: BTreeMap<&str, usize> = BTreeMap::new();
                for (h, s) in &sizes {
                    *per_bin.entry(&h[..len]).or_default() += s;
                }
                per_bin.into_values().max().unwrap_or(0)
            };
            if biggest + OVERHEAD <= self.config.split_bytes || len == MAX_BIN_PREFIX_LEN {
                return Ok(len);
            }
            len += 1;
        }
    }
}

fn check_cap(role: &RoleName, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::TooLarge { role: role.clone(), length: len as u64, max: max as u64 });
    }
    Ok(())
}
