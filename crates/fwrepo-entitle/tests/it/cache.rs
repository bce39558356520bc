//! The verified-token cache: hits skip the signature but not the claim checks.

use std::sync::Arc;

use fwrepo_entitle::{IssuerKeyring, Reject, Revocations, Scope, TokenCache, UnixTime, Verifier};

use crate::support::*;

const BLOB: &[&str] = &["DL380 Gen9"];

#[test]
fn second_verification_is_a_hit_with_the_same_claims() {
    let cache = TokenCache::new(100);
    let v = verifier(Revocations::new());
    let t = download_token();
    let a = cache.verify(&v, &t.token, NOW, Scope::Download, BLOB).unwrap();
    assert_eq!(cache.len(), 1);
    let b = cache.verify(&v, &t.token, NOW, Scope::Download, BLOB).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "served from the cache");
    assert_eq!(*a, t.claims);
}

#[test]
fn failed_tokens_are_not_cached() {
    let cache = TokenCache::new(100);
    let v = verifier(Revocations::new());
    let t = download_token().token;
    // Always a different last character: a signature's last base64 digit is often 'A' already.
    let last = if t.ends_with('A') { 'Q' } else { 'A' };
    let bad = format!("{}{last}", &t[..t.len() - 1]);
    assert_ne!(bad, t);
    assert!(cache.verify(&v, &bad, NOW, Scope::Download, BLOB).is_err());
    assert!(cache.is_empty());
}

#[test]
fn a_token_that_shares_a_cached_tokens_signature_is_not_a_hit() {
    // The table hash covers only a token's length and tail (its signature): a forged token
    // that keeps a cached token's signature and length but changes its claims must be verified,
    // and refused, not served from the cached entry.
    let cache = TokenCache::new(100);
    let v = verifier(Revocations::new());
    let t = download_token().token;
    cache.verify(&v, &t, NOW, Scope::Download, BLOB).unwrap();
    let (head, sig) = t.rsplit_once('.').unwrap();
    let mut forged = head.as_bytes().to_vec();
    // One base64url digit of the claims changed; same length, same signature.
    let at = head.find('.').unwrap() + 3;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = format!("{}.{sig}", String::from_utf8(forged).unwrap());
    assert_eq!(forged.len(), t.len());
    assert_ne!(forged, t);
    assert!(cache.verify(&v, &forged, NOW, Scope::Download, BLOB).is_err());
    assert!(cache.verify(&v, &t, NOW, Scope::Download, BLOB).is_ok(), "the real token still hits");
    assert_eq!(cache.len(), 1);
}

#[test]
fn revocation_applies_on_cache_hits() {
    let cache = TokenCache::new(100);
    let t = download_token();
    cache.verify(&verifier(Revocations::new()), &t.token, NOW, Scope::Download, BLOB).unwrap();

    let mut by_jti = Revocations::new();
    by_jti.revoke_token(t.claims.jti.clone(), NOW);
    assert_eq!(cache.verify(&verifier(by_jti), &t.token, NOW, Scope::Download, BLOB), Err(Reject::RevokedToken));
    let mut by_sub = Revocations::new();
    by_sub.revoke_subject(subject("serial:S1"), NOW);
    assert_eq!(cache.verify(&verifier(by_sub), &t.token, NOW, Scope::Download, BLOB), Err(Reject::RevokedSubject));
    assert_eq!(cache.len(), 1, "the entry stays; the checks ran on it");
}

#[test]
fn scope_and_models_are_checked_per_request_on_hits() {
    let cache = TokenCache::new(100);
    let v = verifier(Revocations::new());
    let t = download_token().token;
    cache.verify(&v, &t, NOW, Scope::Download, BLOB).unwrap();
    assert_eq!(cache.verify(&v, &t, NOW, Scope::Mirror, BLOB), Err(Reject::ScopeNotGranted));
    assert_eq!(cache.verify(&v, &t, NOW, Scope::Download, &["ML350 Gen10"]), Err(Reject::ModelNotEntitled));
}

#[test]
fn removed_key_fails_on_cache_hits() {
    let cache = TokenCache::new(100);
    let t = download_token();
    cache.verify(&verifier(Revocations::new()), &t.token, NOW, Scope::Download, BLOB).unwrap();
    let other = IssuerKeyring::from_seeds(&[[3; 32]]).unwrap();
    let v = Verifier::new(other.verifying_keys(), Revocations::new(), AUD);
    assert_eq!(cache.verify(&v, &t.token, NOW, Scope::Download, BLOB), Err(Reject::UnknownKey));
}

#[test]
fn other_audience_fails_on_cache_hits() {
    let cache = TokenCache::new(100);
    let t = download_token();
    cache.verify(&verifier(Revocations::new()), &t.token, NOW, Scope::Download, BLOB).unwrap();
    let v = Verifier::new(keyring().verifying_keys(), Revocations::new(), "other");
    assert_eq!(cache.verify(&v, &t.token, NOW, Scope::Download, BLOB), Err(Reject::WrongAudience));
}

#[test]
fn entries_do_not_outlive_the_token() {
    let cache = TokenCache::new(100);
    let v = verifier(Revocations::new());
    let t = download_token();
    cache.verify(&v, &t.token, NOW, Scope::Download, BLOB).unwrap();
    // At exp the entry is dropped and the full check runs (and passes, within leeway) ...
    let at_exp = t.claims.exp;
    cache.verify(&v, &t.token, at_exp, Scope::Download, BLOB).unwrap();
    assert!(cache.is_empty(), "a token at its exp is not cached again");
    // ... and past the leeway it fails.
    assert_eq!(cache.verify(&v, &t.token, UnixTime(at_exp.0 + 60), Scope::Download, BLOB), Err(Reject::Expired));
}

#[test]
fn cache_stays_within_its_capacity() {
    let cache = TokenCache::new(32);
    let v = verifier(Revocations::new());
    for _ in 0..200 {
        let t = download_token().token;
        cache.verify(&v, &t, NOW, Scope::Download, BLOB).unwrap();
        assert!(cache.len() <= cache.capacity());
    }
    assert!(cache.len() >= cache.capacity() / 2, "a bounded cache still caches: {}", cache.len());
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn shared_between_threads() {
    let cache = Arc::new(TokenCache::new(1000));
    let v = Arc::new(verifier(Revocations::new()));
    let tokens: Arc<Vec<String>> = Arc::new((0..8).map(|_| download_token().token).collect());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (cache, v, tokens) = (Arc::clone(&cache), Arc::clone(&v), Arc::clone(&tokens));
            std::thread::spawn(move || {
                for _ in 0..50 {
                    for t in tokens.iter() {
                        cache.verify(&v, t, NOW, Scope::Download, BLOB).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(cache.len(), 8);
}
