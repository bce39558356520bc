//! The client directory, login and renewal, and offline lookups.

use std::os::unix::fs::PermissionsExt;

use fwget::dir::{Credential, TokenFile};
use fwrepo_fetch::{Fault, Method};

use crate::support::*;

fn origin_with_release() -> Origin {
    let mut o = Origin::new();
    let rom = data(1, 40_000);
    o.release("2025.01.0", "2025-01-15", &[Comp { name: "System ROM", version: "1.0", models: &[DL380], bytes: &rom }]);
    o
}

#[tokio::test]
async fn login_stores_the_token_owner_only_and_peers_send_it() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let t = c.login(Credential::Serial("S1".into())).await.unwrap();
    assert_eq!(t.token, "tok-1");
    let mode = std::fs::metadata(c.dir.token_path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let posted = o.peer.requests().into_iter().find(|r| r.method == Method::Post).unwrap();
    assert_eq!(posted.path, "/v1/tokens");
    let body: serde_json::Value = serde_json::from_slice(posted.json.as_ref().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({ "serial": "S1" }));
    c.authorize().await.unwrap();
    let (_, all) = c.refresh().await.unwrap();
    c.fetch(&all, &all, &tmp.path().join("out"), &[], &()).await.unwrap();
    let blob_reqs: Vec<_> = o.peer.requests().into_iter().filter(|r| r.path.starts_with("/v1/blobs/")).collect();
    assert!(!blob_reqs.is_empty());
    assert!(blob_reqs.iter().all(|r| r.bearer.as_deref() == Some("tok-1")));
}

#[tokio::test]
async fn a_token_near_expiry_is_renewed_with_the_stored_credential() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let old = TokenFile {
        token: "old".into(),
        expires_at: chrono::Utc::now().timestamp() + 60,
        credential: Credential::Agreement("AG-1".into()),
    };
    c.dir.save_token(&old).unwrap();
    let t = c.authorize().await.unwrap().unwrap();
    assert_eq!(t.token, "tok-1");
    let posted = o.peer.requests().into_iter().find(|r| r.method == Method::Post).unwrap();
    let body: serde_json::Value = serde_json::from_slice(posted.json.as_ref().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({ "agreement": "AG-1" }));
    assert_eq!(c.dir.token().unwrap().unwrap().token, "tok-1");

    // A token far from expiry is used as it is.
    let fresh = TokenFile { expires_at: chrono::Utc::now().timestamp() + 3600, token: "fresh".into(), ..old };
    c.dir.save_token(&fresh).unwrap();
    let n = o.peer.requests().len();
    assert_eq!(c.authorize().await.unwrap().unwrap().token, "fresh");
    assert_eq!(o.peer.requests().len(), n);
}

#[tokio::test]
async fn a_refused_credential_is_not_entitled() {
    let o = origin_with_release();
    o.peer.fault("/v1/tokens", Fault::Status(403), None);
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let e = c.login(Credential::Serial("S9".into())).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::NOT_ENTITLED, "{e}");
    assert!(c.dir.token().unwrap().is_none());
}

#[tokio::test]
async fn lookups_work_offline_from_verified_metadata() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let (_, online) = c.refresh().await.unwrap();
    for f in o.peer.requests() {
        o.peer.remove(&f.path);
    }
    let offline = fwget::client::stored_targets(&c.dir).await.unwrap();
    assert_eq!(offline, online);
}

#[tokio::test]
async fn tampered_stored_metadata_is_refused_offline() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    c.refresh().await.unwrap();
    // Flip a byte in every stored file: signatures no longer verify.
    let files = c.dir.root.join("metadata/files");
    for e in std::fs::read_dir(&files).unwrap() {
        let p = e.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0x01;
        std::fs::write(&p, b).unwrap();
    }
    let e = fwget::client::stored_targets(&c.dir).await.unwrap_err();
    assert_eq!(e.exit_code(), fwget::exit::VERIFICATION, "{e}");
}

#[test]
fn a_config_with_an_unknown_key_is_refused() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let mut text = std::fs::read_to_string(c.dir.config_path()).unwrap();
    text.push_str("mirorrs = [\"https://typo.example\"]\n");
    std::fs::write(c.dir.config_path(), text).unwrap();
    let e = c.dir.config().unwrap_err();
    assert!(e.to_string().contains("mirorrs"), "{e}");
}

#[tokio::test]
async fn a_complete_working_file_does_not_count_as_installed() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let (_, all) = c.refresh().await.unwrap();
    let out = tmp.path().join("out");
    let r = c.fetch(&all, &all, &out, &[], &()).await.unwrap();
    let cat = fwget::catalog::Catalog::from_targets(all);
    let installed = fwget::client::inventory_of_dir(&out, &cat).unwrap();
    assert_eq!(installed.keys().collect::<Vec<_>>(), ["System ROM"]);
    // Killed after the last chunk but before the rename: the bytes are right but unverified.
    let f = &r.outcome.files[0].path;
    std::fs::rename(f, out.join(".fwget-rom.bin.part")).unwrap();
    assert!(fwget::client::inventory_of_dir(&out, &cat).unwrap().is_empty());
}

#[tokio::test]
async fn a_partner_logs_in_with_its_credential() {
    let o = origin_with_release();
    let tmp = tempfile::tempdir().unwrap();
    let c = client(tmp.path(), &o, &[]);
    let cred = Credential::Partner { partner: "acme".into(), credential: "pc_secret".into() };
    c.login(cred.clone()).await.unwrap();
    let posted = o.peer.requests().into_iter().find(|r| r.method == Method::Post).unwrap();
    let body: serde_json::Value = serde_json::from_slice(posted.json.as_ref().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({ "partner_credential": "pc_secret" }));
    assert_eq!(c.dir.token().unwrap().unwrap().credential, cred, "kept for renewal");
}
