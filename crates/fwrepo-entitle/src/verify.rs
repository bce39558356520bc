//! Token verification, shared by the origin and mirrors: a pure function of the token, the
//! trusted keys, the revocations and the current time.

use std::fmt;

use crate::keys::VerifyingKeys;
use crate::revocation::Revocations;
use crate::time::UnixTime;
use crate::token::{self, Claims, Scope};

/// Tokens longer than this are rejected unread. Ours are about 400 bytes; the cap bounds the
/// work an anonymous caller can cause before any signature check.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The most clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: i64 = 60;

/// The longest life (`exp − iat`) of any token, in seconds: 24 h. Issuers refuse to sign for
/// longer and verifiers reject longer-lived tokens, so a token minted with a huge `exp`
/// (by a bug, or with a key that later leaked) is worthless rather than a standing pass.
pub const MAX_TOKEN_LIFETIME_S: i64 = 24 * 60 * 60;

/// Why a token was not accepted. Fieldless and `Copy` so a server can count them by
/// [`Reject::as_str`] without logging anything a caller sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reject {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLarge,
    /// Not three base64url segments of the expected JSON.
    Malformed,
    /// `alg` is not `EdDSA`.
    UnsupportedAlgorithm,
    /// `kid` names no trusted key.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// Past `exp` (plus leeway).
    Expired,
    /// Before `nbf` (minus leeway).
    NotYetValid,
    /// `exp − iat` is longer than the verifier's maximum token lifetime.
    LifetimeTooLong,
    /// `aud` is not this service.
    WrongAudience,
    /// `iss` is not the expected issuer.
    WrongIssuer,
    /// The token's `jti` is revoked.
    RevokedToken,
    /// The token's subject is revoked.
    RevokedSubject,
    /// The token's scope does not cover the request.
    ScopeNotGranted,
    /// None of the blob's models is entitled.
    ModelNotEntitled,
}

impl Reject {
    /// Every reason, for pre-registering counters.
    pub const ALL: [Reject; 14] = [
        Reject::TooLarge,
        Reject::Malformed,
        Reject::UnsupportedAlgorithm,
        Reject::UnknownKey,
        Reject::BadSignature,
        Reject::Expired,
        Reject::NotYetValid,
        Reject::LifetimeTooLong,
        Reject::WrongAudience,
        Reject::WrongIssuer,
        Reject::RevokedToken,
        Reject::RevokedSubject,
        Reject::ScopeNotGranted,
        Reject::ModelNotEntitled,
    ];

    /// A stable label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TooLarge => "too_large",
            Reject::Malformed => "malformed",
            Reject::UnsupportedAlgorithm => "unsupported_alg",
            Reject::UnknownKey => "unknown_kid",
            Reject::BadSignature => "bad_signature",
            Reject::Expired => "expired",
            Reject::NotYetValid => "not_yet_valid",
            Reject::LifetimeTooLong => "lifetime_too_long",
            Reject::WrongAudience => "wrong_audience",
            Reject::WrongIssuer => "wrong_issuer",
            Reject::RevokedToken => "revoked_token",
            Reject::RevokedSubject => "revoked_subject",
            Reject::ScopeNotGranted => "scope_not_granted",
            Reject::ModelNotEntitled => "model_not_entitled",
        }
    }

    /// Whether the request lacked valid credentials (HTTP 401) rather than presenting valid
    /// ones that do not cover it (403).
    pub fn is_authentication(self) -> bool {
        !matches!(self, Reject::ScopeNotGranted | Reject::ModelNotEntitled)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Reject {}

/// What a successful signature check established; the cache keeps it.
pub(crate) struct Verified {
    pub claims: Claims,
    pub kid: String,
    pub key: [u8; 32],
}

/// Verifies tokens against a fixed set of keys and revocations. Build a new one when either
/// changes (after a sync or an operator action) and swap it in; [`crate::TokenCache`] re-checks
/// its entries against whichever verifier it is given.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: VerifyingKeys,
    revocations: Revocations,
    audience: String,
    issuer: Option<String>,
    leeway: i64,
    max_lifetime: i64,
}

impl Verifier {
    /// A verifier for tokens addressed to `audience`, with [`LEEWAY_S`] of clock skew, that
    /// rejects tokens living longer than [`MAX_TOKEN_LIFETIME_S`].
    pub fn new(keys: VerifyingKeys, revocations: Revocations, audience: impl Into<String>) -> Verifier {
        Verifier {
            keys,
            revocations,
            audience: audience.into(),
            issuer: None,
            leeway: LEEWAY_S,
            max_lifetime: MAX_TOKEN_LIFETIME_S,
        }
    }

    /// Also require `iss` to be `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Verifier {
        self.issuer = Some(issuer.into());
        self
    }

    /// Tolerate `secs` of clock skew, clamped to `0..=LEEWAY_S`.
    pub fn with_leeway(mut self, secs: i64) -> Verifier {
        self.leeway = secs.clamp(0, LEEWAY_S);
        self
    }

    /// Reject tokens whose `exp − iat` exceeds `secs`, clamped to `1..=MAX_TOKEN_LIFETIME_S`.
    pub fn with_max_lifetime(mut self, secs: i64) -> Verifier {
        self.max_lifetime = secs.clamp(1, MAX_TOKEN_LIFETIME_S);
        self
    }

    pub fn keys(&self) -> &VerifyingKeys {
        &self.keys
    }

    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Full verification of one request: [`Verifier::authenticate`], then
    /// [`Claims::authorize`] for `required` scope and the models of the requested blob.
    pub fn verify<S: AsRef<str>>(
        &self,
        token: &str,
        now: UnixTime,
        required: Scope,
        blob_models: &[S],
    ) -> Result<Claims, Reject> {
        let claims = self.authenticate(token, now)?;
        claims.authorize(required, blob_models)?;
        Ok(claims)
    }

    /// Everything about the token itself: shape, algorithm, key, signature, time, audience,
    /// issuer, revocation.
    pub fn authenticate(&self, token: &str, now: UnixTime) -> Result<Claims, Reject> {
        self.check_signature(token).and_then(|v| {
            self.check_claims(&v.claims, now)?;
            Ok(v.claims)
        })
    }

    /// Size, shape, algorithm, kid and signature — everything that needs the token's bytes.
    pub(crate) fn check_signature(&self, token: &str) -> Result<Verified, Reject> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Reject::TooLarge);
        }
        let parts = token::parse(token)?;
        let key = self.keys.get(&parts.kid).ok_or(Reject::UnknownKey)?;
        // verify_strict also refuses non-canonical signatures and small-order keys, so a
        // token has one valid signature only.
        key.verify_strict(parts.signing_input, &parts.signature).map_err(|_| Reject::BadSignature)?;
        Ok(Verified { claims: parts.claims, kid: parts.kid, key: key.to_bytes() })
    }

    /// Whether `kid` still names exactly `key` here; a cache hit from before a key removal or
    /// replacement fails this.
    pub(crate) fn trusts(&self, kid: &str, key: &[u8; 32]) -> bool {
        self.keys.get(kid).is_some_and(|k| k.as_bytes() == key)
    }

    /// The checks that need only the (already authenticated) claims, cheap enough to repeat on
    /// every cache hit.
    pub(crate) fn check_claims(&self, claims: &Claims, now: UnixTime) -> Result<(), Reject> {
        if now.0 >= claims.exp.0.saturating_add(self.leeway) {
            return Err(Reject::Expired);
        }
        if now.0 < claims.nbf.0.saturating_sub(self.leeway) {
            return Err(Reject::NotYetValid);
        }
        // A difference that overflows (exp = i64::MAX, iat far below zero) is too long too.
        if claims.exp.0.checked_sub(claims.iat.0).is_none_or(|life| life > self.max_lifetime) {
            return Err(Reject::LifetimeTooLong);
        }
        if claims.aud != self.audience {
            return Err(Reject::WrongAudience);
        }
        if self.issuer.as_ref().is_some_and(|iss| *iss != claims.iss) {
            return Err(Reject::WrongIssuer);
        }
        if self.revocations.is_token_revoked(claims.jti.as_str()) {
            return Err(Reject::RevokedToken);
        }
        if self.revocations.is_subject_revoked(&claims.sub) {
            return Err(Reject::RevokedSubject);
        }
        Ok(())
    }
}
