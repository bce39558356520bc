//! The three kinds of entitlement record, in the field names of their CSV headers and JSON form.

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::Model;
use crate::ids::{AgreementId, Level, ModelSet, PartnerId, Serial};

/// Which kind of record a file or column family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Serials,
    Agreements,
    Partners,
}

impl RecordKind {
    pub const ALL: [RecordKind; 3] = [RecordKind::Serials, RecordKind::Agreements, RecordKind::Partners];

    /// The exact CSV header row of this kind; the header is how an import tells the kind.
    pub fn csv_header(self) -> &'static [&'static str] {
        match self {
            RecordKind::Serials => &["serial", "model", "warranty_end"],
            RecordKind::Agreements => &["agreement", "serials", "models", "start", "end", "status"],
            RecordKind::Partners => {
                &["partner", "name", "level", "status", "models", "may_mirror", "credential_sha256"]
            }
        }
    }

    /// The key of this kind in the JSON document, and its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Serials => "serials",
            RecordKind::Agreements => "agreements",
            RecordKind::Partners => "partners",
        }
    }
}

/// Whether an agreement or partner is in force. Dates bound an agreement as well; status is
/// the switch an operator flips (`fwrepo entitlements revoke`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn parse(s: &str) -> Result<Status> {
        match s {
            "active" => Ok(Status::Active),
            "suspended" => Ok(Status::Suspended),
            "revoked" => Ok(Status::Revoked),
            _ => Err(Error::invalid("status", s, "must be active, suspended or revoked")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A product serial number and its warranty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialRecord {
    pub serial: Serial,
    pub model: Model,
    /// Last day of warranty (inclusive, UTC).
    pub warranty_end: NaiveDate,
}

/// A service agreement (SAID) covering serials and/or whole models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    #[serde(rename = "agreement")]
    pub id: AgreementId,
    #[serde(default)]
    pub serials: BTreeSet<Serial>,
    #[serde(default = "no_models")]
    pub models: ModelSet,
    /// First day covered (inclusive, UTC).
    pub start: NaiveDate,
    /// Last day covered (inclusive, UTC).
    pub end: NaiveDate,
    pub status: Status,
}

fn no_models() -> ModelSet {
    ModelSet::Some(BTreeSet::new())
}

impl Agreement {
    /// Checks what the types cannot: something is covered and the dates are in order.
    pub fn validate(&self) -> Result<()> {
        if self.serials.is_empty() && self.models.is_empty() {
            return Err(Error::invalid("agreement", self.id.as_str(), "covers no serial and no model"));
        }
        if self.end < self.start {
            return Err(Error::invalid("agreement", self.id.as_str(), "ends before it starts"));
        }
        Ok(())
    }
}

/// An authorized service partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    #[serde(rename = "partner")]
    pub id: PartnerId,
    pub name: String,
    pub level: Level,
    pub status: Status,
    /// Models the partner may service, or all (`*`).
    pub models: ModelSet,
    /// Whether the partner may obtain `mirror` tokens.
    pub may_mirror: bool,
    /// SHA-256 of the partner's API credential; `None` when it has none (tokens then come
    /// only from an operator).
    #[serde(default)]
    pub credential_sha256: Option<CredentialHash>,
}

impl Partner {
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err(Error::invalid("partner name", &self.name, "must be 1 to 200 characters"));
        }
        if self.name.chars().any(char::is_control) {
            return Err(Error::invalid("partner name", &self.name, "contains control characters"));
        }
        Ok(())
    }
}

/// The SHA-256 of an API credential. The plain credential is never stored: a leaked database
/// then does not hand out partner access. Credentials are high-entropy random strings, so a
/// plain (unsalted, fast) hash is enough — there is nothing to guess.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialHash(pub [u8; 32]);

impl CredentialHash {
    /// Hashes a plain credential.
    pub fn of(credential: &str) -> CredentialHash {
        CredentialHash(Sha256::digest(credential.as_bytes()).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Result<CredentialHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::invalid("credential_sha256", s, "must be 64 hex digits"))?;
        Ok(CredentialHash(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialHash({})", self.to_hex())
    }
}

impl Serialize for CredentialHash {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for CredentialHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<CredentialHash, D::Error> {
        CredentialHash::from_hex(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
