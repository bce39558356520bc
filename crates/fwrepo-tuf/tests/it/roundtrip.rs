//! Positive paths: publish then verify as a client, reload and continue, refresh, root
//! rotation, hashed bins at scale, delegation search order, and unknown fields kept intact.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use fwrepo_tuf::builder::{PYTHON_TUF_SNAPSHOT_MAX, PYTHON_TUF_TARGETS_MAX};
use fwrepo_tuf::{
    Config, DelegatedRole, Delegations, Lookup, MetaFile, Repository, RoleName, RoleSpec, Signed, Snapshot, TargetFile,
    Targets, Timestamp, layout,
};
use serde_json::Map;

use crate::common::{Keys, Server, client, find, firmware, fresh_repo, key, path, refresh, root_v1, t0};

#[test]
fn publish_then_client_verifies_target() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let items: Vec<_> = ["fw/ilo4_140.bin", "fw/rom.bin", "drivers/nic.rpm"].iter().map(|n| firmware(n)).collect();
    let changed = repo.add_targets(items.iter().map(|(p, _, f)| (p.clone(), f.clone())), &keys.ring(), t0()).unwrap();
    let names: Vec<_> = changed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["2.targets.json", "2.snapshot.json", "timestamp.json"]);
    server.publish(&changed);

    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    for (p, bytes, file) in &items {
        let info = find(&server, &mut up, p).unwrap().unwrap();
        assert_eq!(info.file, *file);
        assert_eq!(info.role.as_str(), "targets");
        info.verify(bytes).unwrap();
        let custom = info.file.fw_custom().unwrap();
        assert_eq!(custom.component.models, ["ProLiant DL380p Gen8"]);
        assert_eq!(info.download_name(true).unwrap(), layout::target_file(p, &fwrepo_tuf::Sha256::of(bytes)));
    }
    assert_eq!(find(&server, &mut up, &path("fw/absent.bin")).unwrap(), None);
    let name = find(&server, &mut up, &path("fw/rom.bin")).unwrap().unwrap().download_name(true).unwrap();
    assert!(name.starts_with("fw/") && name.ends_with(".rom.bin") && name.len() == "fw/".len() + 64 + ".rom.bin".len());
}

#[test]
fn adding_the_same_target_twice_is_a_noop_and_a_different_one_conflicts() {
    let (keys, mut repo, _server) = fresh_repo(Config::default());
    let (p, _, f) = firmware("a.bin");
    repo.add_targets([(p.clone(), f.clone())], &keys.ring(), t0()).unwrap();
    let before = repo.targets().signed.version;
    repo.add_targets([(p.clone(), f.clone())], &keys.ring(), t0()).unwrap();
    assert_eq!(repo.targets().signed.version, before);
    let other = TargetFile::describing(b"other", None);
    let err = repo.add_targets([(p, other)], &keys.ring(), t0()).unwrap_err();
    assert!(matches!(err, fwrepo_tuf::Error::TargetConflict { .. }), "{err}");
    // The failed call left the repository as it was.
    assert_eq!(repo.targets().signed.version, before);
}

#[test]
fn upsert_replaces_a_target_and_clients_see_the_new_content() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let p = path("auth/issuers.json");
    let v1 = TargetFile::describing(b"{\"keys\":[1]}", None);
    server.publish(&repo.upsert_targets([(p.clone(), v1.clone())], &keys.ring(), t0()).unwrap());
    let (other, _, other_file) = firmware("fw/rom.bin");
    server.publish(&repo.add_targets([(other.clone(), other_file.clone())], &keys.ring(), t0()).unwrap());
    let v2 = TargetFile::describing(b"{\"keys\":[1,2]}", None);
    let before = repo.targets().signed.version;
    server.publish(&repo.upsert_targets([(p.clone(), v2.clone())], &keys.ring(), t0()).unwrap());
    assert_eq!(repo.targets().signed.version, before + 1);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(find(&server, &mut up, &p).unwrap().unwrap().file, v2);
    // Other targets are untouched.
    assert_eq!(find(&server, &mut up, &other).unwrap().unwrap().file, other_file);
    // add_targets still refuses to change a published path.
    let err = repo.add_targets([(p, v1)], &keys.ring(), t0()).unwrap_err();
    assert!(matches!(err, fwrepo_tuf::Error::TargetConflict { .. }), "{err}");
}

#[test]
fn failed_upsert_changes_nothing() {
    let (keys, mut repo, _server) = fresh_repo(Config::default());
    let before = repo.files();
    let p = path("auth/revocations.json");
    // Without the targets key the new targets file cannot be signed.
    let ring: Vec<_> = keys.ring().into_iter().filter(|k| k.key_id() != keys.targets.key_id()).collect();
    assert!(repo.upsert_targets([(p, TargetFile::describing(b"[]", None))], &ring, t0()).is_err());
    assert_eq!(repo.files(), before);
}

#[test]
fn publish_without_the_targets_key_changes_nothing() {
    let (keys, mut repo, _server) = fresh_repo(Config::default());
    let (p, _, f) = firmware("a.bin");
    let before = repo.files();
    let err = repo.add_targets([(p, f)], &[&keys.snapshot, &keys.timestamp], t0()).unwrap_err();
    assert!(matches!(err, fwrepo_tuf::Error::ThresholdNotMet { ref role, .. } if role.as_str() == "targets"), "{err}");
    assert_eq!(repo.files(), before);
}

#[test]
fn reload_from_files_and_continue() {
    let (keys, mut repo, mut server) = fresh_repo(Config { split_bytes: 8_000, ..Config::default() });
    let first: Vec<_> = (0..40).map(|i| firmware(&format!("r1/c{i}.bin"))).collect();
    server
        .publish(&repo.add_targets(first.iter().map(|(p, _, f)| (p.clone(), f.clone())), &keys.ring(), t0()).unwrap());
    assert!(!repo.delegated().is_empty());

    let files = repo.files();
    let get = |role: &str| files.iter().find(|f| f.role.as_str() == role).unwrap().bytes.clone();
    let delegated: Vec<(RoleName, Vec<u8>)> =
        files.iter().filter(|f| !f.role.is_top_level()).map(|f| (f.role.clone(), f.bytes.clone())).collect();
    let refs: Vec<(RoleName, &[u8])> = delegated.iter().map(|(r, b)| (r.clone(), b.as_slice())).collect();
    let mut loaded = Repository::load(
        &get("root"),
        &get("targets"),
        &refs,
        &get("snapshot"),
        &get("timestamp"),
        Config { split_bytes: 8_000, ..Config::default() },
    )
    .unwrap();
    assert_eq!(loaded.all_targets(), repo.all_targets());

    let then = server.clone();
    let (p, bytes, f) = firmware("r2/new.bin");
    server.publish(&loaded.add_targets([(p.clone(), f)], &keys.ring(), t0()).unwrap());
    // A client that stored the previous timestamp and snapshot moves forward.
    let mut up = client(&root_v1(&server), t0());
    up.load_trusted_timestamp(then.get("timestamp.json").unwrap()).unwrap();
    refresh(&server, &mut up).unwrap();
    find(&server, &mut up, &p).unwrap().unwrap().verify(&bytes).unwrap();
    find(&server, &mut up, &first[7].0).unwrap().unwrap().verify(&first[7].1).unwrap();
}

#[test]
fn refresh_resigns_timestamp_and_only_what_nears_expiry() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let changed = repo.refresh(&keys.ring(), t0() + TimeDelta::hours(20)).unwrap();
    assert_eq!(changed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["timestamp.json"]);
    server.publish(&changed);
    // Six days in, the 7-day snapshot is within two timestamp periods of expiry.
    let changed = repo.refresh(&keys.ring(), t0() + TimeDelta::days(6)).unwrap();
    assert_eq!(changed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["2.snapshot.json", "timestamp.json"]);
    server.publish(&changed);
    let mut up = client(&root_v1(&server), t0() + TimeDelta::days(6));
    refresh(&server, &mut up).unwrap();
    // A timestamp-only key ring can refresh the timestamp alone.
    repo.refresh(&[&keys.timestamp], t0() + TimeDelta::days(6) + TimeDelta::hours(1)).unwrap();
}

#[test]
fn root_rotation_is_followed_by_clients() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let (new_root, new_snapshot, new_targets) = (key(40), key(41), key(42));
    let mut spec = keys.spec();
    spec.root = RoleSpec::new(vec![new_root.public_key()], 1);
    spec.snapshot = RoleSpec::new(vec![new_snapshot.public_key()], 1);
    spec.targets = RoleSpec::new(vec![new_targets.public_key()], 1);
    let mut ring = keys.ring();
    ring.extend([&new_root, &new_snapshot, &new_targets]);
    let changed = repo.rotate_root(&spec, &ring, t0()).unwrap();
    let names: Vec<_> = changed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["2.targets.json", "2.snapshot.json", "2.root.json", "timestamp.json"]);
    server.publish(&changed);
    // The old root key is gone: the next rotation needs the new one only.
    let ring2 = vec![&new_root, &keys.timestamp, &new_snapshot, &new_targets];
    server.publish(&repo.rotate_root(&spec, &ring2, t0()).unwrap());
    let (p, bytes, f) = firmware("after/rotation.bin");
    server.publish(&repo.add_targets([(p.clone(), f)], &ring2, t0()).unwrap());

    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(up.root().signed.version, 3);
    find(&server, &mut up, &p).unwrap().unwrap().verify(&bytes).unwrap();
}

#[test]
fn ten_thousand_targets_split_into_hashed_bins_under_python_tuf_caps() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let items: Vec<_> = (0..10_000).map(|i| firmware(&format!("spp/{}/cp{i:06}.scexe", i % 50))).collect();
    server
        .publish(&repo.add_targets(items.iter().map(|(p, _, f)| (p.clone(), f.clone())), &keys.ring(), t0()).unwrap());

    assert!(repo.delegated().len() >= 16, "{} bins", repo.delegated().len());
    assert!(repo.targets().signed.targets.is_empty());
    for f in repo.files() {
        let cap = if f.role.as_str() == "snapshot" { PYTHON_TUF_SNAPSHOT_MAX } else { PYTHON_TUF_TARGETS_MAX };
        assert!(f.bytes.len() <= cap, "{} is {} bytes", f.name, f.bytes.len());
        if !f.role.is_top_level() {
            assert!(f.bytes.len() <= Config::default().split_bytes, "{} is {} bytes", f.name, f.bytes.len());
        }
    }
    let total: usize = repo.delegated().values().map(|f| f.signed.targets.len()).sum();
    assert_eq!(total, 10_000);

    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    for i in [0usize, 1, 4_999, 9_999] {
        let (p, bytes, _) = &items[i];
        let info = find(&server, &mut up, p).unwrap().unwrap();
        assert!(info.role.as_str().starts_with("bins-"));
        assert!(p.path_hash().starts_with(info.role.as_str().strip_prefix("bins-").unwrap()));
        info.verify(bytes).unwrap();
    }
    assert_eq!(find(&server, &mut up, &path("spp/none.bin")).unwrap(), None);

    // One more target re-signs one bin, not all of them.
    let (p, _, f) = firmware("spp/late.bin");
    let changed = repo.add_targets([(p, f)], &keys.ring(), t0()).unwrap();
    assert_eq!(changed.len(), 3, "{:?}", changed.iter().map(|f| &f.name).collect::<Vec<_>>());
}

#[test]
fn bins_split_further_and_retired_bins_stay_listed() {
    let (keys, mut repo, mut server) = fresh_repo(Config { split_bytes: 10_000, ..Config::default() });
    let batch = |r: std::ops::Range<usize>| r.map(|i| firmware(&format!("b/{i}.bin"))).collect::<Vec<_>>();
    let a = batch(0..40);
    server.publish(&repo.add_targets(a.iter().map(|(p, _, f)| (p.clone(), f.clone())), &keys.ring(), t0()).unwrap());
    let first_layout: Vec<RoleName> = repo.delegated().keys().cloned().collect();
    assert_eq!(first_layout.len(), 16);
    let then = server.clone();

    let b = batch(40..600);
    server.publish(&repo.add_targets(b.iter().map(|(p, _, f)| (p.clone(), f.clone())), &keys.ring(), t0()).unwrap());
    assert_eq!(repo.delegated().len(), 16 + 256);
    for old in &first_layout {
        assert!(repo.delegated()[old].signed.targets.is_empty(), "{old} still holds targets");
        assert!(repo.snapshot().signed.role_meta(old).is_some(), "{old} dropped from snapshot");
    }
    // A client holding the 16-bin snapshot accepts the 256-bin one and finds old and new.
    let mut up = client(&root_v1(&server), t0());
    up.load_trusted_timestamp(then.get("timestamp.json").unwrap()).unwrap();
    let snap_v = Signed::<Timestamp>::from_bytes(&RoleName::timestamp(), then.get("timestamp.json").unwrap())
        .unwrap()
        .signed
        .snapshot_meta()
        .version;
    up.load_trusted_snapshot(then.get(&format!("{snap_v}.snapshot.json")).unwrap()).unwrap();
    refresh(&server, &mut up).unwrap();
    for (p, bytes, _) in [&a[3], &b[300]] {
        let info = find(&server, &mut up, p).unwrap().unwrap();
        assert_eq!(info.role.as_str().len(), "bins-".len() + 2);
        info.verify(bytes).unwrap();
    }
}

fn delegated_role(name: &str, pattern: &str, terminating: bool, keys: &Keys) -> DelegatedRole {
    DelegatedRole {
        name: RoleName::new(name).unwrap(),
        keyids: vec![keys.targets.key_id()],
        threshold: 1,
        terminating,
        paths: Some(vec![pattern.into()]),
        path_hash_prefixes: None,
        extra: Map::new(),
    }
}

/// Hand-built tree: targets delegates `fw/*` to `a`, then to `b`; only `b` lists the file.
fn delegation_tree(a_terminating: bool) -> Server {
    let keys = Keys::new();
    let mut server = fresh_repo(Config::default()).2;
    let exp = t0() + TimeDelta::days(30);
    let (p, _, f) = firmware("fw/x.bin");
    let mut top = Targets::new(2, exp);
    top.delegations = Some(Delegations {
        keys: BTreeMap::from([(keys.targets.key_id(), keys.targets.public_key())]),
        roles: vec![delegated_role("a", "fw/*", a_terminating, &keys), delegated_role("b", "fw/*", false, &keys)],
        extra: Map::new(),
    });
    let a = Targets::new(1, exp);
    let mut b = Targets::new(1, exp);
    b.targets.insert(p, f);
    let mut meta = BTreeMap::new();
    for (name, t) in [("targets", top), ("a", a), ("b", b)] {
        let file = Signed::sign(t, &[&keys.targets]).unwrap();
        let v = file.signed.version;
        meta.insert(format!("{name}.json"), MetaFile::describing(v, file.bytes()));
        server.files.insert(format!("{v}.{name}.json"), file.bytes().to_vec());
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
    server
}

#[test]
fn delegation_search_honours_order_and_terminating() {
    let server = delegation_tree(false);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    // First the search asks for `a`, then, having not found it there, for `b`.
    match up.find_target(&path("fw/x.bin")).unwrap() {
        Lookup::NeedRole { role, delegator, request } => {
            assert_eq!((role.as_str(), delegator.as_str(), request.name.as_str()), ("a", "targets", "1.a.json"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(find(&server, &mut up, &path("fw/x.bin")).unwrap().unwrap().role.as_str(), "b");
    // Paths outside every pattern need no delegated role at all.
    assert_eq!(up.find_target(&path("other/x.bin")).unwrap(), Lookup::NotFound);

    let server = delegation_tree(true);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(find(&server, &mut up, &path("fw/x.bin")).unwrap(), None);
}

#[test]
fn unknown_fields_survive_and_keep_signatures_valid() {
    let keys = Keys::new();
    let mut targets = Targets::new(1, t0() + TimeDelta::days(1));
    let (p, _, mut f) = firmware("fw/x.bin");
    f.custom = Some(serde_json::json!({"vendor": {"other": [1, 2]}}));
    f.extra.insert("x-future".into(), serde_json::json!("kept"));
    targets.targets.insert(p.clone(), f);
    targets.extra.insert("x-role-note".into(), serde_json::json!({"z": 1, "a": "é"}));
    let signed = Signed::sign(targets, &[&keys.targets]).unwrap();

    // A different producer's layout of the same document: pretty-printed, keys in another order.
    let value: serde_json::Value = serde_json::from_slice(signed.bytes()).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let parsed = Signed::<Targets>::from_bytes(&RoleName::targets(), &pretty).unwrap();
    assert_eq!(parsed.bytes(), pretty.as_slice());
    assert_eq!(parsed.canonical(), signed.canonical());
    let ids = vec![keys.targets.key_id()];
    let keymap = BTreeMap::from([(ids[0], keys.targets.public_key())]);
    parsed.verify(&RoleName::targets(), &keymap, &ids, 1).unwrap();
    assert_eq!(parsed.signed.extra["x-role-note"]["a"], "é");
    let t = &parsed.signed.targets[&p];
    assert_eq!(t.extra["x-future"], "kept");
    assert_eq!(t.fw_custom(), None);
    assert!(t.custom.is_some());

    // Changing an unknown field breaks the signature: it is covered, not ignored.
    let mut value = value;
    value["signed"]["x-role-note"]["z"] = serde_json::json!(2);
    let edited = Signed::<Targets>::from_bytes(&RoleName::targets(), &serde_json::to_vec(&value).unwrap()).unwrap();
    assert!(edited.verify(&RoleName::targets(), &keymap, &ids, 1).is_err());
}
