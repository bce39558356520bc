//! Validated newtypes for the identifiers that arrive from untrusted metadata: target paths,
//! role names, key ids and SHA-256 digests. Each is checked once when built or parsed, so
//! holding one is proof the check passed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256 as Sha256Hasher};
use unicode_normalization::is_nfc;

use crate::error::{Error, Result};

/// Longest accepted target path, in bytes; keeps hostile metadata from making the client
/// build huge file names.
pub const MAX_NAME_LEN: usize = 1024;

/// Character rules of target paths.
fn check_chars(s: &str) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_NAME_LEN {
        return Err("longer than 1024 bytes");
    }
    if s.contains('\0') {
        return Err("contains NUL");
    }
    if s.contains('"') {
        return Err("contains a double quote");
    }
    if s.contains('\\') {
        return Err("contains a backslash");
    }
    // Newlines and other controls in file names break logs and shell tools on every mirror.
    if s.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    // One spelling per name: two Unicode forms of one name would be two targets on disk that
    // display the same.
    if !is_nfc(s) {
        return Err("not in Unicode NFC form");
    }
    Ok(())
}

/// A target path: relative, `/`-separated, NFC, no empty, `.` or `..` segments, no NUL,
/// controls, `"` or `\`. Safe to join under a download directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPath(String);

impl TargetPath {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        let bad = |reason| Err(Error::InvalidTargetPath { path: s.clone(), reason });
        if let Err(reason) = check_chars(&s) {
            return bad(reason);
        }
        if s.starts_with('/') {
            return bad("absolute");
        }
        for seg in s.split('/') {
            match seg {
                "" => return bad("empty segment"),
                "." => return bad("`.` segment"),
                ".." => return bad("`..` segment"),
                _ => {}
            }
        }
        Ok(Self(s))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Directory part (without trailing `/`), empty for a top-level file.
    pub fn dir(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(d, _)| d)
    }

    /// Last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(&self.0, |(_, f)| f)
    }

    /// Hex SHA-256 of the path, which `path_hash_prefixes` delegations match against.
    pub fn path_hash(&self) -> String {
        hex::encode(Sha256Hasher::digest(self.0.as_bytes()))
    }
}

/// A role name: any non-empty Unicode string. Metadata treats it as opaque; what must be safe
/// is how it becomes a file name or URL, and [`RoleName::encoded`] is the only way it does.
/// (Strings that are not valid Unicode never get this far: the JSON parser refuses them.)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() {
            return Err(Error::InvalidRoleName { name: s, reason: "empty" });
        }
        Ok(Self(s))
    }

    /// The name percent-encoded for file names and URLs, exactly as python-tuf's client does
    /// it (`urllib.parse.quote(name, "")`): every UTF-8 byte except ASCII letters, digits and
    /// `_.-~` becomes `%XX`. The result holds no `/`, `\`, `?`, `#` or control character, and
    /// distinct names stay distinct.
    pub fn encoded(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// `root`.
    pub fn root() -> Self {
        Self("root".into())
    }
    /// `timestamp`.
    pub fn timestamp() -> Self {
        Self("timestamp".into())
    }
    /// `snapshot`.
    pub fn snapshot() -> Self {
        Self("snapshot".into())
    }
    /// `targets`.
    pub fn targets() -> Self {
        Self("targets".into())
    }

    /// True for the four names the root defines, which no delegation may reuse.
    pub fn is_top_level(&self) -> bool {
        matches!(self.0.as_str(), "root" | "timestamp" | "snapshot" | "targets")
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_newtype_impls!(TargetPath);
string_newtype_impls!(RoleName);

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    // Lowercase only, so one digest has exactly one spelling and map keys cannot alias.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

macro_rules! hex32_newtype {
    ($(#[$doc:meta])* $t:ident, $err:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $t([u8; 32]);

        impl $t {
            /// Parses 64 lowercase hex digits.
            pub fn new(s: &str) -> Result<Self> {
                parse_hex32(s).map(Self).ok_or_else(|| Error::$err { input: s.chars().take(80).collect() })
            }
            /// Wraps raw bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self)
            }
        }
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32_newtype!(
    /// A key id: the SHA-256 of the key object's canonical JSON, in lowercase hex.
    KeyId,
    InvalidKeyId
);
hex32_newtype!(
    /// A SHA-256 digest, in lowercase hex on the wire.
    Sha256,
    InvalidDigest
);

impl Sha256 {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256Hasher::digest(bytes).into())
    }
}
