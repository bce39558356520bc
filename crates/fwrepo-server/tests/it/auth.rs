//! The auth matrix: who gets 401, 403, 404 or the bytes, and that an unknown blob looks
//! exactly like a blob the caller may not see.

use fwrepo_entitle::{Jti, Revocations, UnixTime};
use http::StatusCode;

use crate::support::{DL360, DL380, Fixture, bearer, token, token_at, verifier};

fn status(fx: &Fixture, path: &str, auth: Option<String>) -> crate::support::Resp {
    let h: Vec<(&str, String)> = auth.into_iter().map(|a| ("authorization", a)).collect();
    fx.get(path, &h)
}

#[test]
fn the_auth_matrix() {
    let fx = Fixture::new();
    let url = fx.big.url();
    let now = UnixTime::now();
    let (revoked, revoked_claims) = token_at("serial:S1", DL380, now);
    let mut rev = Revocations::new();
    rev.revoke_token(Jti::new(revoked_claims.jti.as_str()).unwrap(), now);
    fx.state.set_verifier(verifier(rev));
    let expired = token_at("serial:S1", DL380, UnixTime(now.0 - 3 * 86_400)).0;
    let other_key = {
        let ring = fwrepo_entitle::IssuerKeyring::from_seeds(&[[9; 32]]).unwrap();
        let issuer =
            fwrepo_entitle::Issuer::new(fwrepo_entitle::IssuerConfig::new(crate::support::ISS, "fwrepo"), ring)
                .unwrap();
        issuer
            .mint(
                "serial:S1".parse().unwrap(),
                fwrepo_entitle::Scope::Download,
                fwrepo_entitle::ModelSet::parse_list(DL380).unwrap(),
                None,
                now,
            )
            .unwrap()
            .token
    };

    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED, "missing_token"),
        ("basic auth", Some("Basic dXNlcjpwdw==".into()), StatusCode::UNAUTHORIZED, "missing_token"),
        ("malformed", Some("Bearer not.a.jwt".into()), StatusCode::UNAUTHORIZED, "malformed"),
        ("garbage", Some("Bearer %%%".into()), StatusCode::UNAUTHORIZED, "malformed"),
        ("too large", Some(format!("Bearer {}", "a".repeat(9000))), StatusCode::UNAUTHORIZED, "too_large"),
        ("expired", Some(format!("Bearer {expired}")), StatusCode::UNAUTHORIZED, "expired"),
        ("revoked", Some(format!("Bearer {revoked}")), StatusCode::UNAUTHORIZED, "revoked_token"),
        ("unknown key", Some(format!("Bearer {other_key}")), StatusCode::UNAUTHORIZED, "unknown_kid"),
        ("other model", Some(format!("Bearer {}", token(DL360))), StatusCode::FORBIDDEN, "model_not_entitled"),
        ("entitled", Some(format!("Bearer {}", token(DL380))), StatusCode::OK, ""),
        ("all models", Some(format!("Bearer {}", token("*"))), StatusCode::OK, ""),
    ];
    for (what, auth, want, reason) in cases {
        let before = if reason.is_empty() {
            0
        } else {
            fx.metric(&format!("fwrepo_auth_failures_total{{reason=\"{reason}\"}}"))
        };
        let resp = status(&fx, &url, auth.clone());
        assert_eq!(resp.status, want, "{what}");
        let target = status(&fx, &fx.big.hashed_target(), auth);
        assert_eq!(target.status, want, "{what} (target)");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(resp.header("www-authenticate"), Some("Bearer error=\"invalid_token\""), "{what}");
        }
        if !reason.is_empty() {
            let after = fx.metric(&format!("fwrepo_auth_failures_total{{reason=\"{reason}\"}}"));
            assert_eq!(after, before + 2, "{what}: counted by reason");
        }
    }
    // Metadata is public: no token needed, and a bad one is not even looked at.
    assert_eq!(status(&fx, "/metadata/timestamp.json", None).status, StatusCode::OK);
    assert_eq!(status(&fx, "/metadata/timestamp.json", Some("Bearer junk".into())).status, StatusCode::OK);
    assert_eq!(status(&fx, "/metadata/2.root.json", None).status, StatusCode::NOT_FOUND);
}

#[test]
fn unknown_blobs_look_like_forbidden_ones() {
    let fx = Fixture::new();
    let t = format!("Bearer {}", token(DL380));
    let unknown = format!("/v1/blobs/{}", "ab".repeat(32));
    let forbidden = fx.other.url();
    let a = status(&fx, &unknown, Some(t.clone()));
    let b = status(&fx, &forbidden, Some(t.clone()));
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(b.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body, b.body);
    let names = |r: &crate::support::Resp| {
        let mut v: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k != "date").collect();
        v.sort();
        v
    };
    assert_eq!(names(&a), names(&b));
    // Malformed ids and target names that do not resolve: the same answer.
    for path in [
        "/v1/blobs/zz".to_owned(),
        format!("{}/chunks", unknown),
        format!("/targets/firmware/{}.rom-big.bin", "00".repeat(32)),
        "/targets/firmware/rom-big.bin".to_owned(),
        fx.other.hashed_target(),
    ] {
        let r = status(&fx, &path, Some(t.clone()));
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(r.body, b.body, "{path}");
    }
    // Without a token, everything is 401 before any lookup.
    assert_eq!(status(&fx, &unknown, None).status, StatusCode::UNAUTHORIZED);
    // A token that covers every model may learn that a blob does not exist.
    let all = format!("Bearer {}", token("*"));
    assert_eq!(status(&fx, &unknown, Some(all)).status, StatusCode::NOT_FOUND);
}

#[test]
fn gated_downloads_are_audited() {
    let fx = Fixture::new();
    let (t, claims) = token_at("serial:S1", DL380, UnixTime::now());
    let ok = fx.get(&fx.big.url(), &[bearer(&t), ("range", "bytes=0-99".into())]);
    assert_eq!(ok.status, StatusCode::PARTIAL_CONTENT);
    let denied = fx.get(&fx.other.url(), &[bearer(&t)]);
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(fx.get(&fx.big.url(), &[]).status, StatusCode::UNAUTHORIZED);
    // Records are written when the body is dropped, just after the last byte is handed over.
    let mut lines = fx.audit_lines();
    for _ in 0..100 {
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        lines = fx.audit_lines();
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["subject"], "serial:S1");
    assert_eq!(lines[0]["jti"], claims.jti.as_str());
    assert_eq!(lines[0]["blob"], fx.big.id.to_hex());
    assert_eq!(lines[0]["bytes"], 100);
    assert_eq!(lines[0]["status"], 206);
    assert_eq!(lines[1]["status"], 403);
    assert_eq!(lines[1]["bytes"], 0);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
}
