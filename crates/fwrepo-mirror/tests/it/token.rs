//! The partner's `mirror` token kept between syncs: reused while it has long to live, for the
//! token service and credential it was issued for only, replaced once when the upstream
//! refuses it, never kept readable by others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fwrepo_fetch::Fault;
use fwrepo_mirror::{Error, Mirror};

use crate::hostile::{Upstream, data, mirror, served_timestamp, sync, token_reply};

const TOKEN_FILE: &str = "mirror-token.json";

/// Requests to the token endpoint so far.
fn exchanges(up: &Upstream) -> usize {
    up.peer.requests().iter().filter(|r| r.path == "/v1/tokens").count()
}

/// The bearer tokens the upstream saw on blob requests after the first `skip` requests.
fn blob_bearers(up: &Upstream, skip: usize) -> Vec<String> {
    let log = up.peer.requests();
    log[skip..].iter().filter(|r| r.path.starts_with("/v1/blobs/")).filter_map(|r| r.bearer.clone()).collect()
}

fn stored(m: &Mirror) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(m.dir().join(TOKEN_FILE)).unwrap()).unwrap()
}

/// Rewrites the stored token record with `edit` applied, keeping mode 0600.
fn edit_stored(m: &Mirror, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v = stored(m);
    edit(&mut v);
    let path = m.dir().join(TOKEN_FILE);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// An upstream with one release and a mirror that has synced it once.
async fn synced(dir: &Path) -> (Upstream, Mirror) {
    let mut up = Upstream::new();
    up.publish("2026.01.0", "bios", &data(41, 20_000));
    let m = mirror(dir, &up);
    sync(&m, &up).await.unwrap();
    assert_eq!(exchanges(&up), 1);
    (up, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_reuses_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, m) = synced(dir.path()).await;
    assert_eq!(mode(&m.dir().join(TOKEN_FILE)), 0o600);
    assert!(!m.dir().join("mirror-token.tmp").exists());

    // Nothing changed upstream: no exchange at all.
    let again = sync(&m, &up).await.unwrap();
    assert!(again.unchanged, "{again:?}");
    assert_eq!(exchanges(&up), 1, "the second sync exchanged the credential again");

    // A change upstream is fetched with the stored token, still without an exchange.
    up.peer.insert("/v1/tokens", token_reply("another", 3600));
    let seen = up.peer.requests().len();
    up.publish("2026.02.0", "bios", &data(42, 20_000));
    assert_eq!(sync(&m, &up).await.unwrap().targets_new, 1);
    assert_eq!(exchanges(&up), 1);
    let bearers = blob_bearers(&up, seen);
    assert!(!bearers.is_empty() && bearers.iter().all(|b| b == "t0k3n"), "{bearers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_revoked_midway_fails_the_next_sync_after_one_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, m) = synced(dir.path()).await;
    let served = served_timestamp(&m);
    // The origin revokes the partner: its tokens are refused, and so is its credential.
    up.publish("2026.02.0", "bios", &data(43, 20_000));
    up.peer.fault("/v1/blobs/", Fault::Status(401), None);
    up.peer.fault("/v1/tokens", Fault::Status(403), None);
    let err = sync(&m, &up).await.unwrap_err();
    assert!(matches!(err, Error::Token { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 403"), "{err}");
    assert_eq!(exchanges(&up), 2, "one fresh exchange after the refused token");
    assert!(!m.dir().join(TOKEN_FILE).exists(), "the refused token is kept");
    assert_eq!(served_timestamp(&m), served);
    // Syncs after that do not retry in a loop: each costs one exchange.
    sync(&m, &up).await.unwrap_err();
    assert_eq!(exchanges(&up), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_the_upstream_refuses_fails_the_sync_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, m) = synced(dir.path()).await;
    // The token service still issues tokens, the upstream refuses them.
    up.publish("2026.02.0", "bios", &data(44, 20_000));
    up.peer.fault("/v1/blobs/", Fault::Status(403), None);
    up.peer.insert("/v1/tokens", token_reply("second", 3600));
    let seen = up.peer.requests().len();
    let err = sync(&m, &up).await.unwrap_err();
    assert!(matches!(err, Error::TokenRefused { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("refused a fresh token"), "{err}");
    assert_eq!(exchanges(&up), 2, "exactly one fresh exchange");
    let bearers = blob_bearers(&up, seen);
    assert_eq!(bearers.first().map(String::as_str), Some("t0k3n"), "{bearers:?}");
    assert_eq!(bearers.last().map(String::as_str), Some("second"), "{bearers:?}");
    assert!(!m.dir().join(TOKEN_FILE).exists());

    // The upstream accepts tokens again: the next sync gets one and completes.
    up.peer.clear_faults();
    assert_eq!(sync(&m, &up).await.unwrap().targets_new, 1);
    assert_eq!(exchanges(&up), 3);
    assert_eq!(stored(&m)["token"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_nearly_expired_token_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (up, m) = synced(dir.path()).await;
    let now = unix_now();
    let cases = [
        ("expired", now - 3600, now - 10),
        // 200 s left of an hour: less than 5 minutes.
        ("five_minutes_left", now - 3400, now + 200),
        // 1,000 s left of a day: less than a quarter.
        ("under_a_quarter_left", now - 85_400, now + 1000),
    ];
    for (n, (case, received, expires)) in cases.into_iter().enumerate() {
        up.peer.insert("/v1/tokens", token_reply(case, 3600));
        edit_stored(&m, |v| {
            v["token"] = "stale".into();
            v["received_at"] = received.into();
            v["expires_at"] = expires.into();
        });
        sync(&m, &up).await.unwrap();
        assert_eq!(exchanges(&up), 2 + n, "{case}: the stored token was used");
        assert_eq!(stored(&m)["token"], case, "{case}");
    }
    // A token the service gives only minutes of life is used once, never stored.
    up.peer.insert("/v1/tokens", token_reply("short", 240));
    std::fs::remove_file(m.dir().join(TOKEN_FILE)).unwrap();
    sync(&m, &up).await.unwrap();
    assert!(!m.dir().join(TOKEN_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_another_origin_or_credential_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (up, m) = synced(dir.path()).await;
    let mut n = 1;
    let mut expect_exchange = |up: &Upstream, what: &str| {
        n += 1;
        assert_eq!(exchanges(up), n, "{what}: the stored token was used");
    };

    edit_stored(&m, |v| v["token_url"] = "http://other-origin.invalid".into());
    sync(&m, &up).await.unwrap();
    expect_exchange(&up, "another token service");
    assert_eq!(stored(&m)["token_url"], "http://upstream.invalid");

    // The partner's credential was replaced.
    let cred = &m.config().credential_file;
    std::fs::write(cred, "a-new-secret\n").unwrap();
    sync(&m, &up).await.unwrap();
    expect_exchange(&up, "another credential");
    let before = exchanges(&up);
    sync(&m, &up).await.unwrap();
    assert_eq!(exchanges(&up), before, "the token of the new credential is reused");

    // A record others may read is not trusted with the token.
    let path = m.dir().join(TOKEN_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    sync(&m, &up).await.unwrap();
    expect_exchange(&up, "a token file readable by others");
    assert_eq!(mode(&path), 0o600);

    // Garbage is no token.
    std::fs::write(&path, b"{not json").unwrap();
    sync(&m, &up).await.unwrap();
    expect_exchange(&up, "a record that does not parse");
}
