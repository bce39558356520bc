//! Entitlement records and revocations in RocksDB column families of the data dir's shared
//! index.
//!
//! Keys are the record ids' bytes; values are [`fwrepo_db::encode`]d with format 1 around the
//! record's JSON form (the same fields as the import files). A read-only instance opened
//! before the writer created these column families sees no records.
//!
//! # Subject revocations have two causes
//!
//! A subject (`serial:…`, `agreement:…`, `partner:…`) is revoked while either cause holds:
//!
//! * **manual** — `token revoke --subject` ([`Entitlements::revoke_subject`]). It stands until
//!   `token unrevoke --subject` ([`Entitlements::lift_subject`]); no import and no status change
//!   ever lifts it.
//! * **status** — a partner or agreement whose status is `suspended` or `revoked` (by
//!   [`Entitlements::set_partner_status`] or by an import). Tokens already issued stop verifying
//!   once the revocation list is published; a status change back to `active` removes this
//!   cause, and only this one.
//!
//! Both live in one entry of [`CF_REVOKED_SUBJECTS`] (format 2: revocation time, then a byte of
//! cause flags). Entries of format 1 (time only, written before causes were kept) are read as
//! manual: an import can then never lift them, which fails closed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use fwrepo_db::{Db, IteratorMode, WriteBatch};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::ids::{AgreementId, Jti, PartnerId, Serial, Subject};
use crate::import::{self, RecordSet};
use crate::records::{Agreement, CredentialHash, Partner, RecordKind, SerialRecord, Status};
use crate::revocation::Revocations;
use crate::time::UnixTime;

/// Serial number → [`SerialRecord`].
pub const CF_SERIALS: &str = "entitle.serials";
/// Agreement id → [`Agreement`].
pub const CF_AGREEMENTS: &str = "entitle.agreements";
/// Partner id → [`Partner`].
pub const CF_PARTNERS: &str = "entitle.partners";
/// SHA-256 of a partner credential (32 bytes) → partner id.
pub const CF_CREDENTIALS: &str = "entitle.partner_credentials";
/// Revoked `jti` → revocation time (i64 big-endian).
pub const CF_REVOKED_TOKENS: &str = "entitle.revoked_tokens";
/// Revoked subject (`serial:…`, …) → revocation time (i64 big-endian) and cause flags.
pub const CF_REVOKED_SUBJECTS: &str = "entitle.revoked_subjects";

/// The column families this crate uses; pass them to [`Db::open`].
pub const COLUMN_FAMILIES: &[&str] =
    &[CF_SERIALS, CF_AGREEMENTS, CF_PARTNERS, CF_CREDENTIALS, CF_REVOKED_TOKENS, CF_REVOKED_SUBJECTS];

/// A raw RocksDB entry.
type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Format marker of every value written here, except subject revocations.
const FORMAT: u8 = 1;
/// Format marker of subject revocations: time (i64 big-endian), then one byte of [`Causes`].
const SUBJECT_FORMAT: u8 = 2;

/// Why a subject is revoked; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Causes {
    /// Revoked by an operator (`token revoke --subject`); only `token unrevoke` lifts it.
    pub manual: bool,
    /// Revoked because its record's status is not `active`; a change to `active` lifts it.
    pub status: bool,
}

impl Causes {
    const MANUAL: u8 = 1;
    const STATUS: u8 = 2;

    fn to_byte(self) -> u8 {
        (if self.manual { Causes::MANUAL } else { 0 }) | (if self.status { Causes::STATUS } else { 0 })
    }

    fn from_byte(b: u8) -> Option<Causes> {
        if b == 0 || b & !(Causes::MANUAL | Causes::STATUS) != 0 {
            return None;
        }
        Some(Causes { manual: b & Causes::MANUAL != 0, status: b & Causes::STATUS != 0 })
    }

    fn any(self) -> bool {
        self.manual || self.status
    }
}

/// A subject's revocation: since when, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectRevocation {
    pub since: UnixTime,
    pub causes: Causes,
}

/// What [`Entitlements::lift_subject`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifted {
    /// The manual revocation is gone and nothing else revokes the subject.
    Lifted,
    /// The manual revocation is gone, but the subject's record status still revokes it.
    StillRevokedByStatus,
    /// There was no manual revocation to lift (the status may still revoke the subject).
    NotManuallyRevoked,
}

/// What an import changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// The entitlement records and revocations of a data dir.
#[derive(Clone)]
pub struct Entitlements {
    db: Arc<Db>,
}

impl Entitlements {
    /// Records in `db`, which was opened with (at least) [`COLUMN_FAMILIES`].
    pub fn new(db: Arc<Db>) -> Entitlements {
        Entitlements { db }
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Parses an import file (CSV or JSON, see [`crate::import`]) named `file` in errors, and
    /// applies it in one write: a bad row leaves the database as it was.
    pub fn import(&self, file: &str, bytes: &[u8], now: UnixTime) -> Result<ImportSummary> {
        let set = import::parse(file, bytes)?;
        self.apply(&set, now)
    }

    /// Creates or updates every record of `set` in one atomic, durable write.
    pub fn apply(&self, set: &RecordSet, now: UnixTime) -> Result<ImportSummary> {
        let mut batch = WriteBatch::default();
        let mut summary = ImportSummary::default();
        let mut count = |old: Option<bool>| match old {
            None => summary.created += 1,
            Some(true) => summary.unchanged += 1,
            Some(false) => summary.updated += 1,
        };

        let cf = self.db.require_cf(CF_SERIALS)?;
        for rec in &set.serials {
            let old: Option<SerialRecord> = self.get(CF_SERIALS, rec.serial.as_str())?;
            count(old.map(|o| o == *rec));
            batch.put_cf(cf, rec.serial.as_str(), value(rec));
        }

        let cf = self.db.require_cf(CF_AGREEMENTS)?;
        for rec in &set.agreements {
            let old: Option<Agreement> = self.get(CF_AGREEMENTS, rec.id.as_str())?;
            let old_status = old.as_ref().map(|o| o.status);
            count(old.map(|o| o == *rec));
            batch.put_cf(cf, rec.id.as_str(), value(rec));
            self.follow_status(&mut batch, &Subject::Agreement(rec.id.clone()), old_status, rec.status, now)?;
        }

        // Credential index: a credential belongs to one partner. Collect this file's claims on
        // credentials first, then delete stale index entries before adding new ones, so a
        // credential moving between two partners of the same file ends up with the right one.
        let mut wanted: HashMap<CredentialHash, &PartnerId> = HashMap::new();
        let in_file: HashSet<&PartnerId> = set.partners.iter().map(|p| &p.id).collect();
        for rec in &set.partners {
            if let Some(h) = rec.credential_sha256
                && wanted.insert(h, &rec.id).is_some()
            {
                return Err(Error::invalid("credential_sha256", rec.id.as_str(), CREDENTIAL_TAKEN));
            }
        }
        let cred_cf = self.db.require_cf(CF_CREDENTIALS)?;
        let cf = self.db.require_cf(CF_PARTNERS)?;
        let mut puts = Vec::new();
        for rec in &set.partners {
            let old: Option<Partner> = self.get(CF_PARTNERS, rec.id.as_str())?;
            if let Some(old_hash) = old.as_ref().and_then(|o| o.credential_sha256)
                && Some(old_hash) != rec.credential_sha256
            {
                batch.delete_cf(cred_cf, old_hash.0);
            }
            if let Some(h) = rec.credential_sha256 {
                if let Some(owner) = self.owner_of(&h)?
                    && owner != rec.id
                    && !in_file.contains(&owner)
                {
                    return Err(Error::invalid("credential_sha256", rec.id.as_str(), CREDENTIAL_TAKEN));
                }
                puts.push((h, &rec.id));
            }
            let old_status = old.as_ref().map(|o| o.status);
            count(old.map(|o| o == *rec));
            batch.put_cf(cf, rec.id.as_str(), value(rec));
            self.follow_status(&mut batch, &Subject::Partner(rec.id.clone()), old_status, rec.status, now)?;
        }
        for (h, id) in puts {
            batch.put_cf(cred_cf, h.0, fwrepo_db::encode(FORMAT, id.as_str().as_bytes()));
        }

        self.db.write(batch, true)?;
        Ok(summary)
    }

    /// The serial record of `serial`.
    pub fn serial(&self, serial: &Serial) -> Result<Option<SerialRecord>> {
        self.get(CF_SERIALS, serial.as_str())
    }

    /// The agreement `id`.
    pub fn agreement(&self, id: &AgreementId) -> Result<Option<Agreement>> {
        self.get(CF_AGREEMENTS, id.as_str())
    }

    /// The partner `id`.
    pub fn partner(&self, id: &PartnerId) -> Result<Option<Partner>> {
        self.get(CF_PARTNERS, id.as_str())
    }

    /// The partner whose API credential is `credential` (the plain secret; only its hash is
    /// looked up).
    pub fn partner_by_credential(&self, credential: &str) -> Result<Option<Partner>> {
        match self.owner_of(&CredentialHash::of(credential))? {
            // A partner whose record was replaced by one without this credential no longer
            // owns it, even if the index were stale.
            Some(id) => Ok(self.partner(&id)?.filter(|p| p.credential_sha256 == Some(CredentialHash::of(credential)))),
            None => Ok(None),
        }
    }

    /// Every record, sorted by id within each kind.
    pub fn records(&self) -> Result<RecordSet> {
        Ok(RecordSet {
            serials: self.scan(CF_SERIALS)?,
            agreements: self.scan(CF_AGREEMENTS)?,
            partners: self.scan(CF_PARTNERS)?,
        })
    }

    /// Every record as one JSON document, importable again.
    pub fn export_json(&self) -> Result<Vec<u8>> {
        Ok(import::to_json(&self.records()?))
    }

    /// The records of `kind` as CSV with its header row, importable again.
    pub fn export_csv(&self, kind: RecordKind) -> Result<Vec<u8>> {
        let set = match kind {
            RecordKind::Serials => RecordSet { serials: self.scan(CF_SERIALS)?, ..RecordSet::default() },
            RecordKind::Agreements => RecordSet { agreements: self.scan(CF_AGREEMENTS)?, ..RecordSet::default() },
            RecordKind::Partners => RecordSet { partners: self.scan(CF_PARTNERS)?, ..RecordSet::default() },
        };
        Ok(import::to_csv(&set, kind))
    }

    /// Sets a partner's status; see the module docs for the revocation that follows.
    pub fn set_partner_status(&self, id: &PartnerId, status: Status, now: UnixTime) -> Result<()> {
        let mut rec = self.partner(id)?.ok_or_else(|| Error::NotFound { kind: "partner", id: id.to_string() })?;
        let old = std::mem::replace(&mut rec.status, status);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.require_cf(CF_PARTNERS)?, id.as_str(), value(&rec));
        self.follow_status(&mut batch, &Subject::Partner(id.clone()), Some(old), status, now)?;
        Ok(self.db.write(batch, true)?)
    }

    /// Sets an agreement's status; see the module docs for the revocation that follows.
    pub fn set_agreement_status(&self, id: &AgreementId, status: Status, now: UnixTime) -> Result<()> {
        let mut rec = self.agreement(id)?.ok_or_else(|| Error::NotFound { kind: "agreement", id: id.to_string() })?;
        let old = std::mem::replace(&mut rec.status, status);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.require_cf(CF_AGREEMENTS)?, id.as_str(), value(&rec));
        self.follow_status(&mut batch, &Subject::Agreement(id.clone()), Some(old), status, now)?;
        Ok(self.db.write(batch, true)?)
    }

    /// Revokes one token by its `jti`.
    pub fn revoke_token(&self, jti: &Jti, now: UnixTime) -> Result<()> {
        if self.get_raw(CF_REVOKED_TOKENS, jti.as_str())?.is_some() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.require_cf(CF_REVOKED_TOKENS)?, jti.as_str(), time_value(now));
        Ok(self.db.write(batch, true)?)
    }

    /// Lifts the revocation of the token `jti`; returns whether there was one.
    pub fn unrevoke_token(&self, jti: &Jti) -> Result<bool> {
        if self.get_raw(CF_REVOKED_TOKENS, jti.as_str())?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.db.require_cf(CF_REVOKED_TOKENS)?, jti.as_str());
        self.db.write(batch, true)?;
        Ok(true)
    }

    /// Whether the token `jti` is revoked.
    pub fn is_token_revoked(&self, jti: &Jti) -> Result<bool> {
        Ok(self.get_raw(CF_REVOKED_TOKENS, jti.as_str())?.is_some())
    }

    /// Revokes every token of `subject` (a manual revocation) until
    /// [`Entitlements::lift_subject`]; issuance for it is refused meanwhile. No import lifts it.
    pub fn revoke_subject(&self, subject: &Subject, now: UnixTime) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.change_causes(&mut batch, subject, now, |c| c.manual = true)?;
        Ok(self.db.write(batch, true)?)
    }

    /// Lifts the manual revocation of `subject`. A revocation that follows the subject's
    /// record status stays until the status changes to `active`.
    pub fn lift_subject(&self, subject: &Subject) -> Result<Lifted> {
        let Some(rev) = self.subject_revocation(subject)? else { return Ok(Lifted::NotManuallyRevoked) };
        if !rev.causes.manual {
            return Ok(Lifted::NotManuallyRevoked);
        }
        let mut batch = WriteBatch::default();
        let left = self.change_causes(&mut batch, subject, rev.since, |c| c.manual = false)?;
        self.db.write(batch, true)?;
        Ok(if left.status { Lifted::StillRevokedByStatus } else { Lifted::Lifted })
    }

    /// Whether `subject` is revoked, for either cause.
    pub fn is_subject_revoked(&self, subject: &Subject) -> Result<bool> {
        Ok(self.subject_revocation(subject)?.is_some())
    }

    /// The revocation of `subject`, if any: since when and why.
    pub fn subject_revocation(&self, subject: &Subject) -> Result<Option<SubjectRevocation>> {
        let key = subject.to_string();
        match self.get_raw(CF_REVOKED_SUBJECTS, &key)? {
            None => Ok(None),
            Some(v) => decode_subject(&key, &v).map(Some),
        }
    }

    /// Every revocation, for a [`crate::Verifier`] or for publishing.
    pub fn revocations(&self) -> Result<Revocations> {
        let mut out = Revocations::new();
        for (k, v) in self.scan_raw(CF_REVOKED_TOKENS)? {
            let key = String::from_utf8_lossy(&k).into_owned();
            let jti = Jti::new(&key).map_err(|e| corrupt(CF_REVOKED_TOKENS, &key, e))?;
            out.revoke_token(jti, decode_time(CF_REVOKED_TOKENS, &key, &v)?);
        }
        for (k, v) in self.scan_raw(CF_REVOKED_SUBJECTS)? {
            let key = String::from_utf8_lossy(&k).into_owned();
            let sub: Subject = key.parse().map_err(|e| corrupt(CF_REVOKED_SUBJECTS, &key, e))?;
            out.revoke_subject(sub, decode_subject(&key, &v)?.since);
        }
        Ok(out)
    }

    /// The exact bytes of `auth/revocations.json`.
    pub fn revocations_json(&self) -> Result<Vec<u8>> {
        Ok(self.revocations()?.to_json_bytes())
    }

    /// Keeps the status cause of `subject`'s revocation in line with its record's status.
    /// The manual cause is never touched here, so no import lifts `token revoke --subject`.
    /// A record that is (or becomes) inactive is revoked; only a change from an inactive
    /// status to `active` lifts the status cause, so an unchanged re-import changes nothing.
    fn follow_status(
        &self,
        batch: &mut WriteBatch,
        subject: &Subject,
        old: Option<Status>,
        new: Status,
        now: UnixTime,
    ) -> Result<()> {
        let was_active = old.is_none_or(|s| s == Status::Active);
        match (was_active, new == Status::Active) {
            (_, false) => self.change_causes(batch, subject, now, |c| c.status = true).map(drop),
            (false, true) => self.change_causes(batch, subject, now, |c| c.status = false).map(drop),
            (true, true) => Ok(()),
        }
    }

    /// Stages the revocation entry of `subject` with its causes changed by `change`: deleted
    /// when no cause is left, written otherwise (keeping the first revocation time, so
    /// re-imports never make it look newer). Returns the causes left.
    fn change_causes(
        &self,
        batch: &mut WriteBatch,
        subject: &Subject,
        now: UnixTime,
        change: impl FnOnce(&mut Causes),
    ) -> Result<Causes> {
        let key = subject.to_string();
        let cf = self.db.require_cf(CF_REVOKED_SUBJECTS)?;
        let old = self.subject_revocation(subject)?;
        let mut causes = old.map(|r| r.causes).unwrap_or_default();
        change(&mut causes);
        if old.map(|r| r.causes) == Some(causes) {
            return Ok(causes);
        }
        if causes.any() {
            let since = old.map_or(now, |r| r.since);
            batch.put_cf(cf, key, subject_value(since, causes));
        } else {
            batch.delete_cf(cf, key);
        }
        Ok(causes)
    }

    fn owner_of(&self, hash: &CredentialHash) -> Result<Option<PartnerId>> {
        let Some(cf) = self.db.cf(CF_CREDENTIALS) else { return Ok(None) };
        let key = hash.to_hex();
        match self.db.get(cf, &hash.0)? {
            None => Ok(None),
            Some(v) => {
                let body = fwrepo_db::decode(CF_CREDENTIALS, FORMAT, &v)?;
                let id = std::str::from_utf8(body).unwrap_or("");
                PartnerId::new(id).map(Some).map_err(|e| corrupt(CF_CREDENTIALS, &key, e))
            }
        }
    }

    fn get_raw(&self, cf_name: &'static str, key: &str) -> Result<Option<Vec<u8>>> {
        match self.db.cf(cf_name) {
            None => Ok(None),
            Some(cf) => Ok(self.db.get(cf, key.as_bytes())?),
        }
    }

    fn get<T: DeserializeOwned>(&self, cf_name: &'static str, key: &str) -> Result<Option<T>> {
        match self.get_raw(cf_name, key)? {
            None => Ok(None),
            Some(v) => decode_record(cf_name, key.as_bytes(), &v).map(Some),
        }
    }

    fn scan_raw(&self, cf_name: &'static str) -> Result<Vec<KeyValue>> {
        let Some(cf) = self.db.cf(cf_name) else { return Ok(Vec::new()) };
        self.db
            .rocks()
            .iterator_cf(cf, IteratorMode::Start)
            .map(|kv| kv.map_err(|e| Error::Db(self.db.err(e))))
            .collect()
    }

    fn scan<T: DeserializeOwned>(&self, cf_name: &'static str) -> Result<Vec<T>> {
        self.scan_raw(cf_name)?.iter().map(|(k, v)| decode_record(cf_name, k, v)).collect()
    }
}

/// The owner is not named: the message may reach whoever wrote the file.
const CREDENTIAL_TAKEN: &str = "credential already belongs to another partner";

fn value<T: Serialize>(rec: &T) -> Vec<u8> {
    fwrepo_db::encode(FORMAT, &serde_json::to_vec(rec).expect("records serialize to JSON"))
}

fn time_value(t: UnixTime) -> Vec<u8> {
    fwrepo_db::encode(FORMAT, &t.0.to_be_bytes())
}

fn subject_value(since: UnixTime, causes: Causes) -> Vec<u8> {
    let mut body = since.0.to_be_bytes().to_vec();
    body.push(causes.to_byte());
    fwrepo_db::encode(SUBJECT_FORMAT, &body)
}

fn decode_subject(key: &str, v: &[u8]) -> Result<SubjectRevocation> {
    const CF: &str = CF_REVOKED_SUBJECTS;
    if v.first() == Some(&FORMAT) {
        // Written before causes were kept: manual, so that no import lifts it.
        let since = decode_time(CF, key, v)?;
        return Ok(SubjectRevocation { since, causes: Causes { manual: true, status: false } });
    }
    let body = fwrepo_db::decode(CF, SUBJECT_FORMAT, v)?;
    let bad = |reason: &str| Error::CorruptRecord { cf: CF, key: key.to_owned(), reason: reason.to_owned() };
    let (time, flags) = match body {
        [t @ .., f] if t.len() == 8 => (t, *f),
        _ => return Err(bad("subject revocation is not 9 bytes")),
    };
    let since = UnixTime(i64::from_be_bytes(time.try_into().expect("8 bytes")));
    let causes = Causes::from_byte(flags).ok_or_else(|| bad("unknown revocation causes"))?;
    Ok(SubjectRevocation { since, causes })
}

fn decode_time(cf: &'static str, key: &str, v: &[u8]) -> Result<UnixTime> {
    let body = fwrepo_db::decode(cf, FORMAT, v)?;
    let bytes: [u8; 8] = body.try_into().map_err(|_| Error::CorruptRecord {
        cf,
        key: key.to_owned(),
        reason: "revocation time is not 8 bytes".to_owned(),
    })?;
    Ok(UnixTime(i64::from_be_bytes(bytes)))
}

fn decode_record<T: DeserializeOwned>(cf: &'static str, key: &[u8], v: &[u8]) -> Result<T> {
    let body = fwrepo_db::decode(cf, FORMAT, v)?;
    serde_json::from_slice(body).map_err(|e| Error::CorruptRecord {
        cf,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

fn corrupt(cf: &'static str, key: &str, e: Error) -> Error {
    Error::CorruptRecord { cf, key: key.to_owned(), reason: e.to_string() }
}
