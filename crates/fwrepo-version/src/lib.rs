//! fwrepo-version: `Version`, a component version or release id that compares as a version,
//! not as a string.
//!
//! The catalog's update plans and a client's own plan must order versions the same way on
//! every input, so both take the rule from this crate, which depends on nothing but serde;
//! [`plan`] is the one computation of a plan from a release's components and an inventory.
//!
//! # Ordering rule
//!
//! A version is split into segments: maximal runs of ASCII digits (numeric segments) and
//! maximal runs of ASCII letters (alphabetic segments). Every other character (`.`, `-`, `_`,
//! space, parentheses, `/`, …) only separates segments and is otherwise ignored, so
//! `2.10 (A)`, `2.10-a` and `2.10a` are the same version. Segment lists are then compared
//! left to right:
//!
//! - two numeric segments compare by value (`9 < 10 < 100`; leading zeros do not count, so
//!   `1.01` equals `1.1`);
//! - two alphabetic segments compare as ASCII text ignoring case (`a < b`, `A` equals `a`);
//! - a numeric segment is newer than an alphabetic one at the same position (`1.0.1 > 1.0a`),
//!   as in RPM;
//! - when one list is a prefix of the other, the longer is newer (`2.10 < 2.10a`,
//!   `1.0 < 1.0.0`).
//!
//! Equality is this order's equality (`1.01 == 1.1`, `2.10A == 2.10a`), so `Eq`, `Ord` and
//! `Hash` agree and a `BTreeMap` or `HashMap` keyed by versions behaves. The original spelling
//! is kept for display and serialization.
//!
//! There is no pre-release marker (such as RPM's `~`): SPP component versions do not use one,
//! and a rule nobody relies on is a rule somebody gets wrong.

pub mod plan;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Why a string is not a version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid version {value:?}: {reason}")]
    Invalid { value: String, reason: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest accepted version string, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// A validated version string. Its segments are read on the fly when comparing, which
/// allocates nothing and keeps the type (and errors that carry ids) small.
#[derive(Clone)]
pub struct Version {
    raw: String,
}

/// One comparable piece of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment<'a> {
    /// Digits with leading zeros removed (empty for zero), so that comparing by length and
    /// then by text compares by value, whatever the number of digits.
    Number(&'a str),
    /// ASCII letters, compared ignoring case.
    Word(&'a str),
}

impl Ord for Segment<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Segment::Number(a), Segment::Number(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Segment::Word(a), Segment::Word(b)) => {
                a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
            }
            (Segment::Number(_), Segment::Word(_)) => Ordering::Greater,
            (Segment::Word(_), Segment::Number(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for Segment<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Version {
    /// Checks `s`.
    ///
    /// Accepted: 1 to [`MAX_VERSION_LEN`] bytes of printable ASCII (space included), no
    /// leading or trailing space, at least one letter or digit. Versions come from manifests
    /// and from clients' inventories; one narrow alphabet keeps them comparable and printable.
    pub fn new(s: impl Into<String>) -> Result<Version> {
        let raw = s.into();
        let reason = if raw.is_empty() {
            Some("empty")
        } else if raw.len() > MAX_VERSION_LEN {
            Some("longer than 128 bytes")
        } else if !raw.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            Some("not printable ASCII")
        } else if raw.starts_with(' ') || raw.ends_with(' ') {
            Some("leading or trailing space")
        } else if !raw.bytes().any(|b| b.is_ascii_alphanumeric()) {
            Some("no letter or digit")
        } else {
            None
        };
        match reason {
            // Cap what is echoed back: versions come from manifests and from HTTP requests.
            Some(reason) => Err(Error::Invalid { value: raw.chars().take(80).collect(), reason }),
            None => Ok(Version { raw }),
        }
    }

    /// The version as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// The segments of `s`, left to right.
fn segments(s: &str) -> impl Iterator<Item = Segment<'_>> {
    let bytes = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == bytes.len() {
            return None;
        }
        let start = i;
        let digits = bytes[i].is_ascii_digit();
        while i < bytes.len() && (if digits { bytes[i].is_ascii_digit() } else { bytes[i].is_ascii_alphabetic() }) {
            i += 1;
        }
        // Indices fall on ASCII bytes, so these slices are on character boundaries.
        Some(if digits { Segment::Number(s[start..i].trim_start_matches('0')) } else { Segment::Word(&s[start..i]) })
    })
}

/// Compares two strings by the rule in the module docs, without validating them (the
/// catalog orders release ids with it).
pub fn compare(a: &str, b: &str) -> Ordering {
    segments(a).cmp(segments(b))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.raw, &other.raw)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    // Hashes what equality looks at, not the spelling: `1.01` and `1.1` are equal.
    fn hash<H: Hasher>(&self, state: &mut H) {
        for segment in segments(&self.raw) {
            match segment {
                Segment::Number(n) => {
                    state.write_u8(0);
                    state.write(n.as_bytes());
                }
                Segment::Word(w) => {
                    state.write_u8(1);
                    w.bytes().for_each(|c| state.write_u8(c.to_ascii_lowercase()));
                }
            }
            // Ends each segment, so `1a` + `b` and `1` + `ab` cannot feed the same bytes.
            state.write_u8(2);
        }
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Version> {
        Version::new(s)
    }
}

impl TryFrom<String> for Version {
    type Error = Error;

    fn try_from(s: String) -> Result<Version> {
        Version::new(s)
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.raw
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", self.raw)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Version::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_only_delimit() {
        let got: Vec<Segment<'_>> = segments("2.10 (A)").collect();
        assert_eq!(got, [Segment::Number("2"), Segment::Number("10"), Segment::Word("A")]);
        assert_eq!(Version::new("2.10 (A)").unwrap(), Version::new("2.10a").unwrap());
    }

    #[test]
    fn zero_is_the_empty_number() {
        let got: Vec<Segment<'_>> = segments("-0.00x").collect();
        assert_eq!(got, [Segment::Number(""), Segment::Number(""), Segment::Word("x")]);
    }
}

/// What a plan does about one component: the one rule the server's `POST /v1/catalog/plan` and
/// `fwget plan` share, so the two can never disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not installed: download and install.
    Install,
    /// Installed at an older version: download and install.
    Upgrade,
    /// Installed at the release's version: nothing to do.
    UpToDate,
    /// Installed at a newer version than the release's: nothing to do, and worth reporting,
    /// since installing this release's version would be a downgrade.
    InstalledNewer,
}

impl Action {
    /// The action for a component the release offers at `offered`, installed at `installed`.
    pub fn decide(installed: Option<&Version>, offered: &Version) -> Action {
        match installed {
            None => Action::Install,
            Some(installed) => match offered.cmp(installed) {
                Ordering::Greater => Action::Upgrade,
                Ordering::Equal => Action::UpToDate,
                Ordering::Less => Action::InstalledNewer,
            },
        }
    }

    /// Whether the component has to be downloaded.
    pub fn downloads(self) -> bool {
        matches!(self, Action::Install | Action::Upgrade)
    }
}
