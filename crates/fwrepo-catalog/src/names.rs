//! Validated newtypes for what enters the catalog from manifests and HTTP requests: release
//! ids, server model and component names, target paths, dates, SHA-256 digests and kinds.
//! Each is checked once when built or deserialized, so holding one is proof the check passed.
//!
//! Names become parts of RocksDB keys joined by a NUL byte, which is why none may contain
//! control characters.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted model or component name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest accepted release id, in bytes.
pub const MAX_RELEASE_ID_LEN: usize = 64;
/// Longest accepted target path, in bytes (the signed-metadata crate accepts the same).
pub const MAX_TARGET_PATH_LEN: usize = 1024;

/// Rules shared by free-text names (models, components, release display names).
pub(crate) fn check_name(s: &str, max: usize) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        Err("empty")
    } else if s.len() > max {
        Err("too long")
    } else if s.chars().any(char::is_control) {
        // Also excludes NUL, the key separator.
        Err("contains a control character")
    } else if s.trim() != s {
        // `"DL380 "` and `"DL380"` would otherwise be two models that print the same.
        Err("leading or trailing whitespace")
    } else {
        Ok(())
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                let check: fn(&str) -> std::result::Result<(), &'static str> = $check;
                match check(&s) {
                    Ok(()) => Ok(Self(s)),
                    Err(reason) => Err(Error::invalid($what, &s, reason)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A server model name such as `ProLiant DL380p Gen8`: 1 to 256 bytes, no control
    /// characters, no surrounding whitespace. Compared exactly (case matters).
    ModelName,
    "model name",
    |s| check_name(s, MAX_NAME_LEN)
);

string_newtype!(
    /// A component name such as `iLO 4 Firmware`, the key of a client's inventory: 1 to 256
    /// bytes, no control characters, no surrounding whitespace. Compared exactly.
    ComponentName,
    "component name",
    |s| check_name(s, MAX_NAME_LEN)
);

string_newtype!(
    /// A target path: relative, `/`-separated, without empty, `.` or `..` segments, NUL,
    /// control characters, `"` or `\`; at most 1024 bytes. Safe to join under a directory.
    TargetPath,
    "target path",
    check_target_path
);

fn check_target_path(s: &str) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_TARGET_PATH_LEN {
        return Err("longer than 1024 bytes");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    // Both break the JSON and shell quoting of tools downstream, and `\` is a separator on
    // Windows clients.
    if s.contains('"') || s.contains('\\') {
        return Err("contains a double quote or backslash");
    }
    if s.starts_with('/') {
        return Err("absolute");
    }
    for segment in s.split('/') {
        match segment {
            "" => return Err("empty segment"),
            "." => return Err("`.` segment"),
            ".." => return Err("`..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// An SPP release id such as `2014.02.0`: 1 to 64 bytes of ASCII letters, digits, `.`, `-`
/// and `_`, starting with a letter or digit.
///
/// Ids order as versions ([`crate::Version`]), then by spelling, so `2014.02.0 < 2014.10.0` and two
/// distinct ids never compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId {
    raw: String,
}

impl ReleaseId {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<ReleaseId> {
        let raw = s.into();
        let reason = if raw.is_empty() {
            Some("empty")
        } else if raw.len() > MAX_RELEASE_ID_LEN {
            Some("longer than 64 bytes")
        } else if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            Some("only ASCII letters, digits, `.`, `-` and `_` are allowed")
        } else if !raw.as_bytes()[0].is_ascii_alphanumeric() {
            Some("must start with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::invalid("release id", &raw, reason)),
            None => Ok(ReleaseId { raw }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl Ord for ReleaseId {
    fn cmp(&self, other: &Self) -> Ordering {
        fwrepo_version::compare(&self.raw, &other.raw).then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for ReleaseId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for ReleaseId {
    type Err = Error;
    fn from_str(s: &str) -> Result<ReleaseId> {
        ReleaseId::new(s)
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = Error;
    fn try_from(s: String) -> Result<ReleaseId> {
        ReleaseId::new(s)
    }
}

impl From<ReleaseId> for String {
    fn from(v: ReleaseId) -> String {
        v.raw
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A calendar date written `YYYY-MM-DD` (ISO 8601), checked against the Gregorian calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Date {
    // Field order makes the derived order chronological.
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// The date `year-month-day`, if it exists.
    pub fn from_ymd(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Date { year, month, day })
    }

    pub fn year(&self) -> u16 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }
    pub fn day(&self) -> u8 {
        self.day
    }
}

impl FromStr for Date {
    type Err = Error;

    fn from_str(s: &str) -> Result<Date> {
        let b = s.as_bytes();
        let shape = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape {
            return Err(Error::invalid("date", s, "expected YYYY-MM-DD"));
        }
        // The shape check guarantees ASCII digits, so these parses cannot fail.
        let num = |r: std::ops::Range<usize>| s[r].parse::<u16>().unwrap_or(0);
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        Date::from_ymd(year, month as u8, day as u8).ok_or_else(|| Error::invalid("date", s, "no such day"))
    }
}

impl TryFrom<String> for Date {
    type Error = Error;
    fn try_from(s: String) -> Result<Date> {
        s.parse()
    }
}

impl From<Date> for String {
    fn from(d: Date) -> String {
        d.to_string()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A SHA-256 digest, written as 64 lowercase hex digits (the form TUF's `hashes.sha256` uses).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    /// Accepts exactly 64 lowercase hex digits: one spelling per digest.
    fn from_str(s: &str) -> Result<Sha256> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Error::invalid("sha256", s, "expected 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::invalid("sha256", s, "not hex"))?;
        Ok(Sha256(out))
    }
}

impl TryFrom<String> for Sha256 {
    type Error = Error;
    fn try_from(s: String) -> Result<Sha256> {
        s.parse()
    }
}

impl From<Sha256> for String {
    fn from(d: Sha256) -> String {
        d.to_hex()
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

/// What a component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Kind {
    Firmware,
    Driver,
    Software,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Firmware => "firmware",
            Kind::Driver => "driver",
            Kind::Software => "software",
        }
    }
}

impl FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Kind> {
        match s {
            "firmware" => Ok(Kind::Firmware),
            "driver" => Ok(Kind::Driver),
            "software" => Ok(Kind::Software),
            _ => Err(Error::UnknownKind { kind: s.chars().take(80).collect() }),
        }
    }
}

impl TryFrom<String> for Kind {
    type Error = Error;
    fn try_from(s: String) -> Result<Kind> {
        s.parse()
    }
}

impl From<Kind> for &'static str {
    fn from(k: Kind) -> &'static str {
        k.as_str()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_reject_escapes() {
        for ok in ["firmware/cp022345.scexe", "a", "a/b.c/d", "..a/b..", "dir/.hidden"] {
            assert!(TargetPath::new(ok).is_ok(), "{ok:?} should be accepted");
        }
        for bad in ["", "/abs", "a/../b", "..", "./a", "a//b", "a/", "a\\b", "a\"b", "a\0b", "a\nb"] {
            assert!(TargetPath::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(TargetPath::new("x".repeat(MAX_TARGET_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!("2014-02-20".parse::<Date>().unwrap().to_string(), "2014-02-20");
        assert!("2016-02-29".parse::<Date>().is_ok());
        assert!("2000-02-29".parse::<Date>().is_ok());
        for bad in [
            "2014-02-29",
            "1900-02-29",
            "2014-13-01",
            "2014-00-10",
            "2014-04-31",
            "0000-01-01",
            "2014-2-20",
            "2014/02/20",
            "２014-02-20",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad:?} should be rejected");
        }
        assert!("2014-02-20".parse::<Date>().unwrap() < "2014-10-01".parse::<Date>().unwrap());
    }

    #[test]
    fn release_ids_order_as_versions_and_stay_distinct() {
        let id = |s: &str| ReleaseId::new(s).unwrap();
        assert!(id("2014.02.0") < id("2014.10.0"));
        assert!(id("2013.09.0") < id("2014.02.0"));
        assert!(id("2014.02.0") != id("2014.2.0"));
        assert_ne!(id("2014.02.0").cmp(&id("2014.2.0")), Ordering::Equal);
        for bad in ["", ".2014", "2014 02", "2014/02", "ü"] {
            assert!(ReleaseId::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn names_reject_controls_and_padding() {
        assert!(ModelName::new("ProLiant DL380p Gen8").is_ok());
        for bad in ["", " DL380", "DL380 ", "DL\u{0}380", "DL\t380"] {
            assert!(ModelName::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn kinds_parse_only_the_three_words() {
        assert_eq!("driver".parse::<Kind>().unwrap(), Kind::Driver);
        assert!(matches!("Firmware".parse::<Kind>(), Err(Error::UnknownKind { kind }) if kind == "Firmware"));
        assert!(serde_json::from_str::<Kind>("\"bios\"").is_err());
        assert_eq!(serde_json::to_string(&Kind::Software).unwrap(), "\"software\"");
    }

    #[test]
    fn sha256_accepts_only_lowercase_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(hex.parse::<Sha256>().unwrap().to_hex(), hex);
        assert!(hex.to_uppercase().parse::<Sha256>().is_err());
        assert!(hex[..62].parse::<Sha256>().is_err());
    }
}
