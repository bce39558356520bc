//! Key ids, the key-file format, ed25519 and ECDSA P-256 verification, and key-type mismatches.

use fwrepo_tuf::{PublicKey, SigningKey};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use sha2::Digest as _;

use crate::common::key;

#[test]
fn key_id_is_sha256_of_canonical_key_object() {
    let k = key(7);
    let public = k.public_key().keyval.public.clone();
    let canonical = format!(r#"{{"keytype":"ed25519","keyval":{{"public":"{public}"}},"scheme":"ed25519"}}"#);
    assert_eq!(k.key_id().to_string(), hex::encode(sha2::Sha256::digest(canonical.as_bytes())));
}

#[test]
fn key_file_round_trips() {
    let k = key(9);
    let text = k.to_key_file();
    assert!(text.ends_with('\n'));
    assert!(text.contains("\"format\":\"fwrepo-signing-key\""));
    let back = SigningKey::from_key_file(&text).unwrap();
    assert_eq!(back.key_id(), k.key_id());
    assert_eq!(back.sign(b"m"), k.sign(b"m"));
}

#[test]
fn edited_key_files_are_refused() {
    let text = key(9).to_key_file().to_string();
    let other = key(10);
    let other_public = other.public_key().keyval.public;
    let own_public = key(9).public_key().keyval.public;
    let cases = [
        text.replace(&own_public, &other_public),
        text.replace(&key(9).key_id().to_string(), &other.key_id().to_string()),
        text.replace("\"version\":1", "\"version\":2"),
        text.replace("\"format\":\"fwrepo-signing-key\"", "\"format\":\"x\""),
        text.replace('{', "{\"extra\":1,"),
        text[..text.len() / 2].to_owned(),
    ];
    for bad in cases {
        assert!(SigningKey::from_key_file(&bad).is_err(), "accepted {bad}");
    }
}

#[test]
fn generated_keys_differ_and_sign() {
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    assert_ne!(a.key_id(), b.key_id());
    let sig = a.sign(b"msg");
    assert!(a.public_key().verify(b"msg", &hex::decode(&sig.sig).unwrap()));
    assert!(!b.public_key().verify(b"msg", &hex::decode(&sig.sig).unwrap()));
}

#[test]
fn debug_does_not_print_the_secret() {
    let k = key(3);
    let secret = hex::encode([3u8; 32]);
    assert!(!format!("{k:?}").contains(&secret));
}

fn p256_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_bytes(&[0x42u8; 32].into()).unwrap()
}

#[test]
fn ecdsa_p256_verifies_with_pem_and_hex_keys() {
    let sk = p256_key();
    let vk = sk.verifying_key();
    let pem = vk.to_public_key_pem(LineEnding::LF).unwrap();
    let sec1 = hex::encode(vk.to_encoded_point(false).as_bytes());
    let sig: p256::ecdsa::Signature = sk.sign(b"signed bytes");
    let der = sig.to_der();
    for public in [pem, sec1] {
        let key = PublicKey::ecdsa_p256(public);
        key.validate().unwrap();
        assert!(key.verify(b"signed bytes", der.as_bytes()));
        assert!(key.verify(b"signed bytes", &sig.to_bytes()));
        assert!(!key.verify(b"other bytes", der.as_bytes()));
    }
}

#[test]
fn wrong_key_type_never_verifies() {
    let k = key(5);
    let sig = hex::decode(k.sign(b"m").sig).unwrap();
    let good = k.public_key();
    assert!(good.verify(b"m", &sig));
    // The same ed25519 public bytes declared under other types or schemes.
    for (keytype, scheme) in [
        ("ecdsa", "ecdsa-sha2-nistp256"),
        ("ed25519", "ecdsa-sha2-nistp256"),
        ("rsa", "rsassa-pss-sha256"),
        ("ed25519", "ed25519ph"),
    ] {
        let mut k2 = good.clone();
        k2.keytype = keytype.into();
        k2.scheme = scheme.into();
        assert!(!k2.verify(b"m", &sig), "{keytype}/{scheme} verified");
    }
    // An ECDSA signature presented to an ed25519 key, and the reverse.
    let ecdsa_sig: p256::ecdsa::Signature = p256_key().sign(b"m");
    assert!(!good.verify(b"m", ecdsa_sig.to_der().as_bytes()));
    let ecdsa_key = PublicKey::ecdsa_p256(hex::encode(p256_key().verifying_key().to_encoded_point(true).as_bytes()));
    assert!(!ecdsa_key.verify(b"m", &sig));
}
