//! Which hashes of a target (and of a metadata file) are checked: every listed sha256 and
//! sha512, at least one of them, each well-formed.

use std::collections::BTreeMap;

use fwrepo_tuf::{Config, Error, MetaFile, RoleName, TargetFile, TargetInfo, TargetPath};
use sha2::Digest as _;

use crate::common::{Keys, TreeRole, client, find, fresh_repo, path, publish_tree, refresh, root_v1, t0, targets_role};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn sha512_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha512::digest(bytes))
}

/// A target of `bytes` described by exactly `hashes`.
fn described(bytes: &[u8], hashes: &[(&str, String)]) -> TargetFile {
    let mut f = TargetFile::describing(bytes, None);
    f.hashes = hashes.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    f
}

/// other-producer: top-level targets v2 lists `fw/x.bin` with `hashes` as another repository
/// implementation might write them.
fn published_with(bytes: &[u8], hashes: &[(&str, String)]) -> (crate::common::Server, TargetPath) {
    let keys = Keys::new();
    let mut server = fresh_repo(Config::default()).2;
    let mut top = targets_role(true, &[], vec![]);
    let p = path("fw/x.bin");
    top.targets.insert(p.clone(), described(bytes, hashes));
    publish_tree(&mut server, &keys, vec![TreeRole { name: "targets", targets: top, signers: vec![&keys.targets] }]);
    (server, p)
}

fn lookup(server: &crate::common::Server, p: &TargetPath) -> TargetInfo {
    let mut up = client(&root_v1(server), t0());
    refresh(server, &mut up).unwrap();
    find(server, &mut up, p).unwrap().unwrap()
}

#[test]
fn sha512_only_target_verifies() {
    let bytes = b"firmware listed by sha512 alone";
    let (server, p) = published_with(bytes, &[("sha512", sha512_hex(bytes))]);
    let info = lookup(&server, &p);
    info.verify(bytes).unwrap();
    assert_eq!(info.download_name(true).unwrap(), format!("fw/{}.x.bin", sha512_hex(bytes)));
    let mut tampered = bytes.to_vec();
    tampered[0] ^= 1;
    let err = info.verify(&tampered).unwrap_err();
    assert!(matches!(err, Error::TargetMismatch { ref reason, .. } if reason.contains("sha512")), "{err}");
}

#[test]
fn sha256_and_sha512_target_verifies_and_downloads_by_sha256() {
    let bytes = b"firmware listed by both";
    let (server, p) = published_with(bytes, &[("sha256", sha256_hex(bytes)), ("sha512", sha512_hex(bytes))]);
    let info = lookup(&server, &p);
    info.verify(bytes).unwrap();
    assert_eq!(info.download_name(true).unwrap(), format!("fw/{}.x.bin", sha256_hex(bytes)));
}

#[test]
fn wrong_sha512_beside_right_sha256_is_refused() {
    // half-right-hashes: the sha256 matches the bytes, the sha512 is of other bytes.
    let bytes = b"genuine";
    let (server, p) = published_with(bytes, &[("sha256", sha256_hex(bytes)), ("sha512", sha512_hex(b"other"))]);
    let err = lookup(&server, &p).verify(bytes).unwrap_err();
    assert!(matches!(err, Error::TargetMismatch { ref reason, .. } if reason.contains("sha512")), "{err}");
}

#[test]
fn target_without_known_hash_is_refused() {
    let bytes = b"listed only by algorithms this client cannot check";
    let (server, p) = published_with(bytes, &[("sha1", "00".repeat(20)), ("blake2b-256", "11".repeat(32))]);
    let info = lookup(&server, &p);
    for err in [info.verify(bytes).unwrap_err(), info.verifier().err().unwrap(), info.download_name(true).unwrap_err()]
    {
        assert!(
            matches!(err, Error::TargetMismatch { ref reason, .. } if reason.contains("no sha256 or sha512")),
            "{err}"
        );
    }
    // An unknown algorithm beside a known one is passed over.
    let (server, p) = published_with(bytes, &[("sha1", "00".repeat(20)), ("sha512", sha512_hex(bytes))]);
    lookup(&server, &p).verify(bytes).unwrap();
}

#[test]
fn malformed_hash_values_are_refused_before_naming_a_file() {
    // traversal-in-hash: a sha512 "value" that would put the download outside its directory,
    // and an uppercase sha256 (two spellings of one name).
    let bytes = b"x";
    for hashes in
        [vec![("sha512", "../../../../etc/passwd".to_owned())], vec![("sha256", sha256_hex(bytes).to_uppercase())]]
    {
        let info = TargetInfo { path: path("fw/x.bin"), file: described(bytes, &hashes), role: RoleName::targets() };
        let err = info.download_name(true).unwrap_err();
        assert!(matches!(err, Error::TargetMismatch { ref reason, .. } if reason.contains("lowercase hex")), "{err}");
        assert!(info.verify(bytes).is_err());
    }
}

#[test]
fn sha512_only_metadata_hashes_verify() {
    // A snapshot recording targets.json by sha512 alone, as another producer may write it.
    let (_, repo, server) = fresh_repo(Config::default());
    let bytes = server.get("1.targets.json").unwrap();
    let mut meta = MetaFile::describing(1, bytes);
    meta.hashes = Some(BTreeMap::from([("sha512".to_owned(), sha512_hex(bytes))]));
    let snap = crate::attacks::resign_with(
        repo.snapshot().bytes(),
        "snapshot",
        |s: &mut fwrepo_tuf::Snapshot| {
            s.version = 2;
            s.meta.insert("targets.json".into(), meta.clone());
        },
        &[&Keys::new().snapshot],
    );
    let mut server = server;
    crate::attacks::publish_snapshot(&mut server, &Keys::new(), snap, 2);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    // And a wrong sha512 is refused.
    let mut server2 = server.clone();
    meta.hashes = Some(BTreeMap::from([("sha512".to_owned(), sha512_hex(b"other"))]));
    let snap = crate::attacks::resign_with(
        repo.snapshot().bytes(),
        "snapshot",
        |s: &mut fwrepo_tuf::Snapshot| {
            s.version = 2;
            s.meta.insert("targets.json".into(), meta.clone());
        },
        &[&Keys::new().snapshot],
    );
    crate::attacks::publish_snapshot(&mut server2, &Keys::new(), snap, 2);
    let mut up = client(&root_v1(&server2), t0());
    let err = refresh(&server2, &mut up).unwrap_err();
    assert!(matches!(err, Error::MetaMismatch { what: "sha512", .. }), "{err}");
}
