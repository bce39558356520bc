//! Public keys as TUF key objects (ed25519 sign and verify; ecdsa-sha2-nistp256 and
//! rsassa-pss-sha256 verify only), the ed25519 signing key, and its key-file format.
//!
//! # Key-file format
//!
//! A signing key file is one line of JSON followed by a newline:
//!
//! ```text
//! {"format":"fwrepo-signing-key","version":1,"keytype":"ed25519","scheme":"ed25519",
//!  "keyid":"<64 hex>","public":"<64 hex>","private":"<64 hex>"}
//! ```
//!
//! (shown wrapped; the file holds it on one line). `private` is the 32-byte ed25519 secret
//! seed, `public` the 32-byte public key, `keyid` the TUF key id of the public key. On reading,
//! `public` and `keyid` are recomputed from `private` and must match, so a truncated or edited
//! file is refused rather than silently signing as another key. Unknown fields are refused.
//! File placement and permission checks belong to the caller.

use ed25519_dalek::{Signer as _, Verifier as _};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::{Zeroize as _, Zeroizing};

use crate::cjson;
use crate::error::{Error, Result};
use crate::names::{KeyId, Sha256};

/// `keytype`/`scheme` of ed25519 keys.
pub const ED25519: &str = "ed25519";
/// `scheme` of P-256 ECDSA keys with SHA-256.
pub const ECDSA_P256: &str = "ecdsa-sha2-nistp256";
/// `keytype` of RSA keys.
pub const RSA: &str = "rsa";
/// `scheme` of RSASSA-PSS with SHA-256 (and MGF1 with SHA-256), as securesystemslib defines it.
pub const RSA_PSS_SHA256: &str = "rsassa-pss-sha256";
/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;

/// The `keyval` member of a key object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Public key: hex for ed25519; PEM SPKI or hex SEC1 for ECDSA; PEM SPKI for RSA.
    pub public: String,
    /// Members this crate does not know, kept so the key id and signatures stay intact.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A TUF key object as it appears in `root.keys` and `delegations.keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// `ed25519`, `ecdsa`, `ecdsa-sha2-nistp256` or `rsa`.
    pub keytype: String,
    /// `ed25519`, `ecdsa-sha2-nistp256` or `rsassa-pss-sha256`.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PublicKey {
    /// An ed25519 key object from its 32 public bytes.
    pub fn ed25519(public: &[u8; 32]) -> Self {
        Self {
            keytype: ED25519.into(),
            scheme: ED25519.into(),
            keyval: KeyVal { public: hex::encode(public), extra: Map::new() },
            extra: Map::new(),
        }
    }

    /// A P-256 ECDSA key object; `public` is a PEM SPKI block or hex SEC1 point.
    pub fn ecdsa_p256(public: impl Into<String>) -> Self {
        Self {
            keytype: "ecdsa".into(),
            scheme: ECDSA_P256.into(),
            keyval: KeyVal { public: public.into(), extra: Map::new() },
            extra: Map::new(),
        }
    }

    /// An RSA key object for RSASSA-PSS with SHA-256; `public` is a PEM SPKI block
    /// (`-----BEGIN PUBLIC KEY-----`), as securesystemslib writes it.
    pub fn rsa_pss_sha256(public: impl Into<String>) -> Self {
        Self {
            keytype: RSA.into(),
            scheme: RSA_PSS_SHA256.into(),
            keyval: KeyVal { public: public.into(), extra: Map::new() },
            extra: Map::new(),
        }
    }

    /// The key id: hex SHA-256 of this key object's canonical JSON.
    pub fn key_id(&self) -> KeyId {
        // A key object is strings and maps of strings, which canonical JSON always encodes.
        let bytes = cjson::to_canonical(self).expect("key objects hold no floats");
        KeyId::from_bytes(*Sha256::of(&bytes).as_bytes())
    }

    /// Canonical bytes of the key material, to tell the same key listed under two ids apart.
    pub(crate) fn material(&self) -> (String, String, String) {
        (self.keytype.clone(), self.scheme.clone(), self.keyval.public.trim().to_owned())
    }

    /// Checks that the key parses for its declared type and scheme.
    pub fn validate(&self) -> Result<()> {
        self.verifier().map(|_| ())
    }

    fn verifier(&self) -> Result<Verifier> {
        let bad = |reason: &str| Error::InvalidKey { key_id: self.key_id().to_string(), reason: reason.to_owned() };
        match (self.keytype.as_str(), self.scheme.as_str()) {
            (ED25519, ED25519) => {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(&self.keyval.public, &mut raw).map_err(|_| bad("public is not 64 hex digits"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| bad("not an ed25519 point"))?;
                Ok(Verifier::Ed25519(key))
            }
            ("ecdsa" | ECDSA_P256, ECDSA_P256) => {
                let public = self.keyval.public.trim();
                let key = if public.starts_with("-----BEGIN") {
                    p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                        .map_err(|_| bad("not a P-256 PEM SPKI key"))?
                } else {
                    let raw = hex::decode(public).map_err(|_| bad("public is neither PEM nor hex"))?;
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&raw).map_err(|_| bad("not a SEC1 P-256 point"))?
                };
                Ok(Verifier::P256(Box::new(key)))
            }
            (RSA, RSA_PSS_SHA256) => {
                use rsa::traits::PublicKeyParts as _;
                let key = rsa::RsaPublicKey::from_public_key_pem(self.keyval.public.trim())
                    .map_err(|_| bad("not an RSA PEM SPKI public key"))?;
                if key.n().bits() < RSA_MIN_BITS {
                    return Err(bad("RSA modulus shorter than 2048 bits"));
                }
                Ok(Verifier::RsaPss(Box::new(key)))
            }
            _ => Err(bad("unsupported keytype/scheme")),
        }
    }

    /// True when `sig` is a valid signature by this key over `msg`. A key of an unknown or
    /// mismatched type/scheme, or a malformed signature, never verifies.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self.verifier() {
            Ok(Verifier::Ed25519(key)) => ed25519_dalek::Signature::from_slice(sig)
                // Strict: rejects small-order keys and non-canonical signatures, so one message
                // has one valid signature per key.
                .is_ok_and(|s| key.verify_strict(msg, &s).is_ok()),
            Ok(Verifier::P256(key)) => {
                // securesystemslib writes DER; accept the fixed 64-byte form too.
                let sig = p256::ecdsa::Signature::from_der(sig).or_else(|_| p256::ecdsa::Signature::from_slice(sig));
                sig.is_ok_and(|s| key.verify(msg, &s).is_ok())
            }
            Ok(Verifier::RsaPss(key)) => verify_rsa_pss(&key, msg, sig),
            Err(_) => false,
        }
    }
}

enum Verifier {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(Box<p256::ecdsa::VerifyingKey>),
    RsaPss(Box<rsa::RsaPublicKey>),
}

/// RSASSA-PSS with SHA-256 and MGF1-SHA-256. securesystemslib signs with a salt as long as
/// the digest (as do cloud KMS and most HSMs); OpenSSL and pyca's `MAX_LENGTH` use the
/// longest salt that fits. Those two lengths are accepted, each checked exactly.
fn verify_rsa_pss(key: &rsa::RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::signature::Verifier as _;
    use rsa::traits::PublicKeyParts as _;
    let Ok(sig) = rsa::pss::Signature::try_from(sig) else { return false };
    const DIGEST_LEN: usize = 32;
    let em_len = (key.n().bits() - 1).div_ceil(8);
    let max_salt = em_len.saturating_sub(DIGEST_LEN + 2);
    [DIGEST_LEN, max_salt].iter().any(|&salt| {
        rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_salt_len(key.clone(), salt).verify(msg, &sig).is_ok()
    })
}

/// One entry of a metadata file's `signatures` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Id of the key that made the signature.
    pub keyid: KeyId,
    /// Hex signature bytes.
    pub sig: String,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An ed25519 signing key. The secret is zeroed when dropped.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey({})", self.key_id())
    }
}

const KEY_FILE_FORMAT: &str = "fwrepo-signing-key";
const KEY_FILE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    version: u32,
    keytype: String,
    scheme: String,
    keyid: String,
    public: String,
    private: String,
}

impl SigningKey {
    /// The key whose secret seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { inner: ed25519_dalek::SigningKey::from_bytes(seed) }
    }

    /// A fresh key from the operating system's random source. The only place this crate
    /// draws randomness.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| Error::Randomness { reason: e.to_string() })?;
        Ok(Self::from_seed(&seed))
    }

    /// The TUF key object of the public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::ed25519(self.inner.verifying_key().as_bytes())
    }

    /// The key id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `msg` (the canonical bytes of a `signed` object).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature { keyid: self.key_id(), sig: hex::encode(self.inner.sign(msg).to_bytes()), extra: Map::new() }
    }

    /// The key file text (see the module docs), zeroed on drop.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let mut file = KeyFile {
            format: KEY_FILE_FORMAT.into(),
            version: KEY_FILE_VERSION,
            keytype: ED25519.into(),
            scheme: ED25519.into(),
            keyid: self.key_id().to_string(),
            public: hex::encode(self.inner.verifying_key().as_bytes()),
            private: hex::encode(self.inner.to_bytes()),
        };
        let mut text = serde_json::to_string(&file).expect("key file serializes");
        file.private.zeroize();
        text.push('\n');
        Zeroizing::new(text)
    }

    /// Parses key file text, checking that the public key and key id match the secret.
    pub fn from_key_file(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::KeyFile { reason };
        let mut file: KeyFile =
            serde_json::from_str(text.trim_end()).map_err(|e| bad(format!("not a key file: {e}")))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        let decoded = hex::decode_to_slice(&file.private, seed.as_mut());
        file.private.zeroize();
        if file.format != KEY_FILE_FORMAT || file.version != KEY_FILE_VERSION {
            return Err(bad(format!(
                "format {:?} version {}, expected {KEY_FILE_FORMAT:?} version {KEY_FILE_VERSION}",
                file.format, file.version
            )));
        }
        if file.keytype != ED25519 || file.scheme != ED25519 {
            return Err(bad(format!("keytype {:?}/scheme {:?}, only ed25519 keys sign", file.keytype, file.scheme)));
        }
        decoded.map_err(|_| bad("private is not 64 hex digits".into()))?;
        let key = Self::from_seed(&seed);
        if hex::encode(key.inner.verifying_key().as_bytes()) != file.public {
            return Err(bad("public does not match private".into()));
        }
        if key.key_id().to_string() != file.keyid {
            return Err(bad(format!("keyid {} does not match the key ({})", file.keyid, key.key_id())));
        }
        Ok(key)
    }
}
