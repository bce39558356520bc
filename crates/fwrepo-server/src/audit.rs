//! The audit log of gated downloads and refused token requests: one JSON object per line
//! (time, client, subject, jti, blob, path, bytes, status), rotated by size to `<file>.1` …
//! `<file>.N`.
//!
//! Every field is bounded, so a flood of requests with huge paths cannot rotate a real record
//! out of the kept files any faster than a flood of ordinary ones: `path` is the canonical name
//! of what was asked for (the blob id, the decoded target name), cut at [`MAX_PATH`] bytes.
//!
//! Each record is one `write` to a file opened for appending, so concurrent servers or a
//! crash never interleave half lines. Rotation renames under the lock; a reader tailing the
//! file sees it replaced, as with any rotated log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::Error;

/// Longest `path` written; longer ones are cut on a character boundary and end in `…`.
pub const MAX_PATH: usize = 256;

/// One gated request that got past authentication, or a refused token request.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The client's IP address.
    pub client: String,
    /// `serial:…`, `agreement:…` or `partner:…`.
    pub subject: String,
    pub jti: String,
    /// The blob id (BLAKE3, hex).
    pub blob: String,
    /// What was asked for, canonical and bounded: `/v1/blobs/<id>`, `/v1/blobs/<id>/chunks`,
    /// `/targets/<decoded name>` (see [`bounded_path`]).
    pub path: String,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    pub status: u16,
    /// Why a request was refused, when that is not a download status (e.g. which rate limit).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// `path` cut to at most [`MAX_PATH`] bytes on a character boundary, `…` marking a cut.
pub fn bounded_path(path: &str) -> String {
    if path.len() <= MAX_PATH {
        return path.to_owned();
    }
    let marker = '…';
    let mut end = MAX_PATH - marker.len_utf8();
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(MAX_PATH);
    out.push_str(&path[..end]);
    out.push(marker);
    out
}

/// The current time as RFC 3339 with milliseconds.
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// An append-only JSON-lines file rotated by size.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    len: u64,
}

impl AuditLog {
    /// Opens (or creates) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<AuditLog, Error> {
        let (file, len) = open_append(path).map_err(|source| Error::Audit { path: path.to_owned(), source })?;
        Ok(AuditLog { path: path.to_owned(), max_bytes, keep, inner: Mutex::new(Inner { file, len }) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record, rotating first when it would take the file past its size limit.
    pub fn write(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len > 0 && inner.len + line.len() as u64 > self.max_bytes {
            self.rotate(&mut inner)?;
        }
        inner.file.write_all(&line)?;
        inner.len += line.len() as u64;
        Ok(())
    }

    fn rotate(&self, inner: &mut Inner) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(numbered(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                std::fs::rename(numbered(n), numbered(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let (file, len) = open_append(&self.path)?;
        *inner = Inner { file, len };
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            time: now_rfc3339(),
            client: "127.0.0.1".into(),
            subject: "serial:S1".into(),
            jti: format!("j{i}"),
            blob: "ab".repeat(32),
            path: "/v1/blobs/x".into(),
            bytes: i,
            status: 200,
            reason: String::new(),
        }
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        assert_eq!(bounded_path("/v1/blobs/ab"), "/v1/blobs/ab");
        let long = format!("/targets/{}", "é".repeat(10_000));
        let cut = bounded_path(&long);
        assert!(cut.len() <= MAX_PATH, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
        let exact = "a".repeat(MAX_PATH);
        assert_eq!(bounded_path(&exact), exact);
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 4096, 2).unwrap();
        for i in 0..200 {
            log.write(&record(i)).unwrap();
        }
        let main = std::fs::read_to_string(&path).unwrap();
        assert!(main.len() as u64 <= 4096);
        assert!(dir.path().join("audit.log.1").exists());
        assert!(dir.path().join("audit.log.2").exists());
        assert!(!dir.path().join("audit.log.3").exists());
        // Every line is a whole record; the newest is last.
        let last: serde_json::Value = serde_json::from_str(main.lines().last().unwrap()).unwrap();
        assert_eq!(last["jti"], "j199");
        assert_eq!(last["status"], 200);
        for name in ["audit.log", "audit.log.1"] {
            for line in std::fs::read_to_string(dir.path().join(name)).unwrap().lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
    }
}
