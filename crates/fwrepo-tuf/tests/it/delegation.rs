//! The delegation graph on the client side: which delegation a role file is verified
//! against, path pattern matching, and how role names become file names.

use fwrepo_tuf::{Config, Error, Lookup, RoleName};

use crate::common::{
    Keys, TreeRole, client, delegation, find, fresh_repo, key, path, publish_tree, refresh, root_v1, t0, targets_role,
};

/// shared-role: `release` is delegated by `parent-a` (key A, every `*/*` path) and by
/// `parent-b` (key B, `b/*`). `release.json` is signed with `release_signers` and lists
/// `b/evil.bin`, a path parent-b gave to key B alone.
fn fixture_shared_role(release_signers: &[u8]) -> crate::common::Server {
    let keys = Keys::new();
    let (a, b) = (key(50), key(51));
    let signers: Vec<_> = release_signers.iter().map(|n| key(*n)).collect();
    let mut server = fresh_repo(Config::default()).2;
    let top = targets_role(
        true,
        &[],
        vec![
            delegation("parent-a", &["a/*"], &[&keys.targets], false),
            delegation("parent-b", &["b/*"], &[&keys.targets], false),
        ],
    );
    let parent_a = targets_role(false, &[], vec![delegation("release", &["*/*"], &[&a], false)]);
    let parent_b = targets_role(false, &[], vec![delegation("release", &["b/*"], &[&b], false)]);
    let release = targets_role(false, &["b/evil.bin"], vec![]);
    publish_tree(
        &mut server,
        &keys,
        vec![
            TreeRole { name: "targets", targets: top, signers: vec![&keys.targets] },
            TreeRole { name: "parent-a", targets: parent_a, signers: vec![&keys.targets] },
            TreeRole { name: "parent-b", targets: parent_b, signers: vec![&keys.targets] },
            TreeRole { name: "release", targets: release, signers: signers.iter().collect() },
        ],
    );
    server
}

fn load_parent_b(server: &crate::common::Server, up: &mut fwrepo_tuf::Updater) {
    let (parent_b, top) = (RoleName::new("parent-b").unwrap(), RoleName::targets());
    let req = up.targets_request(&parent_b).unwrap();
    up.update_delegated_targets(&parent_b, &top, server.get(&req.name).unwrap()).unwrap();
}

#[test]
fn delegated_role_verified_per_delegator() {
    let server = fixture_shared_role(&[50]);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    // Through parent-a, key A is the right key: `release` loads and is searched.
    assert_eq!(find(&server, &mut up, &path("a/x.bin")).unwrap(), None);
    assert!(up.targets(&RoleName::new("release").unwrap()).is_some());
    // Through parent-b the loaded file is not trusted as it is: the updater asks for it again
    // and checks it against parent-b's key B, which did not sign it.
    load_parent_b(&server, &mut up);
    match up.find_target(&path("b/evil.bin")).unwrap() {
        Lookup::NeedRole { role, delegator, .. } => {
            assert_eq!((role.as_str(), delegator.as_str()), ("release", "parent-b"));
        }
        other => panic!("key A's file was trusted on parent-b's path: {other:?}"),
    }
    let err = find(&server, &mut up, &path("b/evil.bin")).unwrap_err();
    assert!(
        matches!(err, Error::ThresholdNotMet { ref role, valid: 0, threshold: 1 } if role.as_str() == "release"),
        "{err}"
    );
}

#[test]
fn shared_role_signed_for_both_delegators_is_found_through_either() {
    let server = fixture_shared_role(&[50, 51]);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(find(&server, &mut up, &path("a/x.bin")).unwrap(), None);
    let info = find(&server, &mut up, &path("b/evil.bin")).unwrap().unwrap();
    assert_eq!(info.role.as_str(), "release");
    // Once verified on both edges, no further fetch is needed.
    assert!(matches!(up.find_target(&path("b/evil.bin")).unwrap(), Lookup::Found(_)));
}

#[test]
fn shared_role_reloaded_with_other_bytes_is_refused() {
    let server = fixture_shared_role(&[50, 51]);
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    assert_eq!(find(&server, &mut up, &path("a/x.bin")).unwrap(), None);
    load_parent_b(&server, &mut up);
    let name = fwrepo_tuf::layout::versioned_file(&RoleName::new("release").unwrap(), 1);
    let mut other = server.get(&name).unwrap().to_vec();
    other.push(b' ');
    let (release, parent_b) = (RoleName::new("release").unwrap(), RoleName::new("parent-b").unwrap());
    let err = up.update_delegated_targets(&release, &parent_b, &other).unwrap_err();
    assert!(matches!(err, Error::MetaMismatch { ref role, .. } if role.as_str() == "release"), "{err}");
}

#[test]
fn duplicate_delegated_role_names_are_refused() {
    let keys = Keys::new();
    let mut server = fresh_repo(Config::default()).2;
    let top = targets_role(
        true,
        &[],
        vec![delegation("dup", &["a/*"], &[&keys.targets], false), delegation("dup", &["b/*"], &[&key(50)], false)],
    );
    publish_tree(&mut server, &keys, vec![TreeRole { name: "targets", targets: top, signers: vec![&keys.targets] }]);
    let mut up = client(&root_v1(&server), t0());
    let err = refresh(&server, &mut up).unwrap_err();
    assert!(matches!(err, Error::Malformed { ref reason, .. } if reason.contains("more than once")), "{err}");
}

/// odd-role-names: targets delegates `a/*`, `b/*`, `c/*` and `d/*` to roles named
/// `/delegatedrole`, `../delegatedrole`, `a?b#c` and `rôle`, each listing one target; the
/// files are published under python-tuf's encoded names.
fn fixture_odd_role_names() -> crate::common::Server {
    let keys = Keys::new();
    let mut server = fresh_repo(Config::default()).2;
    let names = [("/delegatedrole", "a"), ("../delegatedrole", "b"), ("a?b#c", "c"), ("rôle", "d")];
    let top = targets_role(
        true,
        &[],
        names.iter().map(|(n, dir)| delegation(n, &[&format!("{dir}/*")], &[&keys.targets], false)).collect(),
    );
    let mut roles = vec![TreeRole { name: "targets", targets: top, signers: vec![&keys.targets] }];
    for (name, dir) in names {
        let file = format!("{dir}/x.bin");
        roles.push(TreeRole { name, targets: targets_role(false, &[&file], vec![]), signers: vec![&keys.targets] });
    }
    publish_tree(&mut server, &keys, roles);
    server
}

#[test]
fn odd_delegated_role_names_are_percent_encoded() {
    let server = fixture_odd_role_names();
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    for (dir, role, file) in [
        ("a", "/delegatedrole", "1.%2Fdelegatedrole.json"),
        ("b", "../delegatedrole", "1...%2Fdelegatedrole.json"),
        ("c", "a?b#c", "1.a%3Fb%23c.json"),
        ("d", "rôle", "1.r%C3%B4le.json"),
    ] {
        let p = path(&format!("{dir}/x.bin"));
        match up.find_target(&p).unwrap() {
            Lookup::NeedRole { role: r, request, .. } => assert_eq!((r.as_str(), request.name.as_str()), (role, file)),
            other => panic!("{other:?}"),
        }
        assert_eq!(find(&server, &mut up, &p).unwrap().unwrap().role.as_str(), role);
    }
}

#[test]
fn empty_delegated_role_name_is_refused() {
    // empty-role-name: targets, validly signed, delegating to a role named "".
    let keys = Keys::new();
    let top = targets_role(true, &[], vec![delegation("x", &["a/*"], &[&keys.targets], false)]);
    let mut value = serde_json::to_value(&top).unwrap();
    value["delegations"]["roles"][0]["name"] = serde_json::json!("");
    let sig = keys.targets.sign(&fwrepo_tuf::cjson::encode(&value).unwrap());
    let bytes = serde_json::to_vec(&serde_json::json!({"signed": value, "signatures": [sig]})).unwrap();
    let err = fwrepo_tuf::Signed::<fwrepo_tuf::Targets>::from_bytes(&RoleName::targets(), &bytes).unwrap_err();
    assert!(matches!(err, Error::Malformed { ref reason, .. } if reason.contains("empty")), "{err}");
}
