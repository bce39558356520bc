//! Issuer keyring file, rotation, and the public JWK Set a mirror verifies from.

use fwrepo_entitle::{Error, IssuerKeyring, Kid, Reject, Revocations, Scope, Verifier, VerifyingKeys};

use crate::support::*;

#[test]
fn keyring_file_round_trips_and_keeps_the_signing_key_last() {
    let mut ring = IssuerKeyring::generate().unwrap();
    let first = ring.signing_kid().clone();
    let second = ring.rotate().unwrap();
    assert_ne!(first, second);
    assert_eq!(ring.signing_kid(), &second);
    let back = IssuerKeyring::from_bytes(&ring.to_bytes()).unwrap();
    assert_eq!(back.kids().cloned().collect::<Vec<_>>(), vec![first, second.clone()]);
    assert_eq!(back.signing_kid(), &second);
    assert_eq!(back.to_bytes(), ring.to_bytes());
}

#[test]
fn keyring_file_with_mismatched_public_key_is_refused() {
    let a = IssuerKeyring::from_seeds(&[[1; 32]]).unwrap().to_bytes();
    let b = IssuerKeyring::from_seeds(&[[2; 32]]).unwrap().to_bytes();
    let mut doc: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let other: serde_json::Value = serde_json::from_slice(&b).unwrap();
    doc["keys"][0]["x"] = other["keys"][0]["x"].clone();
    let err = IssuerKeyring::from_bytes(&serde_json::to_vec(&doc).unwrap()).err().unwrap();
    assert!(matches!(err, Error::Key { .. }), "{err}");
}

#[test]
fn jwks_has_the_rfc_8037_members_and_round_trips() {
    let ring = keyring();
    let bytes = ring.public_jwks_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let key = &doc["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["kid"], ring.signing_kid().as_str());
    assert!(key.get("d").is_none(), "no private member in the public set");
    let x = b64(ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key().as_bytes());
    assert_eq!(key["x"], x.as_str());
    let keys = VerifyingKeys::from_jwks(&bytes).unwrap();
    assert_eq!(keys, ring.verifying_keys());
    assert_eq!(keys.to_jwks_bytes(), bytes);
}

#[test]
fn kid_is_the_rfc_7638_thumbprint() {
    // RFC 8037 appendix A.3 gives the thumbprint of its example key.
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let jwks = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"k"}}]}}"#);
    let keys = VerifyingKeys::from_jwks(jwks.as_bytes()).unwrap();
    assert!(keys.contains("k"));
    let seed: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap().try_into().unwrap();
    let ring = IssuerKeyring::from_seeds(&[seed]).unwrap();
    assert_eq!(ring.signing_kid().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn public_jwks_carrying_a_private_key_is_refused() {
    let err = VerifyingKeys::from_jwks(&keyring().to_bytes()).err().unwrap();
    assert!(err.to_string().contains("private"), "{err}");
}

#[test]
fn jwks_of_another_key_type_is_refused() {
    let jwks =
        r#"{"keys":[{"kty":"RSA","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k"}]}"#;
    assert!(VerifyingKeys::from_jwks(jwks.as_bytes()).is_err());
    let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k"}]}"#;
    assert!(VerifyingKeys::from_jwks(jwks.as_bytes()).is_err());
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let mut ring = IssuerKeyring::generate().unwrap();
    let old_kid = ring.signing_kid().clone();
    let old = fwrepo_entitle::Issuer::new(
        fwrepo_entitle::IssuerConfig::new(ISS, AUD),
        IssuerKeyring::from_bytes(&ring.to_bytes()).unwrap(),
    )
    .unwrap()
    .mint(subject("serial:S1"), Scope::Download, models("DL380 Gen9"), None, NOW)
    .unwrap();
    let new_kid = ring.rotate().unwrap();
    let issuer = fwrepo_entitle::Issuer::new(
        fwrepo_entitle::IssuerConfig::new(ISS, AUD),
        IssuerKeyring::from_bytes(&ring.to_bytes()).unwrap(),
    )
    .unwrap();
    let new = issuer.mint(subject("serial:S1"), Scope::Download, models("DL380 Gen9"), None, NOW).unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            new.token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str(), "the newest key signs");

    // A mirror sees only the published set.
    let mirror = |ring: &IssuerKeyring| {
        Verifier::new(VerifyingKeys::from_jwks(&ring.public_jwks_bytes()).unwrap(), Revocations::new(), AUD)
    };
    mirror(&ring).authenticate(&old.token, NOW).unwrap();
    mirror(&ring).authenticate(&new.token, NOW).unwrap();
    ring.remove(&old_kid).unwrap();
    assert_eq!(mirror(&ring).authenticate(&old.token, NOW), Err(Reject::UnknownKey));
    mirror(&ring).authenticate(&new.token, NOW).unwrap();
    assert!(matches!(ring.remove(&new_kid), Err(Error::LastIssuerKey { .. })));
    assert!(matches!(ring.remove(&Kid::new("nope").unwrap()), Err(Error::NotFound { .. })));
}
