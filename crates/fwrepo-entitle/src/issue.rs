//! Token issuance: which records earn which token, for how long.
//!
//! * A **serial** in warranty earns a `download` token for its model until the end of the
//!   warranty's last day.
//! * An **active agreement** within its dates earns a `download` token for its covered models
//!   plus the models of its covered serials, until the end of its last day.
//! * An **active partner** earns a `download` token, or a `mirror` token if it may mirror, for
//!   its covered models (`*` if it covers all).
//!
//! Every token lives at most [`IssuerConfig::max_lifetime_s`] (24 h by default, and never more
//! than [`MAX_TOKEN_LIFETIME_S`]).
//!
//! Refusals ([`Refusal`]) merge "does not exist" with "exists but is not entitled", so the
//! answer to a guess never confirms that a serial, agreement or credential exists. Only
//! after a partner has authenticated with its credential (or an operator asked) does the
//! refusal get specific ("mirroring not permitted", "entitlement covers no model"). An
//! agreement whose coverage resolves to no model gets the same refusal as an unknown one.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::ids::{AgreementId, Jti, ModelSet, PartnerId, Serial, Subject};
use crate::keys::IssuerKeyring;
use crate::records::{Partner, Status};
use crate::store::Entitlements;
use crate::time::UnixTime;
use crate::token::{self, Claims, Scope};
use crate::verify::MAX_TOKEN_LIFETIME_S;

/// Default and upper bound of a token's life.
pub const DEFAULT_MAX_LIFETIME_S: i64 = MAX_TOKEN_LIFETIME_S;

/// Why a token was refused. The text is safe to return to the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The serial is unknown, out of warranty, or revoked.
    UnknownOrExpiredSerial,
    /// The agreement is unknown, not yet started, ended, suspended or revoked.
    UnknownOrInactiveAgreement,
    /// The credential (or partner id) is unknown, or the partner is suspended or revoked.
    UnknownOrInactivePartner,
    /// Serials and agreements earn download tokens only; partners need `may_mirror`.
    MirrorNotPermitted,
    /// The partner's entitlement covers no model (told only to a partner that authenticated).
    NoModelCovered,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownOrExpiredSerial => "unknown or expired serial",
            Refusal::UnknownOrInactiveAgreement => "unknown or inactive service agreement",
            Refusal::UnknownOrInactivePartner => "unknown credential or inactive partner",
            Refusal::MirrorNotPermitted => "mirror scope not permitted",
            Refusal::NoModelCovered => "entitlement covers no model",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::Refused(r)
    }
}

/// What a token is requested on the strength of.
#[derive(Clone)]
pub enum TokenRequest {
    /// A product serial number (download scope).
    Serial(Serial),
    /// A service agreement id (download scope).
    Agreement(AgreementId),
    /// A partner named by an operator (`fwrepo token issue --partner`).
    Partner { id: PartnerId, scope: Scope },
    /// A partner authenticating with its plain API credential (`POST /v1/tokens`).
    PartnerCredential { credential: String, scope: Scope },
}

// By hand, so that logging a request never prints a partner's plain credential.
impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRequest::Serial(s) => f.debug_tuple("Serial").field(s).finish(),
            TokenRequest::Agreement(a) => f.debug_tuple("Agreement").field(a).finish(),
            TokenRequest::Partner { id, scope } => {
                f.debug_struct("Partner").field("id", id).field("scope", scope).finish()
            }
            TokenRequest::PartnerCredential { scope, .. } => {
                f.debug_struct("PartnerCredential").field("credential", &"<redacted>").field("scope", scope).finish()
            }
        }
    }
}

/// Issuer settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The `iss` claim, e.g. the origin's URL.
    pub issuer: String,
    /// The `aud` claim: the service tokens are for (origin and mirrors verify the same value).
    pub audience: String,
    /// Longest token life in seconds: 1 to [`MAX_TOKEN_LIFETIME_S`].
    pub max_lifetime_s: i64,
}

impl IssuerConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> IssuerConfig {
        IssuerConfig { issuer: issuer.into(), audience: audience.into(), max_lifetime_s: DEFAULT_MAX_LIFETIME_S }
    }
}

/// A signed token and the claims in it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

/// Signs tokens with the newest key of a keyring.
pub struct Issuer {
    config: IssuerConfig,
    keyring: IssuerKeyring,
}

impl Issuer {
    pub fn new(config: IssuerConfig, keyring: IssuerKeyring) -> Result<Issuer> {
        if !(1..=MAX_TOKEN_LIFETIME_S).contains(&config.max_lifetime_s) {
            return Err(Error::invalid(
                "token lifetime",
                &config.max_lifetime_s.to_string(),
                "must be 1 to 86400 seconds (24 h)",
            ));
        }
        Ok(Issuer { config, keyring })
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    pub fn keyring(&self) -> &IssuerKeyring {
        &self.keyring
    }

    /// Decides `request` against the records and signs a token, or says why not
    /// ([`Error::Refused`]).
    pub fn issue(&self, records: &Entitlements, request: &TokenRequest, now: UnixTime) -> Result<IssuedToken> {
        match request {
            TokenRequest::Serial(serial) => {
                let subject = Subject::Serial(serial.clone());
                let rec = records.serial(serial)?;
                let rec = match rec {
                    Some(r) if now < UnixTime::end_of(r.warranty_end) && !records.is_subject_revoked(&subject)? => r,
                    _ => return Err(Refusal::UnknownOrExpiredSerial.into()),
                };
                let models = ModelSet::Some(BTreeSet::from([rec.model]));
                self.mint(subject, Scope::Download, models, Some(UnixTime::end_of(rec.warranty_end)), now)
            }
            TokenRequest::Agreement(id) => {
                let subject = Subject::Agreement(id.clone());
                let rec = match records.agreement(id)? {
                    Some(a)
                        if a.status == Status::Active
                            && UnixTime::start_of(a.start) <= now
                            && now < UnixTime::end_of(a.end)
                            && !records.is_subject_revoked(&subject)? =>
                    {
                        a
                    }
                    _ => return Err(Refusal::UnknownOrInactiveAgreement.into()),
                };
                let models = match rec.models {
                    ModelSet::All => ModelSet::All,
                    ModelSet::Some(mut models) => {
                        // Coverage of a serial is coverage of its model; serials we have no
                        // record of add nothing.
                        for s in &rec.serials {
                            if let Some(r) = records.serial(s)? {
                                models.insert(r.model);
                            }
                        }
                        ModelSet::Some(models)
                    }
                };
                self.mint(subject, Scope::Download, models, Some(UnixTime::end_of(rec.end)), now)
            }
            TokenRequest::Partner { id, scope } => {
                let partner = records.partner(id)?;
                self.for_partner(records, partner, *scope, now)
            }
            TokenRequest::PartnerCredential { credential, scope } => {
                let partner = records.partner_by_credential(credential)?;
                self.for_partner(records, partner, *scope, now)
            }
        }
    }

    fn for_partner(
        &self,
        records: &Entitlements,
        partner: Option<Partner>,
        scope: Scope,
        now: UnixTime,
    ) -> Result<IssuedToken> {
        let Some(p) = partner else { return Err(Refusal::UnknownOrInactivePartner.into()) };
        let subject = Subject::Partner(p.id.clone());
        if p.status != Status::Active || records.is_subject_revoked(&subject)? {
            return Err(Refusal::UnknownOrInactivePartner.into());
        }
        if scope == Scope::Mirror && !p.may_mirror {
            return Err(Refusal::MirrorNotPermitted.into());
        }
        self.mint(subject, scope, p.models, None, now)
    }

    /// Signs a token for an entitlement already decided: the pure core of [`Issuer::issue`].
    /// The token lives [`IssuerConfig::max_lifetime_s`], cut short at `not_after`.
    pub fn mint(
        &self,
        sub: Subject,
        scope: Scope,
        models: ModelSet,
        not_after: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<IssuedToken> {
        if models.is_empty() {
            // Told apart from "unknown" only for a partner, who has authenticated: for an
            // agreement it would confirm that a guessed id exists.
            return Err(match sub {
                Subject::Serial(_) => Refusal::UnknownOrExpiredSerial,
                Subject::Agreement(_) => Refusal::UnknownOrInactiveAgreement,
                Subject::Partner(_) => Refusal::NoModelCovered,
            }
            .into());
        }
        let mut exp = now.plus(self.config.max_lifetime_s);
        if let Some(end) = not_after {
            exp = exp.min(end);
        }
        if exp <= now {
            // Callers check the dates first; this guards the invariant "never past the end".
            return Err(match sub {
                Subject::Serial(_) => Refusal::UnknownOrExpiredSerial,
                Subject::Agreement(_) => Refusal::UnknownOrInactiveAgreement,
                Subject::Partner(_) => Refusal::UnknownOrInactivePartner,
            }
            .into());
        }
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub,
            aud: self.config.audience.clone(),
            iat: now,
            nbf: now,
            exp,
            jti: new_jti()?,
            scope,
            models,
        };
        let (kid, key) = self.keyring.signer();
        Ok(IssuedToken { token: token::sign(key, kid, &claims), claims })
    }
}

/// 127 random bits, base64url: unguessable and unique without coordination.
fn new_jti() -> Result<Jti> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(jti_from(bytes))
}

/// The jti of 16 random bytes. The top bit of the first byte is cleared, so the first
/// base64url character is one of `A`–`Z`, `a`–`f`: never `-`, which a command line would read
/// as an option (`token revoke --jti -x…`).
fn jti_from(mut bytes: [u8; 16]) -> Jti {
    bytes[0] &= 0x7f;
    Jti::new(&URL_SAFE_NO_PAD.encode(bytes)).expect("base64url is a valid jti")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_never_starts_with_a_dash() {
        // Every value of the byte that decides the first character, then random ones.
        for first in 0..=255u8 {
            let mut bytes = [0x5a; 16];
            bytes[0] = first;
            let jti = jti_from(bytes);
            assert!(jti.as_str().starts_with(|c: char| c.is_ascii_alphabetic()), "{jti}");
        }
        for _ in 0..10_000 {
            let jti = new_jti().unwrap();
            assert!(!jti.as_str().starts_with('-'), "{jti}");
            assert_eq!(jti.as_str().len(), 22);
        }
    }
}
