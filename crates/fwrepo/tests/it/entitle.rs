//! Entitlement and token commands.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fwrepo_entitle::{IssuerKeyring, Revocations, Scope, UnixTime, Verifier};

use crate::{assert_one_line_error, fwrepo};

struct Fixture {
    _dir: tempfile::TempDir,
    data: String,
    keys: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let keys = dir.path().join("keys").display().to_string();
    assert!(fwrepo(&["init", "--data", &data]).status.success());
    let out = fwrepo(&["keys", "rotate-issuer", "--keys", &keys]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let serials = dir.path().join("serials.csv");
    std::fs::write(
        &serials,
        "serial,model,warranty_end\nCZ1234ABCD,ProLiant DL380 Gen10,2099-12-31\nCZ0000OLD1,ProLiant DL360 Gen9,2015-01-31\n",
    )
    .unwrap();
    let partners = dir.path().join("partners.csv");
    let cred = hex::encode(sha2_of(b"partner-secret"));
    std::fs::write(
        &partners,
        format!("partner,name,level,status,models,may_mirror,credential_sha256\nP-1,Acme Service,authorized,active,ProLiant DL380 Gen10,true,{cred}\n"),
    )
    .unwrap();
    let out =
        fwrepo(&["entitlements", "import", "--data", &data, serials.to_str().unwrap(), partners.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Fixture { _dir: dir, data, keys }
}

fn sha2_of(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn keyring(keys: &str) -> IssuerKeyring {
    IssuerKeyring::from_bytes(&std::fs::read(Path::new(keys).join("issuer.jwks")).unwrap()).unwrap()
}

#[test]
fn an_in_warranty_serial_gets_a_token_that_verifies_for_its_model_only() {
    let f = fixture();
    let out = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--serial", "CZ1234ABCD"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "the token alone on stdout");
    let token = stdout.trim();
    let v = Verifier::new(keyring(&f.keys).verifying_keys(), Revocations::new(), "fwrepo");
    let claims = v.verify(token, UnixTime::now(), Scope::Download, &["ProLiant DL380 Gen10"]).unwrap();
    assert_eq!(claims.sub.to_string(), "serial:CZ1234ABCD");
    assert!(v.verify(token, UnixTime::now(), Scope::Download, &["ProLiant DL360 Gen9"]).is_err());
    assert!(v.verify(token, UnixTime::now(), Scope::Mirror, &["ProLiant DL380 Gen10"]).is_err());
}

#[test]
fn refusals_are_one_line_and_do_not_say_which_record_exists() {
    let f = fixture();
    let expired = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--serial", "CZ0000OLD1"]);
    assert_one_line_error(&expired, "unknown or expired serial");
    let unknown = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--serial", "NOSUCH0001"]);
    assert_one_line_error(&unknown, "unknown or expired serial");
    assert_eq!(expired.stderr, unknown.stderr, "an expired serial reads like an unknown one");
    assert_one_line_error(
        &fwrepo(&[
            "token",
            "issue",
            "--data",
            &f.data,
            "--keys",
            &f.keys,
            "--serial",
            "CZ1234ABCD",
            "--scope",
            "mirror",
        ]),
        "partners only",
    );
}

#[test]
fn a_revoked_partner_gets_no_token() {
    let f = fixture();
    let ok = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--partner", "P-1", "--scope", "mirror"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(fwrepo(&["entitlements", "revoke", "--data", &f.data, "--partner", "P-1"]).status.success());
    let refused = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--partner", "P-1"]);
    assert_one_line_error(&refused, "inactive partner");
    let shown = fwrepo(&["entitlements", "show", "--data", &f.data, "--partner", "P-1"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["status"], "revoked");
    assert!(!shown.stdout.windows(14).any(|w| w == b"partner-secret"), "credential shown in plain");
}

#[test]
fn a_bad_import_row_is_named_and_nothing_is_applied() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("more.csv");
    std::fs::write(&bad, "serial,model,warranty_end\nCZ9999NEW1,ProLiant DL20 Gen10,2099-01-01\nCZ9999NEW2,ProLiant DL20 Gen10,not-a-date\n").unwrap();
    let out = fwrepo(&["entitlements", "import", "--data", &f.data, bad.to_str().unwrap()]);
    assert_one_line_error(&out, "more.csv");
    assert!(String::from_utf8_lossy(&out.stderr).contains('3'), "line number missing");
    let listed = fwrepo(&["entitlements", "list", "--data", &f.data, "--csv", "serials"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("CZ9999NEW1"), "half a file was applied");
}

#[test]
fn issuer_keys_readable_by_others_are_refused_and_rotation_keeps_old_keys() {
    let f = fixture();
    let path = Path::new(&f.keys).join("issuer.jwks");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let first = keyring(&f.keys).signing_kid().clone();
    let out = fwrepo(&["keys", "rotate-issuer", "--keys", &f.keys]);
    assert!(out.status.success());
    let ring = keyring(&f.keys);
    assert_ne!(ring.signing_kid(), &first);
    assert!(ring.verifying_keys().contains(first.as_str()));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_one_line_error(
        &fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--serial", "CZ1234ABCD"]),
        "chmod 600",
    );
}

#[test]
fn revoking_a_subject_is_recorded() {
    let f = fixture();
    assert!(fwrepo(&["token", "revoke", "--data", &f.data, "--subject", "serial:CZ1234ABCD"]).status.success());
    let refused = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--serial", "CZ1234ABCD"]);
    assert_one_line_error(&refused, "unknown or expired serial");
    assert_one_line_error(&fwrepo(&["token", "revoke", "--data", &f.data, "--subject", "nobody"]), "");
}

/// The revocations recorded in `data`, read as the server reads them.
fn revocations(data: &str) -> Revocations {
    let repo = fwrepo_repo::Repo::open_with_families(Path::new(data), true, fwrepo_entitle::COLUMN_FAMILIES).unwrap();
    fwrepo_entitle::Entitlements::new(repo.store().db().clone()).revocations().unwrap()
}

#[test]
fn reimport_does_not_lift_manual_subject_revocation() {
    let f = fixture();
    let partners = Path::new(&f.data).parent().unwrap().join("partners.csv");
    let partners = partners.to_str().unwrap();
    let before = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--partner", "P-1"]);
    assert!(before.status.success());
    assert!(fwrepo(&["token", "revoke", "--data", &f.data, "--subject", "partner:P-1"]).status.success());
    // The routine re-import of the unchanged file.
    let out = fwrepo(&["entitlements", "import", "--data", &f.data, partners]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created, 0 updated, 1 unchanged"));
    let refused = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--partner", "P-1"]);
    assert_one_line_error(&refused, "inactive partner");
    let old = String::from_utf8(before.stdout).unwrap();
    let v = Verifier::new(keyring(&f.keys).verifying_keys(), revocations(&f.data), "fwrepo");
    assert_eq!(v.authenticate(old.trim(), UnixTime::now()).unwrap_err(), fwrepo_entitle::Reject::RevokedSubject);

    // Only `token unrevoke` lifts it; a second time there is nothing to lift.
    let out = fwrepo(&["token", "unrevoke", "--data", &f.data, "--subject", "partner:P-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = fwrepo(&["token", "issue", "--data", &f.data, "--keys", &f.keys, "--partner", "P-1"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_one_line_error(
        &fwrepo(&["token", "unrevoke", "--data", &f.data, "--subject", "partner:P-1"]),
        "is not revoked",
    );
    // A subject revoked by its record's status is lifted by an import, not by unrevoke.
    assert!(fwrepo(&["entitlements", "revoke", "--data", &f.data, "--partner", "P-1"]).status.success());
    assert_one_line_error(
        &fwrepo(&["token", "unrevoke", "--data", &f.data, "--subject", "partner:P-1"]),
        "revoked by its record's status",
    );
}

#[test]
fn jti_starting_with_a_dash_can_be_revoked_and_unrevoked() {
    let f = fixture();
    let spellings: [&[&str]; 2] = [&["--jti=-Abc_1"], &["--jti", "-Abc_2"]];
    for (i, spelling) in spellings.iter().enumerate() {
        let jti = format!("-Abc_{}", i + 1);
        let mut args = vec!["token", "revoke", "--data", &f.data];
        args.extend_from_slice(spelling);
        let out = fwrepo(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(revocations(&f.data).is_token_revoked(&jti), "{args:?}");
        args[1] = "unrevoke";
        let out = fwrepo(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!revocations(&f.data).is_token_revoked(&jti), "{args:?}");
    }
    assert_one_line_error(&fwrepo(&["token", "unrevoke", "--data", &f.data, "--jti", "never-revoked"]), "not revoked");
}

#[test]
fn ten_year_token_lifetime_is_refused() {
    let f = fixture();
    for lifetime in ["315360000", "86401", "0"] {
        let out = fwrepo(&[
            "token",
            "issue",
            "--data",
            &f.data,
            "--keys",
            &f.keys,
            "--serial",
            "CZ1234ABCD",
            "--lifetime",
            lifetime,
        ]);
        assert_one_line_error(&out, "--lifetime must be 1 to 86400");
    }
    let out = fwrepo(&[
        "token",
        "issue",
        "--data",
        &f.data,
        "--keys",
        &f.keys,
        "--serial",
        "CZ1234ABCD",
        "--lifetime",
        "86400",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Reads the bytes of a published target through the signed metadata.
fn published(data: &str, path: &str) -> Option<Vec<u8>> {
    let repo = fwrepo_repo::Repo::open_read_only(Path::new(data)).unwrap();
    let targets = repo.targets().unwrap();
    let (_, t) = targets.iter().find(|(p, _)| p.as_str() == path)?;
    let blob: fwrepo_store::Digest = t.custom.as_ref()?["blake3"].as_str()?.parse().ok()?;
    let bytes = repo.store().read_all(&blob).unwrap().concat();
    assert_eq!(bytes.len() as u64, t.length, "signed length of {path}");
    Some(bytes)
}

#[test]
fn issuer_keys_and_revocations_are_published_as_signed_targets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let keys = dir.path().join("keys").display().to_string();
    assert!(fwrepo(&["keys", "generate", "--out", &keys]).status.success());
    assert!(fwrepo(&["init", "--data", &data, "--keys", &keys]).status.success());
    let out = fwrepo(&["keys", "rotate-issuer", "--keys", &keys, "--data", &data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let issuers = published(&data, "auth/issuers.json").expect("issuers published");
    assert_eq!(issuers, keyring(&keys).public_jwks_bytes());
    assert!(!String::from_utf8_lossy(&issuers).contains("\"d\""), "a private key was published");
    let empty = Revocations::from_json(&published(&data, "auth/revocations.json").unwrap()).unwrap();
    assert!(empty.is_empty());

    // Without keys the revocation is recorded and the operator is told how to publish it.
    let out = fwrepo(&["token", "revoke", "--data", &data, "--subject", "serial:CZ1234ABCD"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fwrepo auth publish"));
    let still = Revocations::from_json(&published(&data, "auth/revocations.json").unwrap()).unwrap();
    assert!(still.is_empty(), "published without keys");

    // With keys it is published at once.
    let out = fwrepo(&["token", "revoke", "--data", &data, "--jti", "0123456789abcdef", "--keys", &keys]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revs = Revocations::from_json(&published(&data, "auth/revocations.json").unwrap()).unwrap();
    assert!(revs.is_token_revoked("0123456789abcdef"));
    assert!(revs.is_subject_revoked(&"serial:CZ1234ABCD".parse().unwrap()));

    // A rotated issuer key is published and the old one stays, so old tokens keep verifying.
    let before = keyring(&keys).signing_kid().clone();
    assert!(fwrepo(&["keys", "rotate-issuer", "--keys", &keys, "--data", &data]).status.success());
    let jwks = fwrepo_entitle::VerifyingKeys::from_jwks(&published(&data, "auth/issuers.json").unwrap()).unwrap();
    assert_eq!(jwks.len(), 2);
    assert!(jwks.contains(before.as_str()));

    // Publishing needs signed metadata.
    let plain = dir.path().join("plain").display().to_string();
    assert!(fwrepo(&["init", "--data", &plain]).status.success());
    assert_one_line_error(&fwrepo(&["auth", "publish", "--data", &plain, "--keys", &keys]), "no signed metadata");
}
