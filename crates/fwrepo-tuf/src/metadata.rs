//! TUF 1.0 metadata types (root, targets with delegations, snapshot, timestamp) and the
//! `Signed<T>` envelope that keeps the bytes it was parsed from.
//!
//! Every struct keeps the members it does not know in `extra`, and `Signed<T>` keeps the
//! `signed` object exactly as received: signatures are checked over the canonical form of the
//! received object, never over a re-serialization of the typed struct, so a field this crate
//! does not model cannot break (or be smuggled past) a signature.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::cjson;
use crate::error::{Error, Result};
use crate::keys::{PublicKey, Signature, SigningKey};
use crate::names::{KeyId, RoleName, Sha256, TargetPath};

/// The `spec_version` this crate writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// Most signatures accepted on one file; past it the file is refused before any signature is
/// checked, so a hostile file cannot make the client spend unbounded time verifying.
pub const MAX_SIGNATURES: usize = 1024;

/// `expires` is written as `YYYY-MM-DDTHH:MM:SSZ`, the one form python-tuf parses.
pub mod expiry {
    use super::*;

    const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

    /// Serializes a time in the TUF form.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&t.format(FORMAT).to_string())
    }

    /// Parses a time in the TUF form.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDateTime::parse_from_str(&s, FORMAT)
            .map(|n| n.and_utc())
            .map_err(|e| serde::de::Error::custom(format!("expires {s:?}: {e}")))
    }
}

/// What the four metadata kinds share.
pub trait Metadata: Serialize + DeserializeOwned + Clone {
    /// The `_type` value.
    const TYPE: &'static str;
    /// `version`.
    fn version(&self) -> u64;
    /// `expires`.
    fn expires(&self) -> DateTime<Utc>;
    /// `_type` as found.
    fn type_field(&self) -> &str;
    /// `spec_version` as found.
    fn spec_version(&self) -> &str;
    /// Checks beyond what the types enforce.
    fn check(&self, _role: &str) -> Result<()> {
        Ok(())
    }
}

macro_rules! common_metadata {
    ($t:ty, $name:literal) => {
        impl Metadata for $t {
            const TYPE: &'static str = $name;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> DateTime<Utc> {
                self.expires
            }
            fn type_field(&self) -> &str {
                &self.type_
            }
            fn spec_version(&self) -> &str {
                &self.spec_version
            }
            fn check(&self, role: &str) -> Result<()> {
                self.check_extra(role)
            }
        }
    };
}

/// The keys and threshold of one top-level role, as listed in root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Ids of the keys that may sign for the role.
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The root role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// Always `root`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version the file follows.
    pub spec_version: String,
    /// Whether snapshot, targets and target files use version/hash-prefixed names.
    pub consistent_snapshot: bool,
    /// Version, starting at 1, incremented by exactly 1 per new root.
    pub version: u64,
    /// Expiry time.
    #[serde(with = "expiry")]
    pub expires: DateTime<Utc>,
    /// Every key any top-level role uses.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// `root`, `timestamp`, `snapshot`, `targets`.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Root {
    /// The keys and threshold of top-level `role`.
    pub fn role(&self, role: &RoleName) -> Result<&RoleKeys> {
        self.roles
            .get(role.as_str())
            .ok_or_else(|| Error::UnknownRole { role: role.clone(), delegator: RoleName::root() })
    }

    fn check_extra(&self, role: &str) -> Result<()> {
        for name in ["root", "timestamp", "snapshot", "targets"] {
            if !self.roles.contains_key(name) {
                return Err(Error::Malformed { role: role.into(), reason: format!("roles has no {name:?}") });
            }
        }
        Ok(())
    }
}
common_metadata!(Root, "root");

/// `meta` entry of snapshot and timestamp: what the referrer knows about a metadata file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// The file's version.
    pub version: u64,
    /// Its length in bytes, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Its hashes, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MetaFile {
    /// Describes `bytes` published as `version`, with length and sha256.
    pub fn describing(version: u64, bytes: &[u8]) -> Self {
        let hashes = BTreeMap::from([("sha256".to_owned(), Sha256::of(bytes).to_string())]);
        Self { version, length: Some(bytes.len() as u64), hashes: Some(hashes), extra: Map::new() }
    }

    /// Checks `bytes` against the recorded length and every recorded hash this crate knows
    /// (sha256, sha512). Recorded hashes of which it knows none are refused: an algorithm it
    /// cannot check must not pass as a match.
    pub(crate) fn check_bytes(&self, role: &RoleName, referrer: &RoleName, bytes: &[u8]) -> Result<()> {
        let mismatch = |what| Error::MetaMismatch { role: role.clone(), referrer: referrer.clone(), what };
        if self.length.is_some_and(|length| bytes.len() as u64 != length) {
            return Err(mismatch("length"));
        }
        if let Some(hashes) = &self.hashes {
            let known = known_hashes(hashes).map_err(|_| mismatch("hashes (no well-formed sha256 or sha512)"))?;
            for (alg, expected) in known {
                if alg.digest_hex(bytes) != expected {
                    return Err(mismatch(alg.name()));
                }
            }
        }
        Ok(())
    }
}

/// A hash algorithm this crate verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    /// Its name in `hashes`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Lowercase hex digest of `bytes`.
    pub(crate) fn digest_hex(self, bytes: &[u8]) -> String {
        use sha2::Digest as _;
        match self {
            Self::Sha256 => hex::encode(sha2::Sha256::digest(bytes)),
            Self::Sha512 => hex::encode(sha2::Sha512::digest(bytes)),
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// The entries of `hashes` this crate can check, sha256 first. Unknown algorithms are passed
/// over; a known one whose value is not lowercase hex of its length (it may become part of a
/// file name) fails the whole list, and so does a list with no known algorithm.
pub(crate) fn known_hashes(hashes: &BTreeMap<String, String>) -> std::result::Result<Vec<(HashAlg, &str)>, String> {
    let mut out = Vec::new();
    for alg in [HashAlg::Sha256, HashAlg::Sha512] {
        if let Some(v) = hashes.get(alg.name()) {
            let hex_ok =
                v.len() == alg.hex_len() && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(format!("{} is not {} lowercase hex digits", alg.name(), alg.hex_len()));
            }
            out.push((alg, v.as_str()));
        }
    }
    if out.is_empty() {
        return Err("no sha256 or sha512 in its hashes".into());
    }
    Ok(out)
}

/// The timestamp role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Always `timestamp`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version the file follows.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry time.
    #[serde(with = "expiry")]
    pub expires: DateTime<Utc>,
    /// Exactly one entry, `snapshot.json`.
    pub meta: BTreeMap<String, MetaFile>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Timestamp {
    /// The snapshot entry.
    pub fn snapshot_meta(&self) -> &MetaFile {
        // `check_extra` guarantees presence for parsed and built timestamps.
        &self.meta["snapshot.json"]
    }

    fn check_extra(&self, role: &str) -> Result<()> {
        if self.meta.len() != 1 || !self.meta.contains_key("snapshot.json") {
            return Err(Error::Malformed { role: role.into(), reason: "meta must hold exactly snapshot.json".into() });
        }
        Ok(())
    }
}
common_metadata!(Timestamp, "timestamp");

/// The snapshot role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always `snapshot`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version the file follows.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry time.
    #[serde(with = "expiry")]
    pub expires: DateTime<Utc>,
    /// `ROLE.json` → what is known of every targets role's file.
    pub meta: BTreeMap<String, MetaFile>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Snapshot {
    /// The entry for targets role `role`.
    pub fn role_meta(&self, role: &RoleName) -> Option<&MetaFile> {
        self.meta.get(&format!("{role}.json"))
    }

    fn check_extra(&self, role: &str) -> Result<()> {
        if !self.meta.contains_key("targets.json") {
            return Err(Error::Malformed { role: role.into(), reason: "meta has no targets.json".into() });
        }
        Ok(())
    }
}
common_metadata!(Snapshot, "snapshot");

/// fwrepo's own `custom` member of a target: the store ids and component facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwCustom {
    /// BLAKE3 id of the blob, hex.
    pub blake3: String,
    /// Id of the blob's chunk list, hex.
    pub chunk_index: String,
    /// SPP release id, e.g. `2014.02.0`.
    pub release: String,
    /// Component facts.
    pub component: Component,
    /// Release facts, signed so that a mirror or a client rebuilds the catalog from metadata
    /// alone. Absent in targets published before they were added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_info: Option<ReleaseInfo>,
    /// The chunker sizes the repository cuts blobs with, so a client cuts its seed files the
    /// same way and finds the chunks it already has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunker: Option<ChunkerSizes>,
}

/// Release facts carried in [`FwCustom`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Display name, e.g. `Service Pack for ProLiant 2014.02.0`.
    pub name: String,
    /// Release date, ISO 8601 (`2014-02-17`).
    pub date: String,
}

/// FastCDC sizes in bytes, as fixed at the repository's `init`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerSizes {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

/// Component facts carried in [`FwCustom`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// Display name, e.g. `iLO 4 Firmware`.
    pub name: String,
    /// `firmware`, `driver` or `software`.
    pub kind: String,
    /// Component version as the vendor spells it.
    pub version: String,
    /// Server models it applies to.
    pub models: Vec<String>,
}

/// One entry of `targets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Exact length in bytes.
    pub length: u64,
    /// Hashes of the content; this crate writes only `sha256` (every client knows it) and,
    /// when verifying, checks every listed `sha256` and `sha512` and needs at least one.
    pub hashes: BTreeMap<String, String>,
    /// Application data; fwrepo writes [`FwCustom`], others may write anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TargetFile {
    /// Describes content of `length` bytes with SHA-256 `sha256`.
    pub fn new(length: u64, sha256: Sha256, custom: Option<&FwCustom>) -> Self {
        Self {
            length,
            hashes: BTreeMap::from([("sha256".to_owned(), sha256.to_string())]),
            custom: custom.map(|c| serde_json::to_value(c).expect("FwCustom serializes")),
            extra: Map::new(),
        }
    }

    /// Describes `bytes`.
    pub fn describing(bytes: &[u8], custom: Option<&FwCustom>) -> Self {
        Self::new(bytes.len() as u64, Sha256::of(bytes), custom)
    }

    /// The sha256 hash, if present and well-formed.
    pub fn sha256(&self) -> Option<Sha256> {
        self.hashes.get("sha256").and_then(|h| Sha256::new(h).ok())
    }

    /// fwrepo's custom data: `None` when absent or of another shape.
    pub fn fw_custom(&self) -> Option<FwCustom> {
        self.custom.as_ref().and_then(|c| serde_json::from_value(c.clone()).ok())
    }
}

/// A role delegated by a targets role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// Role name.
    pub name: RoleName,
    /// Ids of its keys (in the delegator's `delegations.keys`).
    pub keyids: Vec<KeyId>,
    /// Signatures needed.
    pub threshold: u32,
    /// When true, a search that reaches this role stops here.
    #[serde(default)]
    pub terminating: bool,
    /// Unix filename patterns of the target paths it may sign, per `/` segment (see
    /// [`crate::pattern`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Hex prefixes of SHA-256(target path) it may sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DelegatedRole {
    /// Whether this role is trusted for `path`.
    pub fn matches(&self, path: &TargetPath) -> bool {
        if let Some(prefixes) = &self.path_hash_prefixes {
            let hash = path.path_hash();
            return prefixes.iter().any(|p| hash.starts_with(p.as_str()));
        }
        self.paths.as_ref().is_some_and(|ps| ps.iter().any(|p| crate::pattern::path_matches(p, path.as_str())))
    }
}

/// `delegations` of a targets role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    /// Keys of the delegated roles.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Delegated roles in priority order.
    pub roles: Vec<DelegatedRole>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The targets role (top-level or delegated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Always `targets`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// Spec version the file follows.
    pub spec_version: String,
    /// Version.
    pub version: u64,
    /// Expiry time.
    #[serde(with = "expiry")]
    pub expires: DateTime<Utc>,
    /// Target path → description.
    pub targets: BTreeMap<TargetPath, TargetFile>,
    /// Roles this one delegates to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    /// Members this crate does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Targets {
    /// An empty targets role.
    pub fn new(version: u64, expires: DateTime<Utc>) -> Self {
        Self {
            type_: "targets".into(),
            spec_version: SPEC_VERSION.into(),
            version,
            expires,
            targets: BTreeMap::new(),
            delegations: None,
            extra: Map::new(),
        }
    }

    fn check_extra(&self, role: &str) -> Result<()> {
        if let Some(d) = &self.delegations {
            let mut names = std::collections::BTreeSet::new();
            for r in &d.roles {
                // One entry per name (python-tuf refuses duplicates too): a delegation is then
                // identified by delegator and name alone.
                if !names.insert(&r.name) {
                    return Err(Error::Malformed {
                        role: role.into(),
                        reason: format!("delegates to {} more than once", r.name),
                    });
                }
                if r.name.is_top_level() {
                    return Err(Error::Malformed {
                        role: role.into(),
                        reason: format!("delegates to top-level name {}", r.name),
                    });
                }
                if r.paths.is_some() == r.path_hash_prefixes.is_some() {
                    return Err(Error::Malformed {
                        role: role.into(),
                        reason: format!("delegated role {} needs exactly one of paths and path_hash_prefixes", r.name),
                    });
                }
            }
        }
        Ok(())
    }
}
common_metadata!(Targets, "targets");

/// A metadata file: the `signed` object, its signatures, and the exact bytes it came from.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    /// The typed `signed` object.
    pub signed: T,
    /// Signatures as found.
    pub signatures: Vec<Signature>,
    /// Canonical JSON of `signed` as received: what the signatures cover.
    canonical: Vec<u8>,
    /// The file's bytes.
    bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct Envelope {
    signed: Value,
    signatures: Vec<Value>,
}

impl<T: Metadata> Signed<T> {
    /// Parses a file without checking any signature. `role` names the file in errors.
    pub fn from_bytes(role: &RoleName, bytes: &[u8]) -> Result<Self> {
        let malformed = |reason: String| Error::Malformed { role: role.to_string(), reason };
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        // Count before parsing each one, so a file with a million signatures costs nothing more.
        if env.signatures.len() > MAX_SIGNATURES {
            return Err(Error::TooManySignatures {
                role: role.clone(),
                count: env.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        let signatures = env
            .signatures
            .into_iter()
            .map(serde_json::from_value)
            .collect::<std::result::Result<Vec<Signature>, _>>()
            .map_err(|e| malformed(format!("signatures: {e}")))?;
        check_unique_keyids(role, &signatures)?;
        let typ = env.signed.get("_type").and_then(Value::as_str).unwrap_or_default().to_owned();
        if typ != T::TYPE {
            return Err(Error::WrongType { role: role.to_string(), expected: T::TYPE, found: typ });
        }
        let canonical = cjson::encode(&env.signed)?;
        let signed: T = serde_json::from_value(env.signed).map_err(|e| malformed(e.to_string()))?;
        let spec = signed.spec_version();
        if spec.split('.').next() != Some("1") {
            return Err(Error::UnsupportedSpecVersion { role: role.to_string(), found: spec.to_owned() });
        }
        signed.check(role.as_str())?;
        Ok(Self { signed, signatures, canonical, bytes: bytes.to_vec() })
    }

    /// Signs `signed` with each of `keys` and serializes the file.
    pub fn sign(signed: T, keys: &[&SigningKey]) -> Result<Self> {
        let canonical = cjson::to_canonical(&signed)?;
        let signatures = keys.iter().map(|k| k.sign(&canonical)).collect();
        Self::from_parts(signed, signatures)
    }

    /// Assembles a file from a `signed` object and signatures made elsewhere (for example by
    /// a hardware token over [`Signed::canonical`] of an unsigned draft).
    pub fn from_parts(signed: T, signatures: Vec<Signature>) -> Result<Self> {
        check_unique_keyids(&RoleName::new(T::TYPE)?, &signatures)?;
        let canonical = cjson::to_canonical(&signed)?;
        let value = serde_json::json!({ "signed": signed, "signatures": signatures });
        // Compact: every client downloads these bytes, and big targets files must stay under
        // the size caps. Signatures cover the canonical form, not these bytes.
        let mut bytes = serde_json::to_vec(&value).map_err(|e| Error::CanonicalJson { what: e.to_string() })?;
        bytes.push(b'\n');
        Ok(Self { signed, signatures, canonical, bytes })
    }

    /// The canonical bytes the signatures cover.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The file's bytes, exactly as parsed or as produced.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks that a threshold of distinct keys among `keyids` (looked up in `keys`) signed.
    pub fn verify(
        &self,
        role: &RoleName,
        keys: &BTreeMap<KeyId, PublicKey>,
        keyids: &[KeyId],
        threshold: u32,
    ) -> Result<()> {
        verify_threshold(role, &self.canonical, &self.signatures, keys, keyids, threshold)
    }

    /// Checks expiry against `now`.
    pub fn check_expiry(&self, role: &RoleName, now: DateTime<Utc>) -> Result<()> {
        let expires = self.signed.expires();
        if expires <= now {
            return Err(Error::Expired { role: role.clone(), expires, now });
        }
        Ok(())
    }
}

/// Refuses a signature list naming one key id twice: the spec requires them unique, and a
/// file that repeats one is malformed whatever else it carries.
fn check_unique_keyids(role: &RoleName, signatures: &[Signature]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for sig in signatures {
        if !seen.insert(sig.keyid) {
            return Err(Error::DuplicateSignature { role: role.clone(), key_id: sig.keyid });
        }
    }
    Ok(())
}

/// Counts valid signatures: only from `keyids`, and one per distinct key material (a role
/// listing one key under two ids still counts it once). A list naming a key id twice is
/// refused.
pub fn verify_threshold(
    role: &RoleName,
    msg: &[u8],
    signatures: &[Signature],
    keys: &BTreeMap<KeyId, PublicKey>,
    keyids: &[KeyId],
    threshold: u32,
) -> Result<()> {
    if threshold == 0 {
        return Err(Error::ZeroThreshold { role: role.clone() });
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(Error::TooManySignatures { role: role.clone(), count: signatures.len(), max: MAX_SIGNATURES });
    }
    check_unique_keyids(role, signatures)?;
    let mut counted_keys = std::collections::BTreeSet::new();
    for sig in signatures {
        if !keyids.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.get(&sig.keyid) else { continue };
        let Ok(raw) = hex::decode(&sig.sig) else { continue };
        if key.verify(msg, &raw) {
            counted_keys.insert(key.material());
        }
    }
    let valid = counted_keys.len();
    if valid < threshold as usize {
        return Err(Error::ThresholdNotMet { role: role.clone(), valid, threshold });
    }
    Ok(())
}
