//! Validated identifiers: every serial, agreement id, partner id, model name, key id and token
//! id is checked once when it enters, and the type carries the proof from then on.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Characters of record ids, key ids and token ids. `:` is excluded because a [`Subject`] is
/// written `kind:id`; `,`, `;` and whitespace because ids travel in CSV lists.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_id(what: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(what, s, "empty"));
    }
    if s.len() > max {
        return Err(Error::invalid(what, s, "too long"));
    }
    if !s.chars().all(is_id_char) {
        return Err(Error::invalid(what, s, "only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s`.
            pub fn new(s: &str) -> Result<$name> {
                check_id($what, s, $max)?;
                Ok($name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // Hash, Eq and Ord are derived from the one String field, so they agree with `str`'s.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                $name::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A product serial number, e.g. `CZJ40100AB`.
    Serial, "serial", 64
);
id_type!(
    /// A service agreement id (SAID).
    AgreementId, "agreement id", 64
);
id_type!(
    /// An authorized service partner id.
    PartnerId, "partner id", 64
);
id_type!(
    /// An issuer key id (`kid`); for keys we generate, the RFC 7638 JWK thumbprint.
    Kid, "key id", 128
);
id_type!(
    /// A token id (`jti`).
    Jti, "token id", 64
);

/// A partner level such as `authorized` or `expert`: an open set of lowercase words, recorded
/// for reporting; issuance policy does not depend on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Level(String);

impl Level {
    pub fn new(s: &str) -> Result<Level> {
        if s.is_empty() || s.len() > 32 {
            return Err(Error::invalid("partner level", s, "must be 1 to 32 characters"));
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(Error::invalid("partner level", s, "only lowercase ASCII letters, digits, '-' and '_'"));
        }
        Ok(Level(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Level, D::Error> {
        Level::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server model name as the catalog spells it, e.g. `ProLiant DL380 Gen9`.
///
/// Printable ASCII without `;` (the CSV list separator), without surrounding spaces, and never
/// `*`, which means "all models" in a [`ModelSet`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Model(String);

impl Model {
    pub fn new(s: &str) -> Result<Model> {
        if s.is_empty() || s.len() > 128 {
            return Err(Error::invalid("model", s, "must be 1 to 128 characters"));
        }
        if s == "*" {
            return Err(Error::invalid("model", s, "'*' means all models and is not a model name"));
        }
        if !s.chars().all(|c| (' '..='~').contains(&c) && c != ';') {
            return Err(Error::invalid("model", s, "only printable ASCII without ';'"));
        }
        if s.trim() != s {
            return Err(Error::invalid("model", s, "leading or trailing space"));
        }
        Ok(Model(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Model {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Model, D::Error> {
        Model::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The models something covers: all of them, or a set. Written as a JSON array, `["*"]` for
/// all, and in CSV as `*` or a `;`-separated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSet {
    All,
    Some(BTreeSet<Model>),
}

impl ModelSet {
    /// Parses a CSV list field: `*`, or models separated by `;` (empty items are skipped).
    pub fn parse_list(s: &str) -> Result<ModelSet> {
        let items: Vec<&str> = s.split(';').map(str::trim).filter(|i| !i.is_empty()).collect();
        ModelSet::from_items(&items)
    }

    fn from_items<S: AsRef<str>>(items: &[S]) -> Result<ModelSet> {
        if items.iter().any(|i| i.as_ref() == "*") {
            if items.len() != 1 {
                return Err(Error::invalid("model list", "*", "'*' must stand alone"));
            }
            return Ok(ModelSet::All);
        }
        items.iter().map(|i| Model::new(i.as_ref())).collect::<Result<_>>().map(ModelSet::Some)
    }

    /// The CSV form, the inverse of [`ModelSet::parse_list`].
    pub fn to_list(&self) -> String {
        match self {
            ModelSet::All => "*".to_owned(),
            ModelSet::Some(m) => m.iter().map(Model::as_str).collect::<Vec<_>>().join(";"),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, ModelSet::Some(m) if m.is_empty())
    }

    /// Whether at least one of `models` is in the set (any, for [`ModelSet::All`]).
    pub fn covers_any<S: AsRef<str>>(&self, models: &[S]) -> bool {
        match self {
            ModelSet::All => true,
            ModelSet::Some(set) => models.iter().any(|m| set.iter().any(|s| s.as_str() == m.as_ref())),
        }
    }

    /// Whether `model` is in the set.
    pub fn contains(&self, model: &Model) -> bool {
        match self {
            ModelSet::All => true,
            ModelSet::Some(set) => set.contains(model),
        }
    }
}

impl Serialize for ModelSet {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ModelSet::All => ["*"].serialize(s),
            ModelSet::Some(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ModelSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ModelSet, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        ModelSet::from_items(&items).map_err(serde::de::Error::custom)
    }
}

/// Whom a token is about: the `sub` claim, written `serial:…`, `agreement:…` or `partner:…`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Serial(Serial),
    Agreement(AgreementId),
    Partner(PartnerId),
}

impl FromStr for Subject {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subject> {
        match s.split_once(':') {
            Some(("serial", id)) => Ok(Subject::Serial(Serial::new(id)?)),
            Some(("agreement", id)) => Ok(Subject::Agreement(AgreementId::new(id)?)),
            Some(("partner", id)) => Ok(Subject::Partner(PartnerId::new(id)?)),
            _ => Err(Error::invalid("subject", s, "must be serial:ID, agreement:ID or partner:ID")),
        }
    }
}

impl Subject {
    /// The kind (`serial`, `agreement`, `partner`) and the id, the two halves of `kind:id`.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Subject::Serial(id) => ("serial", id.as_str()),
            Subject::Agreement(id) => ("agreement", id.as_str()),
            Subject::Partner(id) => ("partner", id.as_str()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = self.parts();
        write!(f, "{kind}:{id}")
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Subject, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_separators_and_empty() {
        assert!(Serial::new("CZJ401-00.AB_1").is_ok());
        for bad in ["", "a:b", "a;b", "a b", "a,b", "é", &"x".repeat(65)] {
            assert!(Serial::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn models_allow_spaces_inside_only() {
        assert!(Model::new("ProLiant DL380 Gen9").is_ok());
        for bad in ["", "*", " DL380", "DL380 ", "a;b", "tab\there"] {
            assert!(Model::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn model_lists_round_trip_and_star_stands_alone() {
        let set = ModelSet::parse_list("DL380 Gen9; DL360 Gen9;").unwrap();
        assert_eq!(set.to_list(), "DL360 Gen9;DL380 Gen9");
        assert_eq!(ModelSet::parse_list("*").unwrap(), ModelSet::All);
        assert!(ModelSet::parse_list("*;DL380").is_err());
        assert!(ModelSet::parse_list("").unwrap().is_empty());
        let json = serde_json::to_string(&ModelSet::All).unwrap();
        assert_eq!(json, r#"["*"]"#);
        assert_eq!(serde_json::from_str::<ModelSet>(&json).unwrap(), ModelSet::All);
    }

    #[test]
    fn subjects_round_trip() {
        for s in ["serial:A1", "agreement:SA-9", "partner:acme"] {
            assert_eq!(s.parse::<Subject>().unwrap().to_string(), s);
        }
        for bad in ["serial", "user:x", "serial:", "partner:a:b"] {
            assert!(bad.parse::<Subject>().is_err(), "{bad:?}");
        }
    }
}
