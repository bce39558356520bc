//! The client workflow of TUF 1.0 (spec section 5) as a pure state machine: it is fed file
//! bytes and a "now" fixed at creation, checks them, and says what to fetch next and how many
//! bytes at most to accept. The client and the mirror drive it with their own transports.
//!
//! Order of calls: [`Updater::new`] with the pinned or stored root → [`Updater::update_root`]
//! for each `N+1.root.json` until the server has none → [`Updater::finish_root`] →
//! [`Updater::update_timestamp`] → [`Updater::update_snapshot`] → [`Updater::update_targets`]
//! → [`Updater::find_target`], loading delegated roles it asks for with
//! [`Updater::update_delegated_targets`] → [`TargetInfo::verify`] on the downloaded bytes.
//! Files kept from an earlier run are offered with `load_trusted_*` so rollback checks can
//! compare against them; they never stand in for this run's checks: nothing past the
//! timestamp is trusted before [`Updater::update_timestamp`] accepted one, and a stored
//! snapshot the timestamp still names must be unexpired to be used.
//!
//! A delegated role is trusted only through the delegation that led to it on the path being
//! searched: the same role reached through another delegator is verified again against that
//! delegator's keys and threshold ([`Lookup::NeedRole`] asks for it once more).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::layout;
use crate::metadata::{
    HashAlg, MetaFile, Metadata, RoleKeys, Root, Signed, Snapshot, TargetFile, Targets, Timestamp, known_hashes,
};
use crate::names::{RoleName, TargetPath};

/// Caps on what the updater accepts; defaults are python-tuf's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest root file.
    pub root_max: u64,
    /// Longest timestamp file.
    pub timestamp_max: u64,
    /// Longest snapshot file when the timestamp records no length.
    pub snapshot_max: u64,
    /// Longest targets file when the snapshot records no length.
    pub targets_max: u64,
    /// Most root versions accepted in one update.
    pub max_root_rotations: u64,
    /// Most roles one target search visits.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            root_max: 512_000,
            timestamp_max: 16_384,
            snapshot_max: 2_000_000,
            targets_max: 5_000_000,
            max_root_rotations: 256,
            max_delegations: 32,
        }
    }
}

/// A file to fetch next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRequest {
    /// Role it belongs to.
    pub role: RoleName,
    /// File name under the metadata root.
    pub name: String,
    /// Stop reading past this many bytes: the file is refused anyway.
    pub max_length: u64,
}

/// Result of a target search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The target, as signed by `role`.
    Found(TargetInfo),
    /// The search needs delegated `role` (delegated by `delegator`): fetch `request`, give it
    /// to [`Updater::update_delegated_targets`], then search again. A role already loaded
    /// through another delegator is asked for again, to be verified against this one.
    NeedRole {
        /// Role to load.
        role: RoleName,
        /// Role that delegates it.
        delegator: RoleName,
        /// File to fetch.
        request: FileRequest,
    },
    /// No trusted role signs this path.
    NotFound,
}

/// A target found in trusted metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Its path.
    pub path: TargetPath,
    /// Its signed description.
    pub file: TargetFile,
    /// The role that signed it.
    pub role: RoleName,
}

impl TargetInfo {
    /// Name to download: `DIR/<hash>.<name>` under consistent snapshots (the sha256 when
    /// listed, else the sha512), else the path.
    pub fn download_name(&self, consistent_snapshot: bool) -> Result<String> {
        if !consistent_snapshot {
            return Ok(self.path.to_string());
        }
        let (_, hash) = self.known_hashes()?[0];
        Ok(layout::target_file_hex(&self.path, hash))
    }

    fn known_hashes(&self) -> Result<Vec<(HashAlg, &str)>> {
        known_hashes(&self.file.hashes).map_err(|reason| Error::TargetMismatch { path: self.path.to_string(), reason })
    }

    /// Checks downloaded bytes: length first (without hashing an over-long download), then
    /// every listed hash this crate knows.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        let mut v = self.verifier()?;
        v.update(bytes)?;
        v.finish()
    }

    /// A streaming check for downloads too large to hold in memory. Refused up front when the
    /// target lists no hash this crate knows.
    pub fn verifier(&self) -> Result<TargetVerifier> {
        let mut v = TargetVerifier { info: self.clone(), seen: 0, sha256: None, sha512: None };
        for (alg, expected) in self.known_hashes()? {
            match alg {
                HashAlg::Sha256 => v.sha256 = Some((sha2::Sha256::default(), expected.to_owned())),
                HashAlg::Sha512 => v.sha512 = Some((sha2::Sha512::default(), expected.to_owned())),
            }
        }
        Ok(v)
    }
}

/// Streams a target download through its length cap and every listed hash it knows.
pub struct TargetVerifier {
    info: TargetInfo,
    seen: u64,
    sha256: Option<(sha2::Sha256, String)>,
    sha512: Option<(sha2::Sha512, String)>,
}

impl TargetVerifier {
    /// Feeds the next bytes; fails as soon as more than the signed length has arrived, so an
    /// endless response is cut off instead of hashed.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        use sha2::Digest as _;
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.seen > self.info.file.length {
            return Err(Error::TargetTooLong { path: self.info.path.to_string(), expected: self.info.file.length });
        }
        if let Some((h, _)) = &mut self.sha256 {
            h.update(chunk);
        }
        if let Some((h, _)) = &mut self.sha512 {
            h.update(chunk);
        }
        Ok(())
    }

    /// Checks the total length and the hashes.
    pub fn finish(self) -> Result<()> {
        use sha2::Digest as _;
        let path = self.info.path.to_string();
        if self.seen != self.info.file.length {
            return Err(Error::TargetMismatch {
                path,
                reason: format!("{} bytes, signed length is {}", self.seen, self.info.file.length),
            });
        }
        let mut results = Vec::new();
        if let Some((h, expected)) = self.sha256 {
            results.push(("sha256", hex::encode(h.finalize()), expected));
        }
        if let Some((h, expected)) = self.sha512 {
            results.push(("sha512", hex::encode(h.finalize()), expected));
        }
        for (alg, got, expected) in results {
            if got != expected {
                return Err(Error::TargetMismatch { path, reason: format!("{alg} {got}, signed {expected}") });
            }
        }
        Ok(())
    }
}

/// The client's trusted metadata and its update rules.
#[derive(Clone, Debug)]
pub struct Updater {
    now: DateTime<Utc>,
    limits: Limits,
    root: Signed<Root>,
    rotations: u64,
    root_done: bool,
    timestamp: Option<Signed<Timestamp>>,
    snapshot: Option<Signed<Snapshot>>,
    /// Whether `snapshot` is the one the trusted timestamp names (otherwise it is only kept to
    /// detect rollback).
    snapshot_current: bool,
    /// Whether [`Updater::update_timestamp`] accepted (or re-confirmed) the timestamp in this
    /// run: a timestamp only offered from storage never leads to a snapshot.
    timestamp_updated: bool,
    /// Targets files by role, each checked against the snapshot. One file per role name (the
    /// snapshot names one version of it).
    targets: BTreeMap<RoleName, Signed<Targets>>,
    /// `(delegator, role)` pairs whose delegation the role's file was verified against. A file
    /// is trusted on a search path only through an edge of this set: the same role delegated by
    /// two roles is checked against each delegator's keys and threshold separately.
    edges: BTreeSet<(RoleName, RoleName)>,
}

fn check_len(role: &RoleName, bytes: &[u8], max: u64) -> Result<()> {
    if bytes.len() as u64 > max {
        return Err(Error::TooLarge { role: role.clone(), length: bytes.len() as u64, max });
    }
    Ok(())
}

fn verify_role<T: Metadata>(file: &Signed<T>, role: &RoleName, root: &Root, top_role: &RoleName) -> Result<()> {
    let rk = root.role(top_role)?;
    file.verify(role, &root.keys, &rk.keyids, rk.threshold)
}

/// Whether `role` has the same threshold and the same keys in both roots. The key objects
/// themselves are compared, not only their ids: a root may list a new key under an old id.
fn same_keys(old: &Root, new: &Root, role: &RoleName) -> bool {
    let (Ok(a), Ok(b)) = (old.role(role), new.role(role)) else { return false };
    let keys = |root: &Root, r: &RoleKeys| {
        r.keyids.iter().map(|id| (*id, root.keys.get(id).cloned())).collect::<BTreeMap<_, _>>()
    };
    a.threshold == b.threshold && keys(old, a) == keys(new, b)
}

/// Whether `snapshot` is the file `ts` names: same version and, where recorded, length and hashes.
fn names_snapshot(ts: &Signed<Timestamp>, snapshot: &Signed<Snapshot>) -> bool {
    let meta = ts.signed.snapshot_meta();
    snapshot.signed.version == meta.version
        && meta.check_bytes(&RoleName::snapshot(), &RoleName::timestamp(), snapshot.bytes()).is_ok()
}

impl Updater {
    /// Starts from a trusted root (pinned, or stored by an earlier run). It must be signed by
    /// a threshold of its own root keys; its expiry is checked by [`Updater::finish_root`],
    /// after newer roots had their chance.
    pub fn new(trusted_root: &[u8], now: DateTime<Utc>, limits: Limits) -> Result<Self> {
        let role = RoleName::root();
        check_len(&role, trusted_root, limits.root_max)?;
        let root = Signed::<Root>::from_bytes(&role, trusted_root)?;
        verify_role(&root, &role, &root.signed, &role)?;
        Ok(Self {
            now,
            limits,
            root,
            rotations: 0,
            root_done: false,
            timestamp: None,
            snapshot: None,
            snapshot_current: false,
            timestamp_updated: false,
            targets: BTreeMap::new(),
            edges: BTreeSet::new(),
        })
    }

    /// The trusted root.
    pub fn root(&self) -> &Signed<Root> {
        &self.root
    }
    /// The trusted timestamp, if any.
    pub fn timestamp(&self) -> Option<&Signed<Timestamp>> {
        self.timestamp.as_ref()
    }
    /// The trusted snapshot, if any.
    pub fn snapshot(&self) -> Option<&Signed<Snapshot>> {
        self.snapshot.as_ref()
    }
    /// A loaded targets role.
    pub fn targets(&self, role: &RoleName) -> Option<&Signed<Targets>> {
        self.targets.get(role)
    }

    /// The next root to try: `N+1.root.json`. A missing file ends the chain.
    pub fn next_root_request(&self) -> FileRequest {
        FileRequest {
            role: RoleName::root(),
            name: layout::root_file(self.root.signed.version + 1),
            max_length: self.limits.root_max,
        }
    }

    /// Accepts root N+1: signed by a threshold of root N's keys and of its own, version
    /// exactly N+1. When the timestamp or snapshot keys change, the trusted timestamp and
    /// snapshot are dropped, so a repository recovering from a key compromise can restart
    /// their versions (fast-forward recovery).
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::root();
        if self.root_done {
            return Err(Error::OutOfOrder { role, what: "every root (finish_root was already called)" });
        }
        if self.rotations >= self.limits.max_root_rotations {
            return Err(Error::RootChainTooLong { max: self.limits.max_root_rotations });
        }
        check_len(&role, bytes, self.limits.root_max)?;
        let new = Signed::<Root>::from_bytes(&role, bytes)?;
        verify_role(&new, &role, &self.root.signed, &role)?;
        verify_role(&new, &role, &new.signed, &role)?;
        let expected = self.root.signed.version + 1;
        if new.signed.version != expected {
            return Err(Error::VersionMismatch { role, expected, found: new.signed.version });
        }
        let rotated = |name: RoleName| !same_keys(&self.root.signed, &new.signed, &name);
        if rotated(RoleName::timestamp()) || rotated(RoleName::snapshot()) {
            self.timestamp = None;
            self.snapshot = None;
            self.snapshot_current = false;
        }
        self.targets.clear();
        self.edges.clear();
        self.root = new;
        self.rotations += 1;
        Ok(())
    }

    /// Ends the root chain (the server has no `N+1.root.json`); the final root must not have
    /// expired (freeze attack).
    pub fn finish_root(&mut self) -> Result<()> {
        self.root.check_expiry(&RoleName::root(), self.now)?;
        self.root_done = true;
        Ok(())
    }

    fn need_root(&self, role: &RoleName) -> Result<()> {
        if !self.root_done {
            return Err(Error::OutOfOrder { role: role.clone(), what: "the root chain (finish_root)" });
        }
        Ok(())
    }

    /// Offers a timestamp stored by an earlier run, for rollback checks. Only signatures are
    /// checked; an error means the file is not trusted under the current root (for example
    /// after a key rotation) and the update should go on without it.
    pub fn load_trusted_timestamp(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::timestamp();
        let file = Signed::<Timestamp>::from_bytes(&role, bytes)?;
        verify_role(&file, &role, &self.root.signed, &role)?;
        // A stored file replaces whatever this run had accepted: everything after it must be
        // accepted again.
        self.timestamp = Some(file);
        self.timestamp_updated = false;
        self.snapshot_current = false;
        self.targets.clear();
        self.edges.clear();
        Ok(())
    }

    /// Offers a snapshot stored by an earlier run, for rollback checks; as
    /// [`Updater::load_trusted_timestamp`].
    pub fn load_trusted_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::snapshot();
        let file = Signed::<Snapshot>::from_bytes(&role, bytes)?;
        verify_role(&file, &role, &self.root.signed, &role)?;
        self.snapshot_current = self.timestamp.as_ref().is_some_and(|t| names_snapshot(t, &file));
        self.snapshot = Some(file);
        self.targets.clear();
        self.edges.clear();
        Ok(())
    }

    /// `timestamp.json`.
    pub fn timestamp_request(&self) -> FileRequest {
        FileRequest {
            role: RoleName::timestamp(),
            name: layout::TIMESTAMP_FILE.into(),
            max_length: self.limits.timestamp_max,
        }
    }

    /// Accepts a new timestamp: signed by the root's timestamp keys, version and snapshot
    /// version not lower than trusted (rollback), not expired (freeze). The same version as
    /// trusted keeps the trusted file.
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::timestamp();
        self.need_root(&role)?;
        check_len(&role, bytes, self.limits.timestamp_max)?;
        let new = Signed::<Timestamp>::from_bytes(&role, bytes)?;
        verify_role(&new, &role, &self.root.signed, &role)?;
        if let Some(old) = &self.timestamp {
            let (tv, nv) = (old.signed.version, new.signed.version);
            if nv < tv {
                return Err(Error::Rollback { role, trusted: tv, new: nv });
            }
            let (ts, ns) = (old.signed.snapshot_meta().version, new.signed.snapshot_meta().version);
            if ns < ts {
                return Err(Error::Rollback { role: RoleName::snapshot(), trusted: ts, new: ns });
            }
            if nv == tv {
                old.check_expiry(&role, self.now)?;
                self.timestamp_updated = true;
                return Ok(());
            }
        }
        new.check_expiry(&role, self.now)?;
        self.snapshot_current = self.snapshot.as_ref().is_some_and(|s| names_snapshot(&new, s));
        self.timestamp = Some(new);
        self.timestamp_updated = true;
        Ok(())
    }

    fn meta_request(&self, role: &RoleName, meta: &MetaFile, default_max: u64) -> FileRequest {
        let name = if self.root.signed.consistent_snapshot {
            layout::versioned_file(role, meta.version)
        } else {
            layout::unversioned_file(role)
        };
        FileRequest { role: role.clone(), name, max_length: meta.length.unwrap_or(default_max).min(default_max) }
    }

    fn updated_timestamp(&self, role: &RoleName) -> Result<&Signed<Timestamp>> {
        match &self.timestamp {
            Some(ts) if self.timestamp_updated => Ok(ts),
            _ => Err(Error::OutOfOrder { role: role.clone(), what: "the timestamp (update_timestamp)" }),
        }
    }

    /// The snapshot the trusted timestamp names, or `None` when the trusted snapshot already
    /// is that one. A stored snapshot kept this way must still be unexpired (freeze attack:
    /// whoever holds only the timestamp key could otherwise keep clients on it forever).
    pub fn snapshot_request(&self) -> Result<Option<FileRequest>> {
        let role = RoleName::snapshot();
        let ts = self.updated_timestamp(&role)?;
        if self.snapshot_current {
            self.current_snapshot(&role)?;
            return Ok(None);
        }
        Ok(Some(self.meta_request(&role, ts.signed.snapshot_meta(), self.limits.snapshot_max)))
    }

    /// Accepts the snapshot the timestamp names: length and hashes as the timestamp records
    /// (mix-and-match), version equal to the timestamp's, no targets role with a lower version
    /// than, or missing from, the previously trusted snapshot (rollback), not expired (freeze).
    pub fn update_snapshot(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::snapshot();
        self.need_root(&role)?;
        let ts = self.updated_timestamp(&role)?;
        let meta = ts.signed.snapshot_meta();
        check_len(&role, bytes, meta.length.unwrap_or(self.limits.snapshot_max).min(self.limits.snapshot_max))?;
        meta.check_bytes(&role, &RoleName::timestamp(), bytes)?;
        let new = Signed::<Snapshot>::from_bytes(&role, bytes)?;
        verify_role(&new, &role, &self.root.signed, &role)?;
        if new.signed.version != meta.version {
            return Err(Error::VersionMismatch { role, expected: meta.version, found: new.signed.version });
        }
        if let Some(old) = &self.snapshot {
            if new.signed.version < old.signed.version {
                return Err(Error::Rollback { role, trusted: old.signed.version, new: new.signed.version });
            }
            for (name, old_meta) in &old.signed.meta {
                let r = RoleName::new(name.strip_suffix(".json").unwrap_or(name))?;
                let new_meta = new
                    .signed
                    .meta
                    .get(name)
                    .ok_or_else(|| Error::NotListed { role: r.clone(), referrer: role.clone() })?;
                if new_meta.version < old_meta.version {
                    return Err(Error::Rollback { role: r, trusted: old_meta.version, new: new_meta.version });
                }
            }
        }
        new.check_expiry(&role, self.now)?;
        self.snapshot = Some(new);
        self.snapshot_current = true;
        self.targets.clear();
        self.edges.clear();
        Ok(())
    }

    /// The snapshot the timestamp accepted in this run names; unexpired however it was loaded
    /// (spec 5.5.6), so nothing is trusted through an expired snapshot.
    fn current_snapshot(&self, role: &RoleName) -> Result<&Signed<Snapshot>> {
        self.updated_timestamp(role)?;
        match &self.snapshot {
            Some(s) if self.snapshot_current => {
                s.check_expiry(&RoleName::snapshot(), self.now)?;
                Ok(s)
            }
            _ => Err(Error::OutOfOrder { role: role.clone(), what: "the snapshot named by the timestamp" }),
        }
    }

    /// The file of targets role `role` the snapshot names.
    pub fn targets_request(&self, role: &RoleName) -> Result<FileRequest> {
        let snap = self.current_snapshot(role)?;
        let meta = snap
            .signed
            .role_meta(role)
            .ok_or_else(|| Error::NotListed { role: role.clone(), referrer: RoleName::snapshot() })?;
        Ok(self.meta_request(role, meta, self.limits.targets_max))
    }

    /// Accepts top-level targets: signed by the root's targets keys, version as the snapshot
    /// records, not expired.
    pub fn update_targets(&mut self, bytes: &[u8]) -> Result<()> {
        let role = RoleName::targets();
        let root = self.root.signed.clone();
        let rk = root.role(&role)?.clone();
        // A new top-level targets file invalidates every delegation verified through the old
        // one; a refused file leaves the old state as it was.
        let saved = (std::mem::take(&mut self.targets), std::mem::take(&mut self.edges));
        let verify = |f: &Signed<Targets>| f.verify(&role, &root.keys, &rk.keyids, rk.threshold);
        let result = self.accept_targets(&role, &RoleName::root(), bytes, verify);
        if result.is_err() {
            (self.targets, self.edges) = saved;
        }
        result
    }

    /// Accepts delegated role `role` with the keys and threshold `delegator` (already loaded)
    /// gives it. A role already loaded through another delegator is verified again against
    /// this one's keys; `bytes` must then be the same file.
    pub fn update_delegated_targets(&mut self, role: &RoleName, delegator: &RoleName, bytes: &[u8]) -> Result<()> {
        if role.is_top_level() {
            return Err(Error::UnknownRole { role: role.clone(), delegator: delegator.clone() });
        }
        let parent =
            self.targets.get(delegator).ok_or(Error::OutOfOrder { role: role.clone(), what: "its delegator" })?;
        let delegations = parent
            .signed
            .delegations
            .clone()
            .ok_or_else(|| Error::UnknownRole { role: role.clone(), delegator: delegator.clone() })?;
        let d = delegations
            .roles
            .iter()
            .find(|r| r.name == *role)
            .ok_or_else(|| Error::UnknownRole { role: role.clone(), delegator: delegator.clone() })?;
        self.accept_targets(role, delegator, bytes, |f| f.verify(role, &delegations.keys, &d.keyids, d.threshold))
    }

    fn accept_targets(
        &mut self,
        role: &RoleName,
        delegator: &RoleName,
        bytes: &[u8],
        verify: impl FnOnce(&Signed<Targets>) -> Result<()>,
    ) -> Result<()> {
        if let Some(loaded) = self.targets.get(role) {
            if loaded.bytes() != bytes {
                return Err(Error::MetaMismatch {
                    role: role.clone(),
                    referrer: delegator.clone(),
                    what: "content (another copy of this version is already loaded)",
                });
            }
            self.current_snapshot(role)?;
            verify(loaded)?;
            self.edges.insert((delegator.clone(), role.clone()));
            return Ok(());
        }
        let snap = self.current_snapshot(role)?;
        let meta = snap
            .signed
            .role_meta(role)
            .ok_or_else(|| Error::NotListed { role: role.clone(), referrer: RoleName::snapshot() })?;
        check_len(role, bytes, meta.length.unwrap_or(self.limits.targets_max).min(self.limits.targets_max))?;
        meta.check_bytes(role, &RoleName::snapshot(), bytes)?;
        let expected = meta.version;
        let new = Signed::<Targets>::from_bytes(role, bytes)?;
        verify(&new)?;
        if new.signed.version != expected {
            return Err(Error::VersionMismatch { role: role.clone(), expected, found: new.signed.version });
        }
        new.check_expiry(role, self.now)?;
        self.targets.insert(role.clone(), new);
        self.edges.insert((delegator.clone(), role.clone()));
        Ok(())
    }

    /// Searches the delegation tree for `path`, pre-order and depth-first as the spec orders
    /// it, honouring `terminating`. Asks for each role it needs and has not got.
    pub fn find_target(&self, path: &TargetPath) -> Result<Lookup> {
        let top = RoleName::targets();
        if !self.targets.contains_key(&top) {
            return Err(Error::OutOfOrder { role: top, what: "top-level targets" });
        }
        let mut stack: Vec<(RoleName, RoleName)> = vec![(top.clone(), RoleName::root())];
        let mut visited = BTreeSet::new();
        while let Some((role, delegator)) = stack.pop() {
            if !visited.insert(role.clone()) {
                continue;
            }
            if visited.len() > self.limits.max_delegations {
                return Err(Error::TooManyDelegations { max: self.limits.max_delegations });
            }
            // Trusted only as verified against the delegation that led here on this path.
            let file = match self.targets.get(&role) {
                Some(file) if self.edges.contains(&(delegator.clone(), role.clone())) => file,
                _ => {
                    let request = self.targets_request(&role)?;
                    return Ok(Lookup::NeedRole { role, delegator, request });
                }
            };
            if let Some(t) = file.signed.targets.get(path) {
                return Ok(Lookup::Found(TargetInfo { path: path.clone(), file: t.clone(), role }));
            }
            let mut children = Vec::new();
            if let Some(d) = &file.signed.delegations {
                for child in d.roles.iter().filter(|c| c.matches(path)) {
                    children.push((child.name.clone(), role.clone()));
                    if child.terminating {
                        // Nothing after a terminating match is searched, not even the roles
                        // still waiting higher up the tree.
                        stack.clear();
                        break;
                    }
                }
            }
            stack.extend(children.into_iter().rev());
        }
        Ok(Lookup::NotFound)
    }
}
