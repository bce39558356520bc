//! The mirror's own records in the data dir's index ([`CF_STATE`]): the upstream ETag of the
//! trusted `timestamp.json` (written in the switch, with the metadata it belongs to) and the
//! [`SyncStatus`] that `fwrepo mirror status`, `/metrics` and `/readyz` read.

use fwrepo_db::{Db, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::Result;

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
