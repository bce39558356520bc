//! Issuer keys: the private keyring the origin signs with, and the public JWK Set
//! (`auth/issuers.json`) every verifier loads.
//!
//! # Keyring file format
//!
//! A keyring is a JSON JWK Set (RFC 7517) whose members are Ed25519 private keys in the
//! RFC 8037 form, so standard tools can read it:
//!
//! ```json
//! {"keys": [
//!   {"kty": "OKP", "crv": "Ed25519", "kid": "…", "use": "sig", "alg": "EdDSA",
//!    "x": "<base64url public key>", "d": "<base64url 32-byte seed>"}
//! ]}
//! ```
//!
//! Keys are listed oldest first and the **last key signs**; the others stay for verification
//! until removed. `kid` is the RFC 7638 thumbprint of the public key, so two keys never share
//! one. [`IssuerKeyring::to_bytes`] and [`IssuerKeyring::from_bytes`] convert; the caller does
//! the file IO (and should keep the file private, mode 0600).
//!
//! The public JWK Set is the same document without `d`; [`VerifyingKeys::from_jwks`] refuses a
//! set that carries `d`, because publishing one would be a key leak.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::Kid;

#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

fn key_err(kid: Option<&str>, reason: impl Into<String>) -> Error {
    Error::Key { kid: kid.map(str::to_owned), reason: reason.into() }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order, base64url.
pub fn thumbprint(key: &VerifyingKey) -> Kid {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    Kid::new(&URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))).expect("base64url is a valid kid")
}

fn public_jwk(kid: &Kid, key: &VerifyingKey) -> Jwk {
    Jwk {
        kty: "OKP".to_owned(),
        crv: "Ed25519".to_owned(),
        x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
        kid: Some(kid.to_string()),
        use_: Some("sig".to_owned()),
        alg: Some("EdDSA".to_owned()),
        d: None,
    }
}

/// Checks the members every Ed25519 JWK of ours must have and returns its kid and public key.
fn check_jwk(jwk: &Jwk) -> Result<(Kid, VerifyingKey)> {
    let kid_str = jwk.kid.as_deref();
    let kid = Kid::new(kid_str.ok_or_else(|| key_err(None, "missing kid"))?)?;
    let fail = |reason: &str| key_err(kid_str, reason);
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(fail("not an Ed25519 key (kty OKP, crv Ed25519)"));
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err(fail("use is not sig"));
    }
    if jwk.alg.as_deref().is_some_and(|a| a != "EdDSA") {
        return Err(fail("alg is not EdDSA"));
    }
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| fail("x is not 32 base64url bytes"))?;
    let key = VerifyingKey::from_bytes(&x).map_err(|_| fail("x is not an Ed25519 point"))?;
    if key.is_weak() {
        return Err(fail("x is a small-order point"));
    }
    Ok((kid, key))
}

/// The origin's signing keys, oldest first; the newest signs.
pub struct IssuerKeyring {
    keys: Vec<(Kid, SigningKey)>,
}

impl IssuerKeyring {
    /// A keyring with one fresh key.
    pub fn generate() -> Result<IssuerKeyring> {
        let mut ring = IssuerKeyring { keys: Vec::new() };
        ring.rotate()?;
        Ok(ring)
    }

    /// A keyring of the given seeds, oldest first (for tests and imports of existing keys).
    pub fn from_seeds(seeds: &[[u8; 32]]) -> Result<IssuerKeyring> {
        if seeds.is_empty() {
            return Err(key_err(None, "a keyring needs at least one key"));
        }
        let keys = seeds
            .iter()
            .map(|s| {
                let sk = SigningKey::from_bytes(s);
                (thumbprint(&sk.verifying_key()), sk)
            })
            .collect();
        Ok(IssuerKeyring { keys })
    }

    /// Reads a keyring file (see the module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<IssuerKeyring> {
        let set: JwkSet =
            serde_json::from_slice(bytes).map_err(|e| key_err(None, format!("keyring is not a JWK Set: {e}")))?;
        if set.keys.is_empty() {
            return Err(key_err(None, "keyring holds no key"));
        }
        let mut keys: Vec<(Kid, SigningKey)> = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let (kid, public) = check_jwk(jwk)?;
            let d: [u8; 32] = jwk
                .d
                .as_deref()
                .and_then(|d| URL_SAFE_NO_PAD.decode(d).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| key_err(Some(kid.as_str()), "d is missing or not 32 base64url bytes"))?;
            let sk = SigningKey::from_bytes(&d);
            if sk.verifying_key() != public {
                return Err(key_err(Some(kid.as_str()), "x does not match d"));
            }
            if keys.iter().any(|(k, _)| *k == kid) {
                return Err(key_err(Some(kid.as_str()), "kid appears twice"));
            }
            keys.push((kid, sk));
        }
        Ok(IssuerKeyring { keys })
    }

    /// The keyring file, private keys included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let keys = self
            .keys
            .iter()
            .map(|(kid, sk)| Jwk {
                d: Some(URL_SAFE_NO_PAD.encode(sk.to_bytes())),
                ..public_jwk(kid, &sk.verifying_key())
            })
            .collect();
        let mut out = serde_json::to_vec_pretty(&JwkSet { keys }).expect("JWK Set serializes");
        out.push(b'\n');
        out
    }

    /// Adds a fresh key, which becomes the signing key, and returns its kid. The older keys
    /// keep verifying tokens already out until [`IssuerKeyring::remove`]d.
    pub fn rotate(&mut self) -> Result<Kid> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::Random(e.to_string()))?;
        let sk = SigningKey::from_bytes(&seed);
        let kid = thumbprint(&sk.verifying_key());
        self.keys.push((kid.clone(), sk));
        Ok(kid)
    }

    /// Removes the key `kid`: tokens it signed stop verifying once the new JWK Set is
    /// published. The last key cannot be removed.
    pub fn remove(&mut self, kid: &Kid) -> Result<()> {
        let i = self
            .keys
            .iter()
            .position(|(k, _)| k == kid)
            .ok_or_else(|| Error::NotFound { kind: "issuer key", id: kid.to_string() })?;
        if self.keys.len() == 1 {
            return Err(Error::LastIssuerKey { kid: kid.clone() });
        }
        self.keys.remove(i);
        Ok(())
    }

    /// The key ids, oldest first.
    pub fn kids(&self) -> impl Iterator<Item = &Kid> {
        self.keys.iter().map(|(k, _)| k)
    }

    /// The signing key: the newest.
    pub(crate) fn signer(&self) -> (&Kid, &SigningKey) {
        let (kid, sk) = self.keys.last().expect("a keyring is never empty");
        (kid, sk)
    }

    /// The kid tokens are signed with now.
    pub fn signing_kid(&self) -> &Kid {
        self.signer().0
    }

    /// The public half, for verification.
    pub fn verifying_keys(&self) -> VerifyingKeys {
        VerifyingKeys { keys: self.keys.iter().map(|(k, sk)| (k.clone(), sk.verifying_key())).collect() }
    }

    /// The exact bytes of `auth/issuers.json`.
    pub fn public_jwks_bytes(&self) -> Vec<u8> {
        self.verifying_keys().to_jwks_bytes()
    }
}

/// Public keys by kid: what a verifier trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyingKeys {
    keys: BTreeMap<Kid, VerifyingKey>,
}

impl VerifyingKeys {
    /// Reads a public JWK Set (`auth/issuers.json`). Every member must be an Ed25519 signing
    /// key with a kid; a private member `d` is refused.
    pub fn from_jwks(bytes: &[u8]) -> Result<VerifyingKeys> {
        let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| key_err(None, format!("not a JWK Set: {e}")))?;
        let mut keys = BTreeMap::new();
        for jwk in &set.keys {
            let (kid, key) = check_jwk(jwk)?;
            if jwk.d.is_some() {
                return Err(key_err(Some(kid.as_str()), "public JWK Set carries a private key (d)"));
            }
            if keys.contains_key(&kid) {
                return Err(key_err(Some(kid.as_str()), "kid appears twice"));
            }
            keys.insert(kid, key);
        }
        Ok(VerifyingKeys { keys })
    }

    /// The JWK Set document, keys sorted by kid so equal sets give equal bytes.
    pub fn to_jwks_bytes(&self) -> Vec<u8> {
        let keys = self.keys.iter().map(|(kid, key)| public_jwk(kid, key)).collect();
        let mut out = serde_json::to_vec_pretty(&JwkSet { keys }).expect("JWK Set serializes");
        out.push(b'\n');
        out
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
