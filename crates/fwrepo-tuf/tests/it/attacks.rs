//! One test per attack on the client, each built from a named fixture function whose doc
//! comment says how the hostile files were made.

use chrono::TimeDelta;
use fwrepo_tuf::metadata::MAX_SIGNATURES;
use fwrepo_tuf::{
    Config, Error, Expiries, Limits, MetaFile, Metadata, RoleName, RoleSpec, Root, Signature, Signed, SigningKey,
    Snapshot, Targets, Timestamp, Updater, cjson,
};

use crate::common::{Keys, Server, client, find, firmware, fresh_repo, key, refresh, root_v1, t0};

/// Re-signs a published file after `edit`, with `keys`.
fn resign<T: Metadata>(bytes: &[u8], role: &str, edit: impl FnOnce(&mut T), keys: &[&SigningKey]) -> Vec<u8> {
    let mut signed = Signed::<T>::from_bytes(&RoleName::new(role).unwrap(), bytes).unwrap().signed;
    edit(&mut signed);
    Signed::sign(signed, keys).unwrap().bytes().to_vec()
}

/// [`resign`] for other test modules.
pub fn resign_with<T: Metadata>(bytes: &[u8], role: &str, edit: impl FnOnce(&mut T), keys: &[&SigningKey]) -> Vec<u8> {
    resign(bytes, role, edit, keys)
}

/// Publishes `snap_bytes` as snapshot `version` with the next timestamp describing it.
pub fn publish_snapshot(server: &mut Server, keys: &Keys, snap_bytes: Vec<u8>, version: u64) {
    let ts = resign::<Timestamp>(
        server.get("timestamp.json").unwrap(),
        "timestamp",
        |t| {
            t.version += 1;
            t.meta.insert("snapshot.json".into(), MetaFile::describing(version, &snap_bytes));
        },
        &[&keys.timestamp],
    );
    server.files.insert(format!("{version}.snapshot.json"), snap_bytes);
    server.files.insert("timestamp.json".into(), ts);
}

fn current_timestamp(server: &Server) -> Timestamp {
    Signed::<Timestamp>::from_bytes(&RoleName::timestamp(), server.get("timestamp.json").unwrap()).unwrap().signed
}

/// Publishes `targets_bytes` as targets version `version` with a snapshot and timestamp that
/// describe it exactly, signed by the (compromised or legitimate) online keys.
fn cascade_targets(server: &mut Server, keys: &Keys, targets_bytes: Vec<u8>, version: u64) {
    let ts = current_timestamp(server);
    let snap_v = ts.snapshot_meta().version;
    let snap_bytes = server.get(&format!("{snap_v}.snapshot.json")).unwrap().to_vec();
    let new_snap = resign::<Snapshot>(
        &snap_bytes,
        "snapshot",
        |s| {
            s.version += 1;
            s.meta.insert("targets.json".into(), MetaFile::describing(version, &targets_bytes));
        },
        &[&keys.snapshot],
    );
    let ts_bytes = server.get("timestamp.json").unwrap().to_vec();
    let new_ts = resign::<Timestamp>(
        &ts_bytes,
        "timestamp",
        |t| {
            t.version += 1;
            t.meta.insert("snapshot.json".into(), MetaFile::describing(snap_v + 1, &new_snap));
        },
        &[&keys.timestamp],
    );
    server.files.insert(format!("{version}.targets.json"), targets_bytes);
    server.files.insert(format!("{}.snapshot.json", snap_v + 1), new_snap);
    server.files.insert("timestamp.json".into(), new_ts);
}

/// A client session that starts from root v1 and the timestamp/snapshot it stored earlier.
fn returning_client(server_then: &Server) -> Updater {
    let mut up = client(&root_v1(server_then), t0());
    let ts = server_then.get("timestamp.json").unwrap();
    up.load_trusted_timestamp(ts).unwrap();
    let snap_v = current_timestamp(server_then).snapshot_meta().version;
    up.load_trusted_snapshot(server_then.get(&format!("{snap_v}.snapshot.json")).unwrap()).unwrap();
    up
}

fn publish_one(repo: &mut fwrepo_tuf::Repository, keys: &Keys, server: &mut Server, name: &str) {
    let (p, _, f) = firmware(name);
    server.publish(&repo.add_targets([(p, f)], &keys.ring(), t0()).unwrap());
}

/// rollback-timestamp: the repository published timestamp v2; the mirror then serves the
/// genuine, still unexpired timestamp v1 again.
fn fixture_rollback_timestamp() -> (Server, Server) {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let v1 = server.clone();
    publish_one(&mut repo, &keys, &mut server, "a.bin");
    let mut attacked = server.clone();
    attacked.files.insert("timestamp.json".into(), v1.get("timestamp.json").unwrap().to_vec());
    (server, attacked)
}

#[test]
fn rollback_timestamp() {
    let (then, attacked) = fixture_rollback_timestamp();
    let mut up = returning_client(&then);
    let err = refresh(&attacked, &mut up).unwrap_err();
    assert!(matches!(err, Error::Rollback { ref role, trusted: 2, new: 1 } if role.as_str() == "timestamp"), "{err}");
}

/// rollback-snapshot: with the (online) timestamp key, the attacker signs timestamp v3 that
/// points at the genuine snapshot v1 while the client trusts timestamp v2 → snapshot v2.
fn fixture_rollback_snapshot() -> (Server, Server) {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let v1 = server.clone();
    publish_one(&mut repo, &keys, &mut server, "a.bin");
    let mut attacked = server.clone();
    let old_snap = v1.get("1.snapshot.json").unwrap().to_vec();
    let ts = resign::<Timestamp>(
        server.get("timestamp.json").unwrap(),
        "timestamp",
        |t| {
            t.version += 1;
            t.meta.insert("snapshot.json".into(), MetaFile::describing(1, &old_snap));
        },
        &[&keys.timestamp],
    );
    attacked.files.insert("timestamp.json".into(), ts);
    (server, attacked)
}

#[test]
fn rollback_snapshot() {
    let (then, attacked) = fixture_rollback_snapshot();
    let mut up = returning_client(&then);
    let err = refresh(&attacked, &mut up).unwrap_err();
    assert!(matches!(err, Error::Rollback { ref role, trusted: 2, new: 1 } if role.as_str() == "snapshot"), "{err}");
}

/// rollback-targets: with the online timestamp and snapshot keys, the attacker publishes a
/// new snapshot listing the genuine targets v1 while the trusted snapshot lists targets v2.
fn fixture_rollback_targets() -> (Server, Server) {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let v1 = server.clone();
    publish_one(&mut repo, &keys, &mut server, "a.bin");
    let mut attacked = server.clone();
    cascade_targets(&mut attacked, &keys, v1.get("1.targets.json").unwrap().to_vec(), 1);
    (server, attacked)
}

#[test]
fn rollback_targets() {
    let (then, attacked) = fixture_rollback_targets();
    let mut up = returning_client(&then);
    let err = refresh(&attacked, &mut up).unwrap_err();
    assert!(matches!(err, Error::Rollback { ref role, trusted: 2, new: 1 } if role.as_str() == "targets"), "{err}");
}

/// rollback-targets-file: the snapshot records only the version of targets (as other
/// producers may); the mirror serves the genuine targets v1 under the name of v2.
fn fixture_rollback_targets_file() -> Server {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let v1_targets = server.get("1.targets.json").unwrap().to_vec();
    publish_one(&mut repo, &keys, &mut server, "a.bin");
    let snap = resign::<Snapshot>(
        server.get("2.snapshot.json").unwrap(),
        "snapshot",
        |s| {
            s.version = 3;
            let m = s.meta.get_mut("targets.json").unwrap();
            (m.length, m.hashes) = (None, None);
        },
        &[&keys.snapshot],
    );
    let ts = resign::<Timestamp>(
        server.get("timestamp.json").unwrap(),
        "timestamp",
        |t| {
            t.version += 1;
            t.meta.insert("snapshot.json".into(), MetaFile::describing(3, &snap));
        },
        &[&keys.timestamp],
    );
    server.files.insert("3.snapshot.json".into(), snap);
    server.files.insert("timestamp.json".into(), ts);
    server.files.insert("2.targets.json".into(), v1_targets);
    server
}

#[test]
fn rollback_targets_file() {
    let attacked = fixture_rollback_targets_file();
    let mut up = client(&root_v1(&attacked), t0());
    let err = refresh(&attacked, &mut up).unwrap_err();
    assert!(
        matches!(err, Error::VersionMismatch { ref role, expected: 2, found: 1 } if role.as_str() == "targets"),
        "{err}"
    );
}

fn short(role: &str) -> Config {
    // The named role lives one day, the others a week; the client looks two days later.
    let d = |r: &str| if r == role { TimeDelta::days(1) } else { TimeDelta::days(7) };
    Config {
        expiries: Expiries {
            root: d("root"),
            targets: d("targets"),
            snapshot: d("snapshot"),
            timestamp: d("timestamp"),
        },
        ..Config::default()
    }
}

/// expired-*: a repository whose named role expires after one day (the others after seven),
/// frozen by a mirror that stops updating; the client looks two days later.
fn fixture_expired(role: &str) -> Server {
    fresh_repo(short(role)).2
}

fn assert_expired(role: &str) {
    let server = fixture_expired(role);
    let mut up = client(&root_v1(&server), t0() + TimeDelta::days(2));
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::Expired { role: ref r, .. } if r.as_str() == role), "{role}: {err}");
    // The same files are fine before expiry: the fixture is what fails, not the driver.
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
}

#[test]
fn freeze_expired_timestamp() {
    assert_expired("timestamp");
}

#[test]
fn freeze_expired_snapshot() {
    assert_expired("snapshot");
}

#[test]
fn freeze_expired_targets() {
    assert_expired("targets");
}

#[test]
fn freeze_expired_root() {
    assert_expired("root");
}

/// mix-and-match: timestamp v2 with, under the name `2.snapshot.json`, the genuine
/// snapshot v1.
fn fixture_mix_and_match() -> Server {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let old = server.get("1.snapshot.json").unwrap().to_vec();
    publish_one(&mut repo, &keys, &mut server, "a.bin");
    server.files.insert("2.snapshot.json".into(), old);
    server
}

#[test]
fn mix_and_match_snapshot_hash() {
    let server = fixture_mix_and_match();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::MetaMismatch { ref role, .. } if role.as_str() == "snapshot"), "{err}");
}

/// mix-and-match-version: a timestamp recording only the snapshot version (no length or
/// hashes), with the genuine snapshot v1 served as `2.snapshot.json`.
fn fixture_mix_and_match_version() -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let ts = resign::<Timestamp>(
        server.get("timestamp.json").unwrap(),
        "timestamp",
        |t| {
            t.version = 2;
            t.meta.insert(
                "snapshot.json".into(),
                MetaFile { version: 2, length: None, hashes: None, extra: Default::default() },
            );
        },
        &[&keys.timestamp],
    );
    let old = server.get("1.snapshot.json").unwrap().to_vec();
    server.files.insert("timestamp.json".into(), ts);
    server.files.insert("2.snapshot.json".into(), old);
    server
}

#[test]
fn mix_and_match_snapshot_version() {
    let server = fixture_mix_and_match_version();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(
        matches!(err, Error::VersionMismatch { ref role, expected: 2, found: 1 } if role.as_str() == "snapshot"),
        "{err}"
    );
}

/// fast-forward: an attacker with the timestamp key signed timestamp v1000, which the client
/// trusted. The repository then rotated the timestamp key in root v2 and published timestamp
/// v2 with the new key. Returns (what the client stored, the recovered repository, the
/// same repository without the rotation).
fn fixture_fast_forward_recovery() -> (Vec<u8>, Server, Server) {
    let (keys, repo, server) = fresh_repo(Config::default());
    let ff = resign::<Timestamp>(
        server.get("timestamp.json").unwrap(),
        "timestamp",
        |t| t.version = 1000,
        &[&keys.timestamp],
    );

    let mut unrotated_repo = repo.clone();
    let mut unrotated = server.clone();
    unrotated.publish(&unrotated_repo.refresh(&keys.ring(), t0()).unwrap());

    let mut repo = repo;
    let mut recovered = server;
    let new_ts = key(20);
    let mut spec = keys.spec();
    spec.timestamp = RoleSpec::new(vec![new_ts.public_key()], 1);
    let mut ring = keys.ring();
    ring.push(&new_ts);
    recovered.publish(&repo.rotate_root(&spec, &ring, t0()).unwrap());
    (ff, recovered, unrotated)
}

#[test]
fn fast_forward_recovery_after_timestamp_key_rotation() {
    let (stored, recovered, unrotated) = fixture_fast_forward_recovery();
    // Without the rotation the client is stuck at v1000: the repository's v2 is a rollback.
    let mut up = client(&root_v1(&recovered), t0());
    up.load_trusted_timestamp(&stored).unwrap();
    assert!(matches!(refresh(&unrotated, &mut up).unwrap_err(), Error::Rollback { trusted: 1000, new: 2, .. }));
    // With it, root v2 drops the timestamp signed by the old key and v2 is accepted.
    let mut up = client(&root_v1(&recovered), t0());
    up.load_trusted_timestamp(&stored).unwrap();
    refresh(&recovered, &mut up).unwrap();
    assert_eq!(up.timestamp().unwrap().signed.version, 2);
    assert_eq!(up.root().signed.version, 2);
    // Offered after the root update, the old timestamp no longer verifies at all.
    assert!(matches!(up.load_trusted_timestamp(&stored), Err(Error::ThresholdNotMet { .. })));
}

fn two_key_targets() -> (Keys, SigningKey, fwrepo_tuf::Repository, Server) {
    let keys = Keys::new();
    let second = key(14);
    let mut spec = keys.spec();
    spec.targets = RoleSpec::new(vec![keys.targets.public_key(), second.public_key()], 2);
    let mut ring = keys.ring();
    ring.push(&second);
    let repo = fwrepo_tuf::Repository::init(&spec, &ring, t0(), Config::default()).unwrap();
    let mut server = Server::default();
    server.publish(&repo.files());
    (keys, second, repo, server)
}

/// threshold-not-met: targets needs 2 of 2 keys; targets v2 is signed by one of them plus the
/// snapshot key, which root knows but not for targets.
fn fixture_threshold_not_met() -> Server {
    let (keys, _second, _repo, mut server) = two_key_targets();
    let t = resign::<Targets>(
        server.get("1.targets.json").unwrap(),
        "targets",
        |t| t.version = 2,
        &[&keys.targets, &keys.snapshot],
    );
    cascade_targets(&mut server, &keys, t, 2);
    server
}

#[test]
fn threshold_not_met() {
    let server = fixture_threshold_not_met();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { ref role, valid: 1, threshold: 2 } if role.as_str() == "targets"),
        "{err}"
    );
}

#[test]
fn threshold_not_met_refused_by_builder() {
    let keys = Keys::new();
    let mut spec = keys.spec();
    spec.targets = RoleSpec::new(vec![keys.targets.public_key(), key(14).public_key()], 2);
    let err = fwrepo_tuf::Repository::init(&spec, &keys.ring(), t0(), Config::default()).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 1, threshold: 2, .. }), "{err}");
}

/// A metadata file with exactly these signatures, bypassing [`Signed::from_parts`] (which
/// refuses the hostile lists the fixtures need).
fn raw_file<T: serde::Serialize>(signed: &T, signatures: &[Signature]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "signed": signed, "signatures": signatures })).unwrap()
}

/// duplicate-signatures: targets needs 2 of 2 keys; targets v2 carries the same valid
/// signature of one key twice.
fn fixture_duplicate_signatures() -> Server {
    let (keys, _second, _repo, mut server) = two_key_targets();
    let once = Signed::<Targets>::from_bytes(
        &RoleName::targets(),
        &resign::<Targets>(server.get("1.targets.json").unwrap(), "targets", |t| t.version = 2, &[&keys.targets]),
    )
    .unwrap();
    let twice = raw_file(&once.signed, &[once.signatures[0].clone(), once.signatures[0].clone()]);
    cascade_targets(&mut server, &keys, twice, 2);
    server
}

#[test]
fn duplicate_signatures_do_not_meet_a_threshold() {
    let server = fixture_duplicate_signatures();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::DuplicateSignature { ref role, .. } if role.as_str() == "targets"), "{err}");
}

/// duplicate-signature-keyids: targets (threshold 1) v2 carries its valid signature and, under
/// the same key id, a second entry of garbage. Every signature present is from a known key,
/// and one is valid, but the list names one key id twice.
fn fixture_duplicate_signature_keyids() -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let t = resign::<Targets>(server.get("1.targets.json").unwrap(), "targets", |t| t.version = 2, &[&keys.targets]);
    let t = Signed::<Targets>::from_bytes(&RoleName::targets(), &t).unwrap();
    let mut junk = t.signatures[0].clone();
    junk.sig = "00".repeat(64);
    cascade_targets(&mut server, &keys, raw_file(&t.signed, &[junk, t.signatures[0].clone()]), 2);
    server
}

#[test]
fn duplicate_signature_keyids_are_refused() {
    let server = fixture_duplicate_signature_keyids();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::DuplicateSignature { ref role, .. } if role.as_str() == "targets"), "{err}");
    // Neither can such a list be assembled, nor does it verify when handed over directly.
    let t = Signed::<Targets>::from_bytes(&RoleName::targets(), server.get("2.targets.json").unwrap());
    assert!(matches!(t, Err(Error::DuplicateSignature { .. })));
    let (keys, repo, _) = fresh_repo(Config::default());
    let targets = repo.targets();
    let twice = vec![targets.signatures[0].clone(), targets.signatures[0].clone()];
    assert!(matches!(Signed::from_parts(targets.signed.clone(), twice.clone()), Err(Error::DuplicateSignature { .. })));
    let root = &repo.root().signed;
    let err = fwrepo_tuf::metadata::verify_threshold(
        &RoleName::targets(),
        targets.canonical(),
        &twice,
        &root.keys,
        &[keys.targets.key_id()],
        1,
    )
    .unwrap_err();
    assert!(matches!(err, Error::DuplicateSignature { .. }), "{err}");
}

#[test]
fn duplicate_key_material_under_two_ids_counts_once() {
    // The same ed25519 key listed twice, once with an extra member that changes its id.
    let k = key(4);
    let mut alias = k.public_key();
    alias.extra.insert("x-alias".into(), serde_json::json!(true));
    let ids = [k.key_id(), alias.key_id()];
    let keys = [(ids[0], k.public_key()), (ids[1], alias)].into_iter().collect();
    let targets = fwrepo_tuf::Targets::new(1, t0() + TimeDelta::days(1));
    let mut file = Signed::sign(targets, &[&k]).unwrap();
    let mut second = file.signatures[0].clone();
    second.keyid = ids[1];
    file = Signed::from_parts(file.signed.clone(), vec![file.signatures[0].clone(), second]).unwrap();
    let err = file.verify(&RoleName::targets(), &keys, &ids, 2).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 1, .. }), "{err}");
    file.verify(&RoleName::targets(), &keys, &ids, 1).unwrap();
}

/// too-many-signatures: targets v2 carrying MAX_SIGNATURES + 1 copies of its valid
/// signature (the timestamp would already trip its 16 KiB size cap).
fn fixture_too_many_signatures() -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let t = resign::<Targets>(server.get("1.targets.json").unwrap(), "targets", |t| t.version = 2, &[&keys.targets]);
    let t = Signed::<Targets>::from_bytes(&RoleName::targets(), &t).unwrap();
    let sigs = vec![t.signatures[0].clone(); MAX_SIGNATURES + 1];
    cascade_targets(&mut server, &keys, raw_file(&t.signed, &sigs), 2);
    server
}

#[test]
fn too_many_signatures() {
    let server = fixture_too_many_signatures();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::TooManySignatures { count, .. } if count == MAX_SIGNATURES + 1), "{err}");
}

/// wrong-key-type: root lists the targets key's ed25519 public bytes under keytype `ecdsa`;
/// the targets file is signed by the ed25519 key under that key id.
fn fixture_wrong_key_type() -> (Root, Signed<Targets>) {
    let keys = Keys::new();
    let mut root = keys.spec().to_root(1, t0() + TimeDelta::days(365)).unwrap();
    let mut lying = keys.targets.public_key();
    lying.keytype = "ecdsa".into();
    lying.scheme = "ecdsa-sha2-nistp256".into();
    let id = lying.key_id();
    root.keys.insert(id, lying);
    root.roles.get_mut("targets").unwrap().keyids = vec![id];
    let targets = Targets::new(1, t0() + TimeDelta::days(90));
    let canonical = cjson::to_canonical(&targets).unwrap();
    let mut sig: Signature = keys.targets.sign(&canonical);
    sig.keyid = id;
    (root, Signed::from_parts(targets, vec![sig]).unwrap())
}

#[test]
fn wrong_key_type() {
    let (root, targets) = fixture_wrong_key_type();
    let rk = root.role(&RoleName::targets()).unwrap();
    let err = targets.verify(&RoleName::targets(), &root.keys, &rk.keyids, rk.threshold).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 0, .. }), "{err}");
}

/// tampered-target: the genuine target with one byte flipped.
fn fixture_tampered_target() -> (Server, fwrepo_tuf::TargetPath, Vec<u8>) {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    let (p, mut bytes, f) = firmware("fw/ilo.bin");
    server.publish(&repo.add_targets([(p.clone(), f)], &keys.ring(), t0()).unwrap());
    bytes[3] ^= 1;
    (server, p, bytes)
}

#[test]
fn tampered_target_bytes() {
    let (server, p, bytes) = fixture_tampered_target();
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    let info = find(&server, &mut up, &p).unwrap().unwrap();
    let err = info.verify(&bytes).unwrap_err();
    assert!(matches!(err, Error::TargetMismatch { ref reason, .. } if reason.contains("sha256")), "{err}");
    // Truncated is refused too.
    assert!(info.verify(&bytes[..bytes.len() - 1]).is_err());
}

/// endless-data: the genuine target followed by bytes that never end.
#[test]
fn endless_data_is_cut_at_the_signed_length() {
    let (server, p, _) = fixture_tampered_target();
    let (_, genuine, _) = firmware("fw/ilo.bin");
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    let info = find(&server, &mut up, &p).unwrap().unwrap();
    let mut longer = genuine.clone();
    longer.push(0);
    assert!(matches!(info.verify(&longer), Err(Error::TargetTooLong { .. })));
    let mut v = info.verifier().unwrap();
    v.update(&genuine).unwrap();
    let mut fed = 0u64;
    let err = loop {
        // An endless stream: the verifier must stop it on the first byte past the length.
        match v.update(&[0u8; 7]) {
            Ok(()) => fed += 7,
            Err(e) => break e,
        }
        assert!(fed < 1 << 20, "endless stream was not cut");
    };
    assert!(matches!(err, Error::TargetTooLong { .. }));
    assert_eq!(fed, 0);
    info.verify(&genuine).unwrap();
}

/// path-traversal: targets v2, validly signed by the targets key, listing `../evil`,
/// `/abs`, a NUL and a backslash path.
fn fixture_path_traversal(evil: &str) -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let targets = Targets::new(2, t0() + TimeDelta::days(90));
    let mut value = serde_json::to_value(&targets).unwrap();
    value["targets"][evil] = serde_json::json!({"length": 1, "hashes": {"sha256": "00".repeat(32)}});
    let sig = keys.targets.sign(&cjson::encode(&value).unwrap());
    let bytes = serde_json::to_vec(&serde_json::json!({"signed": value, "signatures": [sig]})).unwrap();
    cascade_targets(&mut server, &keys, bytes, 2);
    server
}

#[test]
fn target_path_traversal_in_metadata() {
    for evil in ["../evil", "/abs", "a\0b", "a\\..\\b", "fw/../../x"] {
        let server = fixture_path_traversal(evil);
        let mut up = client(&root_v1(&server), t0());
        let err = refresh(&server, &mut up).unwrap_err();
        assert!(matches!(err, Error::Malformed { ref role, .. } if role == "targets"), "{evil:?}: {err}");
    }
}

/// root-skip-version: `2.root.json` holds a root that says version 3, signed by the root key.
fn fixture_root_skip_version() -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let r = resign::<Root>(server.get("1.root.json").unwrap(), "root", |r| r.version = 3, &[&keys.root]);
    server.files.insert("2.root.json".into(), r);
    server
}

#[test]
fn root_version_must_be_exactly_next() {
    let server = fixture_root_skip_version();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::VersionMismatch { expected: 2, found: 3, .. }), "{err}");
}

/// root-not-signed-by-old: root v2 moves root to a new key and is signed by that key alone.
fn fixture_root_not_signed_by_old() -> Server {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let new_root = key(30);
    let mut spec = keys.spec();
    spec.root = RoleSpec::new(vec![new_root.public_key()], 1);
    let r = spec.to_root(2, t0() + TimeDelta::days(365)).unwrap();
    server.files.insert("2.root.json".into(), Signed::sign(r, &[&new_root]).unwrap().bytes().to_vec());
    server
}

#[test]
fn root_rotation_needs_old_threshold() {
    let server = fixture_root_not_signed_by_old();
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { ref role, valid: 0, .. } if role.as_str() == "root"), "{err}");
}

#[test]
fn root_rotation_needs_new_threshold() {
    // root-not-signed-by-new: root v2 names a new root key but only the old key signed it.
    let (keys, repo, _server) = fresh_repo(Config::default());
    let mut spec = keys.spec();
    spec.root = RoleSpec::new(vec![key(30).public_key()], 1);
    let err = repo.clone().rotate_root(&spec, &keys.ring(), t0()).unwrap_err();
    assert!(matches!(err, Error::ThresholdNotMet { valid: 0, .. }), "{err}");
    let r = spec.to_root(2, t0() + TimeDelta::days(365)).unwrap();
    let file = Signed::sign(r, &[&keys.root]).unwrap();
    let mut up = client(repo.root().bytes(), t0());
    assert!(matches!(up.update_root(file.bytes()), Err(Error::ThresholdNotMet { valid: 0, .. })));
}

#[test]
fn root_chain_length_is_capped() {
    let (keys, mut repo, mut server) = fresh_repo(Config::default());
    for _ in 0..3 {
        server.publish(&repo.rotate_root(&keys.spec(), &keys.ring(), t0()).unwrap());
    }
    let limits = Limits { max_root_rotations: 2, ..Limits::default() };
    let mut up = Updater::new(&root_v1(&server), t0(), limits).unwrap();
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::RootChainTooLong { max: 2 }), "{err}");
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(up.root().signed.version, 4);
}

#[test]
fn steps_out_of_order_are_refused() {
    let (_keys, _repo, server) = fresh_repo(Config::default());
    let mut up = client(&root_v1(&server), t0());
    assert!(matches!(up.update_timestamp(server.get("timestamp.json").unwrap()), Err(Error::OutOfOrder { .. })));
    up.finish_root().unwrap();
    assert!(matches!(up.update_snapshot(server.get("1.snapshot.json").unwrap()), Err(Error::OutOfOrder { .. })));
    assert!(up.update_root(server.get("1.root.json").unwrap()).is_err());
}

/// frozen-stored-snapshot: the client stored timestamp v1 and snapshot v1 (which lives one
/// day). Two days later the holder of the timestamp key alone keeps signing fresh timestamps
/// (v2, a week long) that still name snapshot v1, so the client never fetches a snapshot.
fn fixture_frozen_stored_snapshot() -> (Server, Server) {
    let (keys, _repo, server) = fresh_repo(short("snapshot"));
    let then = server.clone();
    let mut attacked = server;
    let ts = resign::<Timestamp>(
        attacked.get("timestamp.json").unwrap(),
        "timestamp",
        |t| {
            t.version = 2;
            t.expires = t0() + TimeDelta::days(9);
        },
        &[&keys.timestamp],
    );
    attacked.files.insert("timestamp.json".into(), ts);
    (then, attacked)
}

/// A client session at `now` that starts from root v1 and the timestamp/snapshot it stored.
fn returning_client_at(server_then: &Server, now: chrono::DateTime<chrono::Utc>) -> Updater {
    let mut up = client(&root_v1(server_then), now);
    up.load_trusted_timestamp(server_then.get("timestamp.json").unwrap()).unwrap();
    let snap_v = current_timestamp(server_then).snapshot_meta().version;
    up.load_trusted_snapshot(server_then.get(&format!("{snap_v}.snapshot.json")).unwrap()).unwrap();
    up
}

#[test]
fn expired_stored_snapshot_is_refused() {
    let (then, attacked) = fixture_frozen_stored_snapshot();
    let mut up = returning_client_at(&then, t0() + TimeDelta::days(2));
    let err = refresh(&attacked, &mut up).unwrap_err();
    assert!(matches!(err, Error::Expired { ref role, .. } if role.as_str() == "snapshot"), "{err}");
    // Before the snapshot expired, the same stored files were fine.
    let mut up = returning_client_at(&then, t0());
    refresh(&attacked, &mut up).unwrap();
}

#[test]
fn expired_stored_snapshot_is_refused_when_targets_are_asked_first() {
    // The caller skips snapshot_request and goes straight to the targets the stored snapshot
    // names: still refused.
    let (then, attacked) = fixture_frozen_stored_snapshot();
    let mut up = returning_client_at(&then, t0() + TimeDelta::days(2));
    up.finish_root().unwrap();
    up.update_timestamp(attacked.get("timestamp.json").unwrap()).unwrap();
    let err = up.targets_request(&RoleName::targets()).unwrap_err();
    assert!(matches!(err, Error::Expired { ref role, .. } if role.as_str() == "snapshot"), "{err}");
}

#[test]
fn expired_stored_timestamp_is_refused() {
    // stored-timestamp-only: the client offers its stored (now expired) timestamp and snapshot
    // and asks for targets without a timestamp update in this run.
    let server = fixture_expired("timestamp");
    let mut up = returning_client_at(&server, t0() + TimeDelta::days(2));
    up.finish_root().unwrap();
    assert!(matches!(up.snapshot_request(), Err(Error::OutOfOrder { .. })));
    assert!(matches!(up.targets_request(&RoleName::targets()), Err(Error::OutOfOrder { .. })));
    let err = up.update_timestamp(server.get("timestamp.json").unwrap()).unwrap_err();
    assert!(matches!(err, Error::Expired { ref role, .. } if role.as_str() == "timestamp"), "{err}");
    assert!(matches!(up.targets_request(&RoleName::targets()), Err(Error::OutOfOrder { .. })));
}

/// Signs `signed` with `key` but names the signature `keyid`.
fn sign_under_id<T: Metadata>(signed: T, key: &SigningKey, keyid: fwrepo_tuf::KeyId) -> Vec<u8> {
    let mut sig = key.sign(&cjson::to_canonical(&signed).unwrap());
    sig.keyid = keyid;
    Signed::from_parts(signed, vec![sig]).unwrap().bytes().to_vec()
}

/// key-replaced-under-same-id: the client trusts timestamp v10 (signed by a compromised
/// timestamp key). Root v2 keeps the timestamp key id but puts a new key behind it, and the
/// repository restarts at timestamp v2 signed by the new key under the old id.
fn fixture_key_replaced_under_same_keyid() -> (Vec<u8>, Server) {
    let (keys, _repo, mut server) = fresh_repo(Config::default());
    let stored =
        resign::<Timestamp>(server.get("timestamp.json").unwrap(), "timestamp", |t| t.version = 10, &[&keys.timestamp]);
    let old_id = keys.timestamp.key_id();
    let new_key = key(21);
    let mut root = Signed::<Root>::from_bytes(&RoleName::root(), server.get("1.root.json").unwrap()).unwrap().signed;
    root.version = 2;
    root.keys.insert(old_id, new_key.public_key());
    let root2 = Signed::sign(root, &[&keys.root]).unwrap();
    server.files.insert("2.root.json".into(), root2.bytes().to_vec());
    let mut ts = current_timestamp(&server);
    ts.version = 2;
    server.files.insert("timestamp.json".into(), sign_under_id(ts, &new_key, old_id));
    (stored, server)
}

#[test]
fn key_replaced_under_same_keyid_is_rotated() {
    let (stored, server) = fixture_key_replaced_under_same_keyid();
    let mut up = client(&root_v1(&server), t0());
    up.load_trusted_timestamp(&stored).unwrap();
    refresh(&server, &mut up).unwrap();
    assert_eq!((up.root().signed.version, up.timestamp().unwrap().signed.version), (2, 2));
    // The stored timestamp was signed by the key that is gone.
    assert!(matches!(up.load_trusted_timestamp(&stored), Err(Error::ThresholdNotMet { .. })));
}

#[test]
fn stored_timestamp_offered_late_does_not_count_as_updated() {
    // late-stored-timestamp: after this run's timestamp update, the caller offers a stored
    // (expired) timestamp; it must not be taken as checked.
    let server = fixture_expired("timestamp");
    let stored = server.get("timestamp.json").unwrap().to_vec();
    let mut up = client(&root_v1(&server), t0() + TimeDelta::days(2));
    up.finish_root().unwrap();
    assert!(up.update_timestamp(&stored).is_err());
    let mut up = client(&root_v1(&server), t0());
    up.finish_root().unwrap();
    up.update_timestamp(&stored).unwrap();
    up.load_trusted_timestamp(&stored).unwrap();
    assert!(matches!(up.snapshot_request(), Err(Error::OutOfOrder { .. })));
}
