//! One test per rejection reason of [`Verifier`], plus the accepted case each one departs from.

use ed25519_dalek::SigningKey;
use fwrepo_entitle::{Jti, MAX_TOKEN_LEN, Reject, Revocations, Scope, UnixTime, Verifier};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::*;

const BLOB: &[&str] = &["DL380 Gen9", "DL360 Gen9"];

fn verify(token: &str) -> Result<fwrepo_entitle::Claims, Reject> {
    verifier(Revocations::new()).verify(token, NOW, Scope::Download, BLOB)
}

fn seed_key() -> SigningKey {
    SigningKey::from_bytes(&SEED)
}

#[test]
fn genuine_token_verifies_and_carries_its_claims() {
    let t = download_token();
    let claims = verify(&t.token).unwrap();
    assert_eq!(claims, t.claims);
    assert_eq!(claims.sub.to_string(), "serial:S1");
    assert_eq!(claims.exp, NOW.plus(24 * 3600));
    let header = t.token.split('.').next().unwrap();
    assert_eq!(header, b64(header_json(&kid()).as_bytes()), "header is exactly alg, typ, kid");
}

#[test]
fn forged_helper_tokens_verify_when_nothing_is_wrong() {
    // Guards the tests below: each changes one thing from this accepted token.
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 + 600, NOW.0, AUD));
    verify(&t).unwrap();
}

#[test]
fn expired() {
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 - 61, NOW.0 - 3600, AUD));
    assert_eq!(verify(&t), Err(Reject::Expired));
    // Within the leeway it still passes.
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 - 59, NOW.0 - 3600, AUD));
    verify(&t).unwrap();
}

#[test]
fn not_yet_valid() {
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 + 7200, NOW.0 + 61, AUD));
    assert_eq!(verify(&t), Err(Reject::NotYetValid));
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 + 7200, NOW.0 + 59, AUD));
    verify(&t).unwrap();
}

/// Claims JSON with its own `iat`, `nbf` and `exp`.
fn claims_with(iat: i64, nbf: i64, exp: i64) -> String {
    claims_json(exp, nbf, AUD).replace(&format!("\"iat\":{nbf}"), &format!("\"iat\":{iat}"))
}

#[test]
fn token_living_longer_than_the_maximum_is_refused() {
    let key = seed_key();
    let day = 24 * 3600;
    // Exactly the maximum passes; one second more, ten years, or exp = i64::MAX do not.
    verify(&forge(&key, &header_json(&kid()), &claims_with(NOW.0, NOW.0, NOW.0 + day))).unwrap();
    for (iat, exp) in
        [(NOW.0, NOW.0 + day + 1), (NOW.0, NOW.0 + 315_360_000), (NOW.0, i64::MAX), (i64::MIN, NOW.0 + 60)]
    {
        let t = forge(&key, &header_json(&kid()), &claims_with(iat, NOW.0, exp));
        assert_eq!(verify(&t), Err(Reject::LifetimeTooLong), "iat {iat} exp {exp}");
    }
    // A verifier configured shorter refuses what the default accepts.
    let hour = forge(&key, &header_json(&kid()), &claims_with(NOW.0, NOW.0, NOW.0 + 7200));
    verify(&hour).unwrap();
    let strict = verifier(Revocations::new()).with_max_lifetime(3600);
    assert_eq!(strict.authenticate(&hour, NOW).map(|_| ()), Err(Reject::LifetimeTooLong));
    // It can never be configured longer than the maximum.
    let lax = verifier(Revocations::new()).with_max_lifetime(i64::MAX);
    let long = forge(&key, &header_json(&kid()), &claims_with(NOW.0, NOW.0, NOW.0 + day + 1));
    assert_eq!(lax.authenticate(&long, NOW).map(|_| ()), Err(Reject::LifetimeTooLong));
}

#[test]
fn wrong_audience() {
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 + 600, NOW.0, "someone-else"));
    assert_eq!(verify(&t), Err(Reject::WrongAudience));
}

#[test]
fn wrong_issuer() {
    let payload = claims_json(NOW.0 + 600, NOW.0, AUD).replace(ISS, "https://evil.example");
    let t = forge(&seed_key(), &header_json(&kid()), &payload);
    assert_eq!(verify(&t), Err(Reject::WrongIssuer));
}

#[test]
fn unknown_kid() {
    let t = forge(&seed_key(), &header_json("no-such-key"), &claims_json(NOW.0 + 600, NOW.0, AUD));
    assert_eq!(verify(&t), Err(Reject::UnknownKey));
}

#[test]
fn signed_by_a_stranger_under_our_kid() {
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let t = forge(&stranger, &header_json(&kid()), &claims_json(NOW.0 + 600, NOW.0, AUD));
    assert_eq!(verify(&t), Err(Reject::BadSignature));
}

#[test]
fn alg_none() {
    let header = format!(r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#, kid());
    let payload = claims_json(NOW.0 + 600, NOW.0, AUD);
    for sig in ["", "AAAA"] {
        let t = format!("{}.{}.{sig}", b64(header.as_bytes()), b64(payload.as_bytes()));
        assert_eq!(verify(&t), Err(Reject::UnsupportedAlgorithm), "signature {sig:?}");
    }
}

#[test]
fn alg_hs256_with_the_public_key_as_hmac_secret() {
    let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, kid());
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims_json(NOW.0 + 600, NOW.0, AUD).as_bytes()));
    let public = seed_key().verifying_key();
    // The raw key and its JWK `x` string: the two forms an attacker would try as the secret.
    let x = b64(public.as_bytes());
    for secret in [public.as_bytes().as_slice(), x.as_bytes()] {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        let t = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(verify(&t), Err(Reject::UnsupportedAlgorithm));
    }
}

#[test]
fn other_algorithms_are_refused() {
    for alg in ["RS256", "ES256", "PS256", "HS512", "eddsa", "Ed25519"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#, kid());
        let t = forge(&seed_key(), &header, &claims_json(NOW.0 + 600, NOW.0, AUD));
        assert_eq!(verify(&t), Err(Reject::UnsupportedAlgorithm), "{alg}");
    }
}

#[test]
fn unexpected_header_members_are_malformed() {
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}","jku":"https://evil.example/jwks"}}"#, kid());
    let t = forge(&seed_key(), &header, &claims_json(NOW.0 + 600, NOW.0, AUD));
    assert_eq!(verify(&t), Err(Reject::Malformed));
}

/// Replaces segment `i` of a token with `f(segment)`.
fn tamper(token: &str, i: usize, f: impl Fn(&str) -> String) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[i] = f(&parts[i]);
    parts.join(".")
}

#[test]
fn tampered_header() {
    let t = download_token().token;
    // Same meaning, different bytes: the signature covers the bytes.
    let reordered = format!(r#"{{"typ":"JWT","alg":"EdDSA","kid":"{}"}}"#, kid());
    let bad = tamper(&t, 0, |_| b64(reordered.as_bytes()));
    assert_eq!(verify(&bad), Err(Reject::BadSignature));
}

#[test]
fn tampered_payload() {
    let t = download_token();
    let mut claims = t.claims.clone();
    claims.models = models("*");
    let bad = tamper(&t.token, 1, |_| b64(&serde_json::to_vec(&claims).unwrap()));
    assert_eq!(verify(&bad), Err(Reject::BadSignature));
}

#[test]
fn tampered_signature() {
    let t = download_token().token;
    let bad = tamper(&t, 2, |s| {
        let mut sig = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).unwrap();
        sig[10] ^= 0x01;
        b64(&sig)
    });
    assert_eq!(verify(&bad), Err(Reject::BadSignature));
    // A changed character that only alters unused trailing bits is not a second encoding.
    let last = t.chars().last().unwrap();
    let twin = format!("{}{}", &t[..t.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert!(verify(&twin).is_err());
}

#[test]
fn truncated() {
    let t = download_token().token;
    for cut in [0, 1, 10, t.find('.').unwrap(), t.rfind('.').unwrap(), t.rfind('.').unwrap() + 1, t.len() - 1] {
        assert!(
            matches!(verify(&t[..cut]), Err(Reject::Malformed | Reject::BadSignature)),
            "cut at {cut}: {:?}",
            verify(&t[..cut])
        );
    }
    assert_eq!(verify(&t[..t.len() - 4]), Err(Reject::Malformed), "a 61-byte signature");
}

#[test]
fn oversized() {
    let t = download_token().token;
    let padded = format!("{t}{}", "A".repeat(MAX_TOKEN_LEN + 1 - t.len()));
    assert_eq!(verify(&padded), Err(Reject::TooLarge));
}

#[test]
fn revoked_by_jti() {
    let t = download_token();
    let mut rev = Revocations::new();
    rev.revoke_token(Jti::new("some-other").unwrap(), NOW);
    verifier(rev.clone()).authenticate(&t.token, NOW).unwrap();
    rev.revoke_token(t.claims.jti.clone(), NOW);
    assert_eq!(verifier(rev).authenticate(&t.token, NOW), Err(Reject::RevokedToken));
}

#[test]
fn revoked_by_subject() {
    let t = download_token();
    let mut rev = Revocations::new();
    rev.revoke_subject(subject("serial:S1"), NOW);
    assert_eq!(verifier(rev.clone()).authenticate(&t.token, NOW), Err(Reject::RevokedSubject));
    assert!(rev.lift_subject(&subject("serial:S1")));
    verifier(rev).authenticate(&t.token, NOW).unwrap();
}

#[test]
fn wrong_scope() {
    let t = download_token().token;
    let v = verifier(Revocations::new());
    assert_eq!(v.verify(&t, NOW, Scope::Mirror, BLOB), Err(Reject::ScopeNotGranted));
    let mirror = issuer().mint(subject("partner:acme"), Scope::Mirror, models("*"), None, NOW).unwrap();
    v.verify(&mirror.token, NOW, Scope::Mirror, BLOB).unwrap();
    v.verify(&mirror.token, NOW, Scope::Download, BLOB).unwrap();
}

#[test]
fn model_not_entitled() {
    let t = download_token().token;
    let v = verifier(Revocations::new());
    assert_eq!(v.verify(&t, NOW, Scope::Download, &["ML350 Gen10"]), Err(Reject::ModelNotEntitled));
    assert_eq!(v.verify(&t, NOW, Scope::Download, &[] as &[&str]), Err(Reject::ModelNotEntitled));
    v.verify(&t, NOW, Scope::Download, &["ML350 Gen10", "DL380 Gen9"]).unwrap();
}

#[test]
fn leeway_is_capped_at_sixty_seconds() {
    let t = forge(&seed_key(), &header_json(&kid()), &claims_json(NOW.0 - 61, NOW.0 - 3600, AUD));
    let v = Verifier::new(keyring().verifying_keys(), Revocations::new(), AUD).with_leeway(3600);
    assert_eq!(v.authenticate(&t, NOW), Err(Reject::Expired));
    let strict = Verifier::new(keyring().verifying_keys(), Revocations::new(), AUD).with_leeway(0);
    let t = download_token();
    assert_eq!(strict.authenticate(&t.token, t.claims.exp), Err(Reject::Expired));
    assert_eq!(strict.authenticate(&t.token, UnixTime(t.claims.exp.0 - 1)).map(|c| c.jti), Ok(t.claims.jti));
}

#[test]
fn every_reason_has_a_distinct_label() {
    let labels: std::collections::HashSet<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Reject::ALL.len());
}
