//! Repository commands: keys generate, init --keys, publish, export, timestamp, root rotate.

use std::os::unix::fs::PermissionsExt as _;

use crate::{assert_one_line_error, fwrepo};

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = fwrepo(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn metadata_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn init_publish_export_timestamp_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s).display().to_string();
    let (data, keys, out) = (p("data"), p("keys"), p("export"));
    assert!(ok(&["init", "--data", &data, "--keys", &keys]).contains("signed 1.root.json"));
    let mode = std::fs::metadata(tmp.path().join("keys/targets.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut series = fwrepo_synth::Series::new(fwrepo_synth::SeriesParams::small());
    for n in 0..2 {
        let dir = tmp.path().join(format!("rel-{n}"));
        series.next().unwrap().write_to(&dir).unwrap();
        assert!(
            ok(&["publish", "--data", &data, "--keys", &keys, &dir.join("release.toml").display().to_string()])
                .contains("published release")
        );
    }
    ok(&["export", "--data", &data, "--out", &out]);
    assert!(metadata_names(tmp.path().join("export").as_path()).contains(&"3.targets.json".to_owned()));

    // Refused: duplicate release, exposed key, keys inside the data dir. Nothing changes.
    let before = metadata_names(tmp.path().join("export").as_path());
    let manifest = tmp.path().join("rel-0/release.toml").display().to_string();
    assert_one_line_error(&fwrepo(&["publish", "--data", &data, "--keys", &keys, &manifest]), "already published");
    let key = tmp.path().join("keys/snapshot.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let third = tmp.path().join("rel-2");
    series.next().unwrap().write_to(&third).unwrap();
    let third = third.join("release.toml").display().to_string();
    assert_one_line_error(&fwrepo(&["publish", "--data", &data, "--keys", &keys, &third]), "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inside = format!("{data}/keys");
    ok(&["keys", "generate", "--out", &inside]);
    assert_one_line_error(&fwrepo(&["publish", "--data", &data, "--keys", &inside, &third]), "inside the data dir");
    ok(&["export", "--data", &data, "--out", &out]);
    assert_eq!(metadata_names(tmp.path().join("export").as_path()), before);

    assert!(ok(&["timestamp", "--data", &data, "--keys", &keys]).contains("timestamp.json"));
    let new = p("new-keys");
    ok(&["keys", "generate", "--out", &new, "--role", "root"]);
    assert!(ok(&["root", "rotate", "--data", &data, "--keys", &keys, "--new-keys", &new]).contains("2.root.json"));
    ok(&["export", "--data", &data, "--out", &out]);
    assert!(metadata_names(tmp.path().join("export").as_path()).contains(&"2.root.json".to_owned()));
}

#[test]
fn init_without_keys_still_makes_a_plain_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data").display().to_string();
    ok(&["init", "--data", &data]);
    assert!(tmp.path().join("data/fwrepo.json").is_file());
    let err = fwrepo(&["export", "--data", &data, "--out", &tmp.path().join("x").display().to_string()]);
    assert_one_line_error(&err, "has no signed metadata");
}
