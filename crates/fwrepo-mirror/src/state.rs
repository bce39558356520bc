//! The mirror's own records in the data dir's index ([`CF_STATE`]): the upstream ETag of the
//! trusted `timestamp.json` (written in the switch, with the metadata it belongs to) and the
//! [`SyncStatus`] that `fwrepo mirror status`, `/metrics` and `/readyz` read; and beside the
//! index, the partner's current token ([`TOKEN_FILE`]).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fwrepo_db::{Db, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};

/// Column family of the mirror's records.
pub const CF_STATE: &str = "mirror.state";
/// The column families of this crate.
pub const COLUMN_FAMILIES: &[&str] = &[CF_STATE];
/// Format marker of every value this crate writes.
pub const FORMAT: u8 = 1;

const KEY_ETAG: &[u8] = b"etag.timestamp";
const KEY_STATUS: &[u8] = b"status";

/// What the last syncs did; times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStatus {
    /// Upstream base URL at the last attempt.
    pub upstream: String,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Failed syncs since the last success.
    pub consecutive_failures: u64,
    /// The reason the last failed sync gave, cleared by a success.
    pub last_error: Option<String>,
    /// Versions of the metadata served now (the last switch).
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub targets_version: u64,
    /// Expiry of the served `timestamp.json` (Unix seconds).
    pub timestamp_expires: Option<i64>,
    /// The models mirrored at the last success (`*` for all): `--models` narrowed to what the
    /// partner's token covers.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Targets in scope that the served metadata lists, and the blobs the mirror holds.
    pub targets_in_scope: u64,
    /// Targets of the upstream's newer metadata still to be completed (when a sync failed
    /// after the refresh).
    pub pending: Vec<String>,
    /// Totals over every sync.
    pub wire_bytes_total: u64,
    pub chunk_bytes_total: u64,
    pub chunks_total: u64,
}

pub(crate) fn etag(db: &Db) -> Result<Option<String>> {
    let cf = db.require_cf(CF_STATE)?;
    match db.get(cf, KEY_ETAG)? {
        None => Ok(None),
        Some(v) => Ok(Some(String::from_utf8_lossy(fwrepo_db::decode(CF_STATE, FORMAT, &v)?).into_owned())),
    }
}

pub(crate) fn stage_etag(db: &Db, etag: Option<&str>, batch: &mut WriteBatch) -> Result<()> {
    let cf = db.require_cf(CF_STATE)?;
    match etag {
        Some(e) => batch.put_cf(cf, KEY_ETAG, fwrepo_db::encode(FORMAT, e.as_bytes())),
        None => batch.delete_cf(cf, KEY_ETAG),
    }
    Ok(())
}

/// The stored status; the default before the first sync. `None` when the data dir's index
/// has no mirror records at all (not a mirror).
pub fn read_status(db: &Db) -> Result<Option<SyncStatus>> {
    let Some(cf) = db.cf(CF_STATE) else { return Ok(None) };
    match db.get(cf, KEY_STATUS)? {
        None => Ok(Some(SyncStatus::default())),
        Some(v) => {
            let bytes = fwrepo_db::decode(CF_STATE, FORMAT, &v)?;
            Ok(Some(serde_json::from_slice(bytes).unwrap_or_default()))
        }
    }
}

pub(crate) fn stage_status(db: &Db, status: &SyncStatus, batch: &mut WriteBatch) -> Result<()> {
    let cf = db.require_cf(CF_STATE)?;
    let json = serde_json::to_vec(status).expect("the status serializes");
    batch.put_cf(cf, KEY_STATUS, fwrepo_db::encode(FORMAT, &json));
    Ok(())
}

/// File of the partner's current `mirror` token in the data dir (mode 0600): kept between
/// syncs so an unchanged upstream costs no token exchange.
pub const TOKEN_FILE: &str = "mirror-token.json";

/// A token is reused only while it has more than this many seconds to live, or a quarter of
/// its lifetime if that is longer: a sync started with it should not see it expire.
pub const TOKEN_MIN_LEFT_S: i64 = 300;

/// A `mirror` token as the token service issued it, with what it was issued for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredToken {
    /// The token service that issued it (`token_url`, no trailing `/`).
    pub token_url: String,
    /// BLAKE3 of the partner credential it was exchanged for (hex): a new credential gets a
    /// new token.
    pub credential_blake3: String,
    pub token: String,
    /// The models it covers (`*` for all).
    pub models: Vec<String>,
    /// When it was received and when it expires, Unix seconds of this host's clock.
    pub received_at: i64,
    pub expires_at: i64,
}

impl StoredToken {
    /// Whether this token was issued by `token_url` for `credential`.
    pub fn issued_for(&self, token_url: &str, credential: &str) -> bool {
        self.token_url == token_url.trim_end_matches('/') && self.credential_blake3 == credential_digest(credential)
    }

    /// Whether it has comfortably long to live at `now`: more than [`TOKEN_MIN_LEFT_S`] and
    /// more than a quarter of its lifetime.
    pub fn fresh_at(&self, now: i64) -> bool {
        let lifetime = self.expires_at - self.received_at;
        lifetime > 0 && now >= self.received_at && self.expires_at - now > (lifetime / 4).max(TOKEN_MIN_LEFT_S)
    }
}

pub(crate) fn credential_digest(credential: &str) -> String {
    fwrepo_store::Digest::of(credential.as_bytes()).to_hex()
}

/// The stored token, if there is a readable one that only its owner may access; anything
/// else (no file, other modes, a record that does not parse) is no token.
pub(crate) fn read_token(dir: &Path) -> Option<StoredToken> {
    let path = dir.join(TOKEN_FILE);
    let meta = std::fs::metadata(&path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "ignoring a token file that group or others may access");
        return None;
    }
    serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
}

/// Stores `token` (mode 0600, atomically: temporary file, fsync, rename, fsync the dir).
pub(crate) fn write_token(dir: &Path, token: &StoredToken) -> Result<()> {
    let json = serde_json::to_vec(token).expect("the token record serializes");
    crate::config::write_private(&dir.join(TOKEN_FILE), &json)
}

/// Forgets the stored token (one the upstream refused).
pub(crate) fn remove_token(dir: &Path) -> Result<()> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&path),
        _ => Ok(()),
    }
}
