//! Shared fixtures: deterministic keys, a fixed clock, an in-memory "server" of published
//! files, and a driver that runs the client workflow against it.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fwrepo_tuf::{
    Component, Config, DelegatedRole, Delegations, FwCustom, Limits, Lookup, MetaFile, MetadataFile, Repository,
    Result, RoleName, RoleSpec, RootSpec, Signed, SigningKey, Snapshot, TargetFile, TargetInfo, TargetPath, Targets,
    Timestamp, Updater, layout,
};
use serde_json::Map;

/// The fixed "now" of every test.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A key whose seed is `n` repeated: deterministic across runs.
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

/// The keys every fixture repository uses, one per top-level role.
pub struct Keys {
    pub root: SigningKey,
    pub timestamp: SigningKey,
    pub snapshot: SigningKey,
    pub targets: SigningKey,
}

impl Keys {
    pub fn new() -> Self {
        Self { root: key(1), timestamp: key(2), snapshot: key(3), targets: key(4) }
    }
    pub fn ring(&self) -> Vec<&SigningKey> {
        vec![&self.root, &self.timestamp, &self.snapshot, &self.targets]
    }
    pub fn spec(&self) -> RootSpec {
        let one = |k: &SigningKey| RoleSpec::new(vec![k.public_key()], 1);
        RootSpec {
            root: one(&self.root),
            timestamp: one(&self.timestamp),
            snapshot: one(&self.snapshot),
            targets: one(&self.targets),
        }
    }
}

/// Published files by name, as a static HTTP server would hold them.
#[derive(Default, Clone)]
pub struct Server {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Server {
    pub fn publish(&mut self, files: &[MetadataFile]) {
        for f in files {
            self.files.insert(f.name.clone(), f.bytes.clone());
        }
    }
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }
}

/// A repository at version 1 plus the server it was published to.
pub fn fresh_repo(config: Config) -> (Keys, Repository, Server) {
    let keys = Keys::new();
    let repo = Repository::init(&keys.spec(), &keys.ring(), t0(), config).unwrap();
    let mut server = Server::default();
    server.publish(&repo.files());
    (keys, repo, server)
}

/// A target path for tests.
pub fn path(s: &str) -> TargetPath {
    TargetPath::new(s).unwrap()
}

/// Synthetic firmware bytes and their description.
pub fn firmware(name: &str) -> (TargetPath, Vec<u8>, TargetFile) {
    let bytes = format!("firmware image {name}").into_bytes();
    let custom = FwCustom {
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        chunk_index: blake3::hash(name.as_bytes()).to_hex().to_string(),
        release: "2014.02.0".into(),
        component: Component {
            name: format!("component {name}"),
            kind: "firmware".into(),
            version: "1.40".into(),
            models: vec!["ProLiant DL380p Gen8".into()],
        },
        release_info: None,
        chunker: None,
    };
    let file = TargetFile::describing(&bytes, Some(&custom));
    (path(name), bytes, file)
}

/// A client that trusts `root_bytes`.
pub fn client(root_bytes: &[u8], now: DateTime<Utc>) -> Updater {
    Updater::new(root_bytes, now, Limits::default()).unwrap()
}

fn fetch<'a>(server: &'a Server, name: &str) -> &'a [u8] {
    server.get(name).unwrap_or_else(|| panic!("server has no {name}"))
}

/// Runs root → timestamp → snapshot → top-level targets.
pub fn refresh(server: &Server, up: &mut Updater) -> Result<()> {
    loop {
        let req = up.next_root_request();
        match server.get(&req.name) {
            Some(bytes) => up.update_root(bytes)?,
            None => break,
        }
    }
    up.finish_root()?;
    up.update_timestamp(fetch(server, &up.timestamp_request().name))?;
    if let Some(req) = up.snapshot_request()? {
        up.update_snapshot(fetch(server, &req.name))?;
    }
    let req = up.targets_request(&RoleName::targets())?;
    up.update_targets(fetch(server, &req.name))
}

/// Searches for `path`, loading delegated roles as the updater asks.
pub fn find(server: &Server, up: &mut Updater, p: &TargetPath) -> Result<Option<TargetInfo>> {
    loop {
        match up.find_target(p)? {
            Lookup::Found(info) => return Ok(Some(info)),
            Lookup::NotFound => return Ok(None),
            Lookup::NeedRole { role, delegator, request } => {
                assert!(fetch(server, &request.name).len() as u64 <= request.max_length);
                up.update_delegated_targets(&role, &delegator, fetch(server, &request.name))?;
            }
        }
    }
}

/// The bytes of root version 1 as published.
pub fn root_v1(server: &Server) -> Vec<u8> {
    server.get("1.root.json").unwrap().to_vec()
}

/// One role of a hand-built tree: its name, its content and the keys that sign it.
pub struct TreeRole<'a> {
    pub name: &'a str,
    pub targets: Targets,
    pub signers: Vec<&'a SigningKey>,
}

/// Publishes a hand-built tree over a fresh repository: every role file (the top-level
/// `targets` among them) under its consistent-snapshot name, then snapshot v2 and timestamp v2
/// describing them, signed with the repository's online keys.
pub fn publish_tree(server: &mut Server, keys: &Keys, roles: Vec<TreeRole<'_>>) {
    let exp = t0() + TimeDelta::days(30);
    let mut meta = BTreeMap::new();
    for r in roles {
        let file = Signed::sign(r.targets, &r.signers).unwrap();
        let v = file.signed.version;
        let role = RoleName::new(r.name).unwrap();
        meta.insert(format!("{}.json", r.name), MetaFile::describing(v, file.bytes()));
        server.files.insert(layout::versioned_file(&role, v), file.bytes().to_vec());
    }
    let snap = Snapshot {
        type_: "snapshot".into(),
        spec_version: "1.0.31".into(),
        version: 2,
        expires: exp,
        meta,
        extra: Map::new(),
    };
    let snap = Signed::sign(snap, &[&keys.snapshot]).unwrap();
    let ts = Timestamp {
        type_: "timestamp".into(),
        spec_version: "1.0.31".into(),
        version: 2,
        expires: exp,
        meta: BTreeMap::from([("snapshot.json".to_owned(), MetaFile::describing(2, snap.bytes()))]),
        extra: Map::new(),
    };
    server.files.insert("2.snapshot.json".into(), snap.bytes().to_vec());
    server.files.insert("timestamp.json".into(), Signed::sign(ts, &[&keys.timestamp]).unwrap().bytes().to_vec());
}

/// A delegation entry for `name` trusting `keys` (threshold 1 each) for `paths`.
pub fn delegation(name: &str, paths: &[&str], keys: &[&SigningKey], terminating: bool) -> DelegatedRole {
    DelegatedRole {
        name: RoleName::new(name).unwrap(),
        keyids: keys.iter().map(|k| k.key_id()).collect(),
        threshold: 1,
        terminating,
        paths: Some(paths.iter().map(|p| (*p).to_owned()).collect()),
        path_hash_prefixes: None,
        extra: Map::new(),
    }
}

/// A targets role (version 1, or 2 for the top level) listing `files` and delegating `roles`.
pub fn targets_role(top: bool, files: &[&str], roles: Vec<DelegatedRole>) -> Targets {
    let mut t = Targets::new(if top { 2 } else { 1 }, t0() + TimeDelta::days(30));
    for name in files {
        let (p, _, f) = firmware(name);
        t.targets.insert(p, f);
    }
    if !roles.is_empty() {
        let mut keys = BTreeMap::new();
        for r in &roles {
            for id in &r.keyids {
                let k = (1..=60u8).map(key).find(|k| k.key_id() == *id).expect("test keys have seeds 1..=60");
                keys.insert(*id, k.public_key());
            }
        }
        t.delegations = Some(Delegations { keys, roles, extra: Map::new() });
    }
    t
}
