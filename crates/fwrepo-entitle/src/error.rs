//! The error type of the crate.

use crate::ids::Kid;
#[cfg(feature = "store")]
use crate::issue::Refusal;

/// Errors of entitlement records, keys and issuance.
///
/// Token *verification* does not use this type: its outcomes are [`crate::Reject`] reasons,
/// which a server counts rather than logs as failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The index database failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Db(#[from] fwrepo_db::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record {key:?} in {cf}: {reason}")]
    CorruptRecord { cf: &'static str, key: String, reason: String },
    /// An identifier, date or other field failed validation.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid { what: &'static str, value: String, reason: &'static str },
    /// A row (or JSON value) of an import file is bad; nothing from the file was applied.
    #[error("{file}:{line}:{column}: {field}: {reason}")]
    Import {
        file: String,
        /// 1-based line in the file.
        line: u64,
        /// 1-based column: the CSV field number, or the character column of a JSON error.
        column: u64,
        /// The CSV header name of the column, or `json` for JSON syntax errors.
        field: String,
        reason: String,
    },
    /// A record that an operation names does not exist.
    #[error("no {kind} {id:?}")]
    NotFound { kind: &'static str, id: String },
    /// An issuer key file or JWK Set could not be read.
    #[error("issuer key {kid:?}: {reason}")]
    Key { kid: Option<String>, reason: String },
    /// A keyring operation would leave no key to sign with.
    #[error("issuer key {kid} is the last key of the keyring and cannot be removed")]
    LastIssuerKey { kid: Kid },
    /// The revocation document could not be read.
    #[error("revocation list: {reason}")]
    Revocations { reason: String },
    /// The operating system could not supply random bytes.
    #[error("random source: {0}")]
    Random(String),
    #[cfg(feature = "store")]
    /// Issuance was refused; the reason is safe to show to the requester.
    #[error("token refused: {0}")]
    Refused(Refusal),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: &'static str) -> Error {
        // Cap what we echo: values come from files and requests.
        let value: String = value.chars().take(80).collect();
        Error::Invalid { what, value, reason }
    }
}
