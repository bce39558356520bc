//! Revoked tokens and subjects, and their published form `auth/revocations.json`.
//!
//! ```json
//! {
//!   "version": 1,
//!   "tokens": [{"jti": "…", "revoked_at": 1735689600}],
//!   "subjects": [{"sub": "partner:acme", "revoked_at": 1735689600}]
//! }
//! ```
//!
//! A subject revocation is standing: every token whose `sub` matches is rejected, whenever it
//! was issued, until the revocation is lifted. Entries are sorted so equal lists give equal
//! bytes (re-publishing an unchanged list changes nothing downstream).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{Jti, Subject};
use crate::time::UnixTime;

/// The format version of the document.
const VERSION: u32 = 1;

/// The set of revocations a verifier applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    tokens: HashMap<Jti, UnixTime>,
    subjects: HashMap<Subject, UnixTime>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    tokens: Vec<TokenEntry>,
    subjects: Vec<SubjectEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    jti: Jti,
    revoked_at: UnixTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectEntry {
    sub: Subject,
    revoked_at: UnixTime,
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Revokes the token `jti` (keeps the first revocation time if already revoked).
    pub fn revoke_token(&mut self, jti: Jti, at: UnixTime) {
        self.tokens.entry(jti).or_insert(at);
    }

    /// Revokes every token of `subject`.
    pub fn revoke_subject(&mut self, subject: Subject, at: UnixTime) {
        self.subjects.entry(subject).or_insert(at);
    }

    /// Lifts a subject revocation; returns whether there was one.
    pub fn lift_subject(&mut self, subject: &Subject) -> bool {
        self.subjects.remove(subject).is_some()
    }

    pub fn is_token_revoked(&self, jti: &str) -> bool {
        self.tokens.contains_key(jti)
    }

    pub fn is_subject_revoked(&self, subject: &Subject) -> bool {
        self.subjects.contains_key(subject)
    }

    /// Revoked token ids and when, in no particular order.
    pub fn tokens(&self) -> impl Iterator<Item = (&Jti, UnixTime)> {
        self.tokens.iter().map(|(j, t)| (j, *t))
    }

    /// Revoked subjects and since when, in no particular order.
    pub fn subjects(&self) -> impl Iterator<Item = (&Subject, UnixTime)> {
        self.subjects.iter().map(|(s, t)| (s, *t))
    }

    pub fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact bytes of `auth/revocations.json`.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut tokens: Vec<TokenEntry> =
            self.tokens.iter().map(|(jti, &revoked_at)| TokenEntry { jti: jti.clone(), revoked_at }).collect();
        tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
        let mut subjects: Vec<SubjectEntry> =
            self.subjects.iter().map(|(sub, &revoked_at)| SubjectEntry { sub: sub.clone(), revoked_at }).collect();
        subjects.sort_by(|a, b| a.sub.cmp(&b.sub));
        let mut out =
            serde_json::to_vec_pretty(&Document { version: VERSION, tokens, subjects }).expect("revocations serialize");
        out.push(b'\n');
        out
    }

    /// Reads `auth/revocations.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Revocations> {
        let doc: Document = serde_json::from_slice(bytes).map_err(|e| Error::Revocations { reason: e.to_string() })?;
        if doc.version != VERSION {
            return Err(Error::Revocations { reason: format!("version {} is not {VERSION}", doc.version) });
        }
        let mut out = Revocations::new();
        for t in doc.tokens {
            out.revoke_token(t.jti, t.revoked_at);
        }
        for s in doc.subjects {
            out.revoke_subject(s.sub, s.revoked_at);
        }
        Ok(out)
    }
}
