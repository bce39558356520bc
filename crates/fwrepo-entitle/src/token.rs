//! The token wire format: a JWT (RFC 7519) in JWS compact serialization, signed with EdDSA
//! over Ed25519 (RFC 8037) and nothing else.
//!
//! Written by hand on `base64` + `serde_json` + `ed25519-dalek` rather than with a JWT crate:
//! the general crates negotiate algorithms from the header and want PEM/DER keys, while here
//! the algorithm is pinned before anything else is looked at, the key comes from our own JWK
//! Set, and each check maps to one [`Reject`] reason the server can count.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::ids::{Jti, Kid, ModelSet, Subject};
use crate::time::UnixTime;
use crate::verify::Reject;

/// The only `alg` we sign with or accept.
pub const ALG: &str = "EdDSA";

/// What a token lets its bearer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Fetch firmware of the entitled models.
    Download,
    /// Sync a mirror: everything a download token allows, plus the mirror endpoints.
    Mirror,
}

impl Scope {
    /// Whether a token of scope `self` may be used where `required` is needed. A mirror fetches
    /// the same blobs a customer does, so `mirror` includes `download`; never the reverse.
    pub fn permits(self, required: Scope) -> bool {
        self == required || (self == Scope::Mirror && required == Scope::Download)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Download => "download",
            Scope::Mirror => "mirror",
        }
    }
}

/// The JOSE header. Only the members we write are accepted: an unexpected `crit`, `jku`,
/// `jwk` or `x5u` is a token we did not issue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// The claims of an fwrepo token.
///
/// Unknown claims are ignored on reading (they are covered by the signature, and a newer
/// origin may add some), unlike unknown header members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: Subject,
    pub aud: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub jti: Jti,
    pub scope: Scope,
    /// Entitled server models; `["*"]` for a partner that covers every model.
    pub models: ModelSet,
}

impl Claims {
    /// The per-request part of verification: the token's scope covers `required` and at least
    /// one of the blob's models (`blob_models`, from the catalog) is entitled.
    pub fn authorize<S: AsRef<str>>(&self, required: Scope, blob_models: &[S]) -> Result<(), Reject> {
        if !self.scope.permits(required) {
            return Err(Reject::ScopeNotGranted);
        }
        if !self.models.covers_any(blob_models) {
            return Err(Reject::ModelNotEntitled);
        }
        Ok(())
    }
}

/// Signs `claims` with `key` under `kid`: `b64(header).b64(claims).b64(signature)`.
// Only issuance signs; a build without the `store` feature just verifies.
#[cfg_attr(not(feature = "store"), allow(dead_code))]
pub(crate) fn sign(key: &SigningKey, kid: &Kid, claims: &Claims) -> String {
    let header = Header { alg: ALG.to_owned(), typ: Some("JWT".to_owned()), kid: Some(kid.as_str().to_owned()) };
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serializes"));
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims).expect("claims serialize"), &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    token
}

/// A token taken apart and shape-checked, not yet authenticated.
pub(crate) struct Parts<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub kid: String,
    pub claims: Claims,
    pub signature: Signature,
}

/// Splits and decodes `token`. No cryptography happens here; every failure is
/// [`Reject::Malformed`] except a header naming another algorithm.
pub(crate) fn parse(token: &str) -> Result<Parts<'_>, Reject> {
    let mut segments = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (segments.next(), segments.next(), segments.next(), segments.next()) else {
        return Err(Reject::Malformed);
    };
    let header: Header = decode_json(h)?;
    // Pinned before anything else: `none`, HS256 with our public key as its secret, RS*... all
    // stop here, whatever the rest of the token says.
    if header.alg != ALG {
        return Err(Reject::UnsupportedAlgorithm);
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(Reject::Malformed);
    }
    let kid = header.kid.ok_or(Reject::Malformed)?;
    let claims: Claims = decode_json(p)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| Reject::Malformed)?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| Reject::Malformed)?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + p.len()];
    Ok(Parts { signing_input, kid, claims, signature: Signature::from_bytes(&sig) })
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, Reject> {
    // The engine rejects padding and non-canonical trailing bits, so one token has exactly
    // one encoding and the cache key cannot be varied without changing the bytes signed.
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| Reject::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Reject::Malformed)
}
