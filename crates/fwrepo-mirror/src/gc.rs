//! Garbage collection on a mirror: blobs the served signed metadata no longer names leave the
//! store once they have been unreferenced for a grace period, so a client that started a
//! download of the old version before the switch can finish it.
//!
//! The live blobs are every target's `custom.blake3` in the metadata the mirror serves (the
//! last switch): firmware, and the `auth/*` documents tokens are checked against; a blob's
//! chunk index is derived from its record, so it lives and goes with the blob. The first time
//! a collection sees a stored blob unreferenced, it records that time (`retired.<id>` in
//! `mirror.state`); the blob is removed by the first collection at least the grace period
//! later, unless the served metadata names it again in between (then the record goes). Every
//! time is measured from a moment after the switch that dropped the blob, so the grace is
//! never shorter than asked. Blobs a failed sync assembled for metadata it never switched to
//! are unreferenced as well: they get the same grace, so a sync soon after still finds them.
//!
//! Removal is the store's own collection ([`fwrepo_store::Store::gc`]) with the live and
//! in-grace blobs as roots: it keeps every chunk a kept blob uses, drops blob records before
//! chunks, moves live chunks before the index stops pointing at the old packs, and never
//! reuses a pack id, so a crash at any step leaves every kept blob complete. Chunks that no
//! blob uses (those of a sync that was interrupted before it assembled their blob) are dropped
//! too; the next sync fetches them again.
//!
//! A collection and a sync are never interleaved: across processes the data dir's writer lock
//! keeps them apart, and within one [`Mirror`] the busy flag does.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fwrepo_db::{Direction, IteratorMode, WriteBatch};
use fwrepo_store::Digest;
use serde::Serialize;

use crate::Mirror;
use crate::error::{Error, Result};
use crate::state::{CF_STATE, FORMAT};

/// Key prefix of the time a blob was first seen unreferenced.
const RETIRED: &[u8] = b"retired.";
/// Key of the time the last collection finished.
const LAST_GC: &[u8] = b"gc.last";

/// How to collect.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// How long a blob stays after a collection first saw it unreferenced.
    pub grace: Duration,
    /// Report what would be removed; change nothing.
    pub dry_run: bool,
}

/// What a collection did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Stored blobs the served metadata names.
    pub blobs_live: u64,
    /// Unreferenced blobs kept until their grace period ends.
    pub blobs_in_grace: u64,
    /// Unreferenced blobs whose grace period is over: removed (or to be removed).
    pub blobs_expired: u64,
    /// Logical bytes of those blobs.
    pub bytes_expired: u64,
    /// The ids of those blobs.
    pub expired: Vec<String>,
    /// Unix time at which the next in-grace blob expires.
    pub next_expiry: Option<i64>,
    /// What the store's collection did (none in a dry run).
    pub store: Option<fwrepo_store::GcReport>,
}

fn retired_key(blob: &Digest) -> Vec<u8> {
    let mut k = RETIRED.to_vec();
    k.extend_from_slice(blob.as_bytes());
    k
}

impl Mirror {
    /// Collects with the wall clock.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        self.gc_at(opts, crate::now())
    }

    /// Collects as if the time were `now` (Unix seconds are what is recorded).
    pub fn gc_at(&self, opts: &GcOptions, now: chrono::DateTime<chrono::Utc>) -> Result<GcReport> {
        let _busy = self.busy("gc")?;
        let now = now.timestamp();
        let grace = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
        let store = self.store();
        let db = store.db();
        let repo = fwrepo_repo::Repo::over(store.clone());
        let live = if repo.has_metadata()? { repo.live_blobs()? } else { HashSet::new() };
        let stored: HashSet<Digest> = store.list_blobs()?.into_iter().collect();
        let retired = self.retired()?;

        let mut report = GcReport { dry_run: opts.dry_run, ..GcReport::default() };
        let mut records = WriteBatch::default();
        let cf = db.require_cf(CF_STATE)?;
        for blob in retired.keys() {
            if live.contains(blob) || !stored.contains(blob) {
                records.delete_cf(cf, retired_key(blob));
            }
        }
        let mut expired = Vec::new();
        let mut roots = HashSet::new();
        for blob in &stored {
            if live.contains(blob) {
                report.blobs_live += 1;
                roots.insert(*blob);
                continue;
            }
            let since = match retired.get(blob) {
                Some(&t) => t,
                None => {
                    records.put_cf(cf, retired_key(blob), fwrepo_db::encode(FORMAT, &now.to_be_bytes()));
                    now
                }
            };
            let until = since.saturating_add(grace);
            if now >= until {
                expired.push(*blob);
            } else {
                report.blobs_in_grace += 1;
                report.next_expiry = Some(report.next_expiry.map_or(until, |e: i64| e.min(until)));
                roots.insert(*blob);
            }
        }
        expired.sort();
        report.blobs_expired = expired.len() as u64;
        for blob in &expired {
            report.bytes_expired += store.blob_info(blob)?.len;
        }
        report.expired = expired.iter().map(Digest::to_hex).collect();
        if opts.dry_run {
            return Ok(report);
        }
        // The first sightings are durable before anything is removed, so an interrupted
        // collection never restarts a grace period it already counted.
        db.write(records, true)?;
        report.store = Some(store.gc(&fwrepo_store::GcOptions { roots: Some(roots), ..Default::default() })?);
        let mut done = WriteBatch::default();
        for blob in &expired {
            done.delete_cf(cf, retired_key(blob));
        }
        done.put_cf(cf, LAST_GC, fwrepo_db::encode(FORMAT, &now.to_be_bytes()));
        db.write(done, true)?;
        Ok(report)
    }

    /// When the last collection finished (Unix seconds); `None` before the first.
    pub fn last_gc(&self) -> Result<Option<i64>> {
        let db = self.store().db();
        let Some(v) = db.get(db.require_cf(CF_STATE)?, LAST_GC)? else { return Ok(None) };
        let t: [u8; 8] = fwrepo_db::decode(CF_STATE, FORMAT, &v)?.try_into().map_err(|_| Error::Corrupt {
            what: format!("{CF_STATE} record"),
            reason: "gc time is not 8 bytes".into(),
        })?;
        Ok(Some(i64::from_be_bytes(t)))
    }

    /// Blob → Unix time a collection first saw it unreferenced.
    fn retired(&self) -> Result<HashMap<Digest, i64>> {
        let db = self.store().db();
        let cf = db.require_cf(CF_STATE)?;
        let mut out = HashMap::new();
        for item in db.rocks().iterator_cf(cf, IteratorMode::From(RETIRED, Direction::Forward)) {
            let (k, v) = item.map_err(|e| db.err(e))?;
            let Some(id) = k.strip_prefix(RETIRED) else { break };
            let corrupt = |reason: &str| Error::Corrupt { what: format!("{CF_STATE} record"), reason: reason.into() };
            let blob = Digest::from_slice(id).ok_or_else(|| corrupt("retired blob key"))?;
            let t: [u8; 8] = fwrepo_db::decode(CF_STATE, FORMAT, &v)?
                .try_into()
                .map_err(|_| corrupt("retired time is not 8 bytes"))?;
            out.insert(blob, i64::from_be_bytes(t));
        }
        Ok(out)
    }
}
