//! Entitlement records (serials, service agreements, partners) and the EdDSA access tokens
//! exchanged for them.
//!
//! The crate is split so that verification stays pure and cheap:
//!
//! * [`ids`] — validated identifiers ([`Serial`], [`AgreementId`], [`PartnerId`], [`Model`],
//!   [`Subject`]); anything that crosses the boundary is checked once here.
//! * [`records`] and [`import`] — the three record kinds and their CSV/JSON forms.
//! * [`store`] — [`Entitlements`], the records and revocations in RocksDB column families
//!   ([`COLUMN_FAMILIES`]) of the shared [`fwrepo_db::Db`].
//! * [`keys`] — the issuer keyring (private JWK Set file) and the public JWK Set
//!   (`auth/issuers.json`).
//! * [`token`] — the JWT wire format (compact JWS, EdDSA only), hand-written: about a hundred
//!   lines whose every check we choose, instead of a general JWT crate whose algorithm
//!   negotiation we would have to fence in.
//! * [`issue`] — the issuance policy ([`Issuer`]).
//! * [`verify`] — [`Verifier`] (pure: keys + revocations + now) and its typed [`Reject`]
//!   reasons; [`cache`] — [`TokenCache`], which skips the signature check for tokens seen before.
//! * [`revocation`] — [`Revocations`], the `auth/revocations.json` document.

pub mod cache;
mod error;
pub mod ids;
pub mod import;
#[cfg(feature = "store")]
pub mod issue;
pub mod keys;
pub mod records;
pub mod revocation;
#[cfg(feature = "store")]
pub mod store;
mod time;
pub mod token;
pub mod verify;

pub use cache::TokenCache;
pub use error::{Error, Result};
pub use ids::{AgreementId, Jti, Kid, Level, Model, ModelSet, PartnerId, Serial, Subject};
#[cfg(feature = "store")]
pub use issue::{IssuedToken, Issuer, IssuerConfig, Refusal, TokenRequest};
pub use keys::{IssuerKeyring, VerifyingKeys};
pub use records::{Agreement, Partner, RecordKind, SerialRecord, Status};
pub use revocation::Revocations;
#[cfg(feature = "store")]
pub use store::{COLUMN_FAMILIES, Causes, Entitlements, ImportSummary, Lifted, SubjectRevocation};
pub use time::UnixTime;
pub use token::{Claims, Scope};
pub use verify::{LEEWAY_S, MAX_TOKEN_LEN, MAX_TOKEN_LIFETIME_S, Reject, Verifier};
