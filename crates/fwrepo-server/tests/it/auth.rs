//! The auth matrix: who gets 401, 403, 404 or the bytes, and that an unknown blob looks
//! exactly like a blob the caller may not see.

use std::collections::HashSet;

use fwrepo_entitle::{Jti, ModelSet, Revocations, Scope, Subject, UnixTime};
use http::StatusCode;

use crate::support::{DL360, DL380, Fixture, bearer, ingest, issuer, token, token_at, verifier};

fn facts_lookups(fx: &Fixture) -> (u64, u64) {
    (fx.metric("fwrepo_blob_facts_total{cache=\"hit\"}"), fx.metric("fwrepo_blob_facts_total{cache=\"miss\"}"))
}

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
    // Each request went on its own connection, so the two records may land in either order.
    lines.sort_by_key(|l| l["status"].as_u64());
    assert_eq!(lines[0]["subject"], "serial:S1");
    assert_eq!(lines[0]["jti"], claims.jti.as_str());
    assert_eq!(lines[0]["blob"], fx.big.id.to_hex());
    assert_eq!(lines[0]["bytes"], 100);
    assert_eq!(lines[0]["status"], 206);
    assert_eq!(lines[1]["status"], 403);
    assert_eq!(lines[1]["bytes"], 0);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn unknown_blobs_take_the_same_lookup_as_unentitled_ones() {
    let fx = Fixture::new();
    let t = format!("Bearer {}", token(DL380));
    let paths = [
        // Known, outside the token's models.
        fx.other.url(),
        fx.other.hashed_target(),
        // Unknown id, malformed id, unknown target name.
        format!("/v1/blobs/{}", "ab".repeat(32)),
        "/v1/blobs/zz".to_owned(),
        format!("/targets/firmware/{}.nothing.bin", "00".repeat(32)),
    ];
    for path in &paths {
        for round in 0..2 {
            let (hit, miss) = facts_lookups(&fx);
            assert_eq!(status(&fx, path, Some(t.clone())).status, StatusCode::FORBIDDEN, "{path}");
            let (hit2, miss2) = facts_lookups(&fx);
            // Exactly one facts lookup per request, whatever the id; the second is cached.
            assert_eq!((hit2 - hit) + (miss2 - miss), 1, "{path} round {round}");
            if round == 1 {
                assert_eq!(hit2 - hit, 1, "{path}: second lookup answered from the cache");
            }
        }
    }
    // The cached facts serve an entitled caller as before.
    let all = format!("Bearer {}", token("*"));
    assert_eq!(status(&fx, &fx.other.url(), Some(all)).status, StatusCode::OK);
}

#[test]
fn huge_paths_do_not_push_downloads_out_of_the_audit_log() {
    let fx = Fixture::with_config(|c| {
        c.audit_log_max_bytes = 256 * 1024;
        c.audit_log_keep = 1;
    });
    let t = token(DL380);
    let ok = fx.get(&fx.big.url(), &[bearer(&t), ("range", "bytes=0-9".into())]);
    assert_eq!(ok.status, StatusCode::PARTIAL_CONTENT);
    // 220 gated requests with 15 kB paths, past authentication, so each one is audited.
    let junk = "a".repeat(15_000);
    for i in 0..220 {
        let path = if i % 2 == 0 { format!("/targets/firmware/{junk}") } else { format!("/v1/blobs/{junk}") };
        assert_eq!(fx.get(&path, &[bearer(&t)]).status, StatusCode::FORBIDDEN);
    }
    let mut lines = fx.audit_file_lines("audit.jsonl.1");
    lines.extend(fx.audit_file_lines("audit.jsonl"));
    assert!(lines.len() >= 221, "{} records", lines.len());
    for l in &lines {
        assert!(l.to_string().len() < 1024, "unbounded record: {} bytes", l.to_string().len());
        assert!(l["path"].as_str().unwrap().len() <= 256);
    }
    assert!(
        lines.iter().any(|l| l["status"] == 206 && l["blob"] == fx.big.id.to_hex()),
        "the real download was rotated out"
    );
    // Paths are canonical: the blob id for blobs, the decoded name for targets.
    let by_name = fx.get("/targets/firmware/r%C3%A9sum%C3%A9.bin", &[bearer(&t)]);
    assert_eq!(by_name.status, StatusCode::FORBIDDEN);
    let last = fx.audit_lines().pop().unwrap();
    assert_eq!(last["path"], "/targets/firmware/résumé.bin");
}

/// The attack: a partner's `mirror` token asks the origin, by BLAKE3 id, for a stored blob no
/// release names that is not a current auth document (left by a refused publish, or an auth
/// document the metadata has since replaced). Outside the releases, a mirror token gets only
/// the blobs of the current `auth/*` targets.
#[test]
fn mirror_token_cannot_fetch_unlisted_blobs_other_than_auth_documents() {
    let fx = Fixture::new();
    let store = fx.state.store();
    let current = ingest(&store, br#"{"revoked":[]}"#.to_vec(), "auth/revocations.json");
    let old = ingest(&store, br#"{"revoked":["jti-1"]}"#.to_vec(), "auth/revocations.json");
    let mut rng = fwrepo_synth::Rng::new(7);
    let stray = ingest(&store, fwrepo_synth::firmware_image(&mut rng, 20_000), "firmware/refused.bin");
    fx.state.set_auth_blobs(HashSet::from([current.id]));
    fx.state.refresh().unwrap();

    let partner = "partner:acme".parse::<Subject>().unwrap();
    let models = ModelSet::parse_list(DL380).unwrap();
    let mirror = issuer().mint(partner, Scope::Mirror, models, None, UnixTime::now()).unwrap().token;
    let got = fx.get(&current.url(), &[bearer(&mirror)]);
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, current.bytes);
    assert_eq!(fx.get(&format!("{}/chunks", current.url()), &[bearer(&mirror)]).status, StatusCode::OK);
    for blob in [&old, &stray] {
        assert_eq!(fx.get(&blob.url(), &[bearer(&mirror)]).status, StatusCode::FORBIDDEN, "{}", blob.target);
        let chunks = fx.get(&format!("{}/chunks", blob.url()), &[bearer(&mirror)]);
        assert_eq!(chunks.status, StatusCode::FORBIDDEN, "{}", blob.target);
    }
    // A customer token gets no auth document.
    assert_eq!(fx.get(&current.url(), &[bearer(&token(DL380))]).status, StatusCode::FORBIDDEN);

    // The metadata moves on to another document: the one it replaced is out of reach at once.
    fx.state.set_auth_blobs(HashSet::from([old.id]));
    assert_eq!(fx.get(&current.url(), &[bearer(&mirror)]).status, StatusCode::FORBIDDEN);
    assert_eq!(fx.get(&old.url(), &[bearer(&mirror)]).status, StatusCode::OK);
}
