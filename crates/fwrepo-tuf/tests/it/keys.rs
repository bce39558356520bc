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

const RSA_PUBLIC: &str = include_str!("data/rsa-pss/public.pem");
const RSA_PRIVATE: &str = include_str!("data/rsa-pss/test-only.key.pem");
const RSA_MESSAGE: &[u8] = include_bytes!("data/rsa-pss/message.txt");

fn rsa_sig(name: &str) -> Vec<u8> {
    let hex_text = match name {
        "salt32" => include_str!("data/rsa-pss/sig-salt32.hex"),
        _ => include_str!("data/rsa-pss/sig-saltmax.hex"),
    };
    hex::decode(hex_text.trim()).unwrap()
}

/// Signs `msg` with the fixture's RSA key, RSASSA-PSS SHA-256, salt as long as the digest.
fn rsa_sign(msg: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIVATE).unwrap();
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(private);
    signer.sign_with_rng(&mut rsa::rand_core::OsRng, msg).to_vec()
}

#[test]
fn rsa_pss_signatures_made_by_openssl_verify() {
    let key = PublicKey::rsa_pss_sha256(RSA_PUBLIC);
    key.validate().unwrap();
    for salt in ["salt32", "saltmax"] {
        assert!(key.verify(RSA_MESSAGE, &rsa_sig(salt)), "{salt}");
    }
    assert!(key.verify(b"signed in the test", &rsa_sign(b"signed in the test")));
}

#[test]
fn rsa_pss_tampered_signature_fails() {
    let key = PublicKey::rsa_pss_sha256(RSA_PUBLIC);
    for salt in ["salt32", "saltmax"] {
        let good = rsa_sig(salt);
        for i in [0, 100, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(!key.verify(RSA_MESSAGE, &bad), "{salt}: byte {i} flipped verified");
        }
        // Truncated, extended, or over other bytes.
        assert!(!key.verify(RSA_MESSAGE, &good[1..]));
        assert!(!key.verify(RSA_MESSAGE, &[good.as_slice(), &[0]].concat()));
        let mut other = RSA_MESSAGE.to_vec();
        other[0] ^= 0x20;
        assert!(!key.verify(&other, &good));
    }
    // The right signature under another scheme, or from an RSA key of another size, is no good.
    let mut sha384 = key.clone();
    sha384.scheme = "rsassa-pss-sha384".into();
    assert!(!sha384.verify(RSA_MESSAGE, &rsa_sig("salt32")));
    assert!(sha384.validate().is_err());
    let mut pkcs1 = key.clone();
    pkcs1.scheme = "rsa-pkcs1v15-sha256".into();
    assert!(!pkcs1.verify(RSA_MESSAGE, &rsa_sig("salt32")));
}

#[test]
fn short_and_malformed_rsa_keys_are_refused() {
    let short = PublicKey::rsa_pss_sha256(include_str!("data/rsa-pss/public-1024.pem"));
    let err = short.validate().unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
    assert!(PublicKey::rsa_pss_sha256("not a key").validate().is_err());
    // An ECDSA PEM key under keytype rsa.
    let ec = p256_key().verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    assert!(PublicKey::rsa_pss_sha256(ec).validate().is_err());
}

#[test]
fn rsa_pss_root_key_verifies() {
    use fwrepo_tuf::{Limits, RoleName, Root, Signed, Updater};
    // A root built and signed by python-tuf and securesystemslib with an RSA key for every role.
    let root_v1 = include_bytes!("data/rsa-pss/root.json");
    let now = crate::common::t0();
    let mut up = Updater::new(root_v1, now, Limits::default()).unwrap();
    let root = up.root().signed.clone();
    assert!(root.keys.values().all(|k| k.keytype == "rsa" && k.scheme == "rsassa-pss-sha256"));
    // Root v2, signed in this test with the same RSA key, is accepted as the next root.
    let mut next: Root = root.clone();
    next.version = 2;
    let canonical = fwrepo_tuf::cjson::to_canonical(&next).unwrap();
    let keyid = *root.keys.keys().next().unwrap();
    let sig = fwrepo_tuf::Signature { keyid, sig: hex::encode(rsa_sign(&canonical)), extra: Default::default() };
    let v2 = Signed::from_parts(next.clone(), vec![sig.clone()]).unwrap();
    up.update_root(v2.bytes()).unwrap();
    up.finish_root().unwrap();
    assert_eq!(up.root().signed.version, 2);
    // The same signature over a root that says something else is refused.
    let mut forged = next;
    forged.consistent_snapshot = false;
    let forged = Signed::from_parts(forged, vec![sig]).unwrap();
    let mut up = Updater::new(root_v1, now, Limits::default()).unwrap();
    let err = up.update_root(forged.bytes()).unwrap_err();
    assert!(
        matches!(err, fwrepo_tuf::Error::ThresholdNotMet { ref role, valid: 0, .. } if role == &RoleName::root()),
        "{err}"
    );
}
