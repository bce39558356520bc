//! Target path and role name rules, key id and digest spelling.

use fwrepo_tuf::{KeyId, RoleName, Sha256, TargetPath};

#[test]
fn target_path_traversal_and_odd_characters_are_refused() {
    for bad in [
        "",
        "../x",
        "a/../x",
        "..",
        "/abs",
        "/etc/passwd",
        "a//b",
        "a/",
        "./a",
        "a/./b",
        "a\0b",
        "a\\b",
        "..\\x",
        "a\"b",
        "a\nb",
        "e\u{301}", // not NFC
    ] {
        assert!(TargetPath::new(bad).is_err(), "{bad:?} accepted");
    }
    let long = "a".repeat(1025);
    assert!(TargetPath::new(long).is_err());
}

#[test]
fn target_path_accepts_ordinary_paths() {
    for good in ["a", "firmware/cp022345.scexe", "2014.02.0/iLO 4/ilo4_140.bin", "é/x..y", "...", "a/.hidden"] {
        let p = TargetPath::new(good).unwrap();
        assert_eq!(p.as_str(), good);
    }
    let p = TargetPath::new("a/b/c.bin").unwrap();
    assert_eq!((p.dir(), p.file_name()), ("a/b", "c.bin"));
}

#[test]
fn target_path_is_checked_when_deserialized() {
    assert!(serde_json::from_str::<TargetPath>("\"../x\"").is_err());
    assert!(serde_json::from_str::<TargetPath>("\"ok/x\"").is_ok());
}

#[test]
fn role_names_are_opaque_but_never_empty() {
    for odd in ["/delegatedrole", "../delegatedrole", "..", ".", "a?b#c", "a\\b", "a\"b", "a\0", "e\u{301}", "a/b"] {
        assert_eq!(RoleName::new(odd).unwrap().as_str(), odd);
    }
    assert!(RoleName::new("").is_err());
    assert!(serde_json::from_str::<RoleName>("\"\"").is_err());
    // Not valid Unicode (a lone surrogate): refused by the parser before it is a name.
    assert!(serde_json::from_str::<RoleName>("\"\\ud800\"").is_err());
    assert!(RoleName::new("bins-0f").is_ok());
    assert!(RoleName::targets().is_top_level());
    assert!(!RoleName::new("bins-0").unwrap().is_top_level());
}

#[test]
fn role_names_are_percent_encoded_as_python_tuf_does() {
    let table: serde_json::Value = serde_json::from_str(include_str!("data/role-names.json")).unwrap();
    assert!(table["source"].as_str().unwrap().starts_with("python-tuf 7"));
    for case in table["cases"].as_array().unwrap() {
        let (name, encoded) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        let role = RoleName::new(name).unwrap();
        assert_eq!(role.encoded(), encoded, "{name:?}");
        assert_eq!(fwrepo_tuf::layout::versioned_file(&role, 3), format!("3.{encoded}.json"));
        let file = fwrepo_tuf::layout::versioned_file(&role, 3);
        assert!(!file.contains(['/', '\\', '?', '#', '\0']) && !file.chars().any(char::is_control), "{file:?}");
    }
}

#[test]
fn key_ids_and_digests_are_lowercase_hex_sha256() {
    let lower = "ab".repeat(32);
    assert!(KeyId::new(&lower).is_ok());
    assert!(KeyId::new(&lower.to_uppercase()).is_err());
    assert!(KeyId::new(&"ab".repeat(31)).is_err());
    assert!(Sha256::new(&"zz".repeat(32)).is_err());
    assert_eq!(Sha256::of(b"abc").to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
