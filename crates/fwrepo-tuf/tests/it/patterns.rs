//! Delegation path patterns against the reference implementation: a table written by
//! python-tuf (see `data/gen_tables.py`), and a terminating `[seq]` delegation in a search.

use fwrepo_tuf::Config;
use fwrepo_tuf::pattern::path_matches;

use crate::common::{
    Keys, TreeRole, client, delegation, find, fresh_repo, path, publish_tree, refresh, root_v1, t0, targets_role,
};

#[test]
fn path_patterns_match_as_python_tuf_does() {
    let table: serde_json::Value = serde_json::from_str(include_str!("data/path-patterns.json")).unwrap();
    assert!(table["source"].as_str().unwrap().starts_with("python-tuf 7"));
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() > 1000);
    let mut wrong = Vec::new();
    for case in cases {
        let (pattern, p, expected) = (case[0].as_str().unwrap(), case[1].as_str().unwrap(), case[2].as_bool().unwrap());
        if path_matches(pattern, p) != expected {
            wrong.push(format!("pattern {pattern:?} path {p:?}: python-tuf says {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

/// seq-terminating: targets delegates `fw/[ab]*` to `seq` (terminating, lists nothing), then
/// `fw/*` to `other`, which lists `fw/a.bin`. The terminating role must end the search.
fn fixture_seq_terminating() -> crate::common::Server {
    let keys = Keys::new();
    let mut server = fresh_repo(Config::default()).2;
    let top = targets_role(
        true,
        &[],
        vec![
            delegation("seq", &["fw/[ab]*"], &[&keys.targets], true),
            delegation("other", &["fw/*"], &[&keys.targets], false),
        ],
    );
    publish_tree(
        &mut server,
        &keys,
        vec![
            TreeRole { name: "targets", targets: top, signers: vec![&keys.targets] },
            TreeRole { name: "seq", targets: targets_role(false, &[], vec![]), signers: vec![&keys.targets] },
            TreeRole {
                name: "other",
                targets: targets_role(false, &["fw/a.bin", "fw/c.bin"], vec![]),
                signers: vec![&keys.targets],
            },
        ],
    );
    server
}

#[test]
fn seq_pattern_in_delegation_paths() {
    let server = fixture_seq_terminating();
    let mut up = client(&root_v1(&server), t0());
    refresh(&server, &mut up).unwrap();
    // `fw/a.bin` is in the terminating role's `[ab]` set: the lower-priority copy is not used.
    assert_eq!(find(&server, &mut up, &path("fw/a.bin")).unwrap(), None);
    // `fw/c.bin` is outside it and found in `other`.
    assert_eq!(find(&server, &mut up, &path("fw/c.bin")).unwrap().unwrap().role.as_str(), "other");
}
