//! The audit log of gated downloads and refused token requests: one JSON object per line
//! (time, client, subject, jti, blob, path, bytes, status), rotated by size to `<file>.1` …
//! `<file>.N`.
//!
//! Every field is bounded, so a flood of requests with huge paths cannot rotate a real record
//! out of the kept files any faster than a flood of ordinary ones: `path` is the canonical name
//! of what was asked for (the blob id, the decoded target name), cut at [`MAX_PATH`] bytes.
//!
//! Records are written off the request path: [`AuditLog::write`] appends the encoded line to a
//! buffer in memory and a writer thread of the log's own writes the buffer out every
//! [`FLUSH_EVERY`] or once [`FLUSH_AT`] bytes wait. The buffer is bounded: past
//! [`MAX_PENDING`] bytes the request that finds it full writes it out itself, so memory stays
//! bounded and no record is dropped. [`AuditLog::flush`] (called by the server once it has
//! drained on shutdown) and dropping the log write out everything buffered.
//!
//! Each `write(2)` to the file (opened for appending) carries whole lines only, so
//! concurrent servers or a crash never interleave half lines. Rotation renames under the
//! lock; a reader tailing the file sees it replaced, as with any rotated log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fwrepo_entitle::Claims;
use fwrepo_store::Digest;

use crate::error::Error;

/// Longest `path` written; longer ones are cut on a character boundary and end in `…`.
pub const MAX_PATH: usize = 256;
/// Longest a buffered record waits for the writer thread.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that wake the writer thread early.
pub const FLUSH_AT: usize = 64 << 10;
/// Most bytes buffered; a request that finds more writes them out itself.
pub const MAX_PENDING: usize = 4 << 20;

/// One gated request that got past authentication, or a refused token request.
///
/// Kept as the facts themselves (a time, an address, the token's claims, a blob id), not as
/// text: the line is written by [`encode`] when the record is logged, so building one on the
/// request path allocates nothing.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When the request was handled; written as RFC 3339, UTC, milliseconds.
    pub time: SystemTime,
    /// The client's IP address.
    pub client: IpAddr,
    /// The token's claims: `subject` (`serial:…`, `agreement:…` or `partner:…`) and `jti`
    /// are written from them; empty strings without a token (a refused token request).
    pub claims: Option<Arc<Claims>>,
    /// The blob id (BLAKE3, hex), when the request named a well-formed one.
    pub blob: Option<Digest>,
    /// What was asked for.
    pub path: AuditPath,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    pub status: u16,
    /// Why a request was refused, when that is not a download status (e.g. which rate limit);
    /// not written when empty.
    pub reason: String,
}

/// What a request asked for, canonical and bounded.
#[derive(Clone, Debug)]
pub enum AuditPath {
    /// `/v1/blobs/<the record's blob>` followed by this (``, `/chunks`, `/deltas`).
    Blob(&'static str),
    /// Anything else, already canonical and bounded ([`bounded_path`]): a malformed blob id
    /// as asked, `/targets/<decoded name>`, `/v1/tokens`.
    Text(String),
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

/// Appends `time` as RFC 3339 with milliseconds (`2026-12-04T19:00:00.123Z`); the part up to
/// the seconds is formatted once a second per thread.
fn push_rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, [u8; 19])> = const { std::cell::RefCell::new((u64::MAX, [0; 19])) };
    }
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            // `YYYY-MM-DDTHH:MM:SS`, the same as chrono's RFC 3339 up to the fraction.
            let full = chrono::DateTime::from_timestamp(secs as i64, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            match full.strip_suffix('Z') {
                Some(prefix) if prefix.len() == 19 => {
                    c.1.copy_from_slice(prefix.as_bytes());
                    c.0 = secs;
                }
                // Years past 9999 (a clock gone wrong): written as chrono writes them.
                _ => {
                    out.extend_from_slice(full.trim_end_matches('Z').as_bytes());
                    push_millis(out, since.subsec_millis());
                    return;
                }
            }
        }
        out.extend_from_slice(&c.1);
        push_millis(out, since.subsec_millis());
    });
}

fn push_millis(out: &mut Vec<u8>, ms: u32) {
    out.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
}

/// Appends `ip` as `Display` writes it (dotted quad written here, IPv6 by std).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends `record` to `out` as one JSON object, the same bytes `serde_json` writes for its
/// fields as text (keys in the order time, client, subject, jti, blob, path, bytes, status,
/// reason; escapes as serde_json's), without serde's machinery per field.
fn encode(out: &mut Vec<u8>, r: &AuditRecord) {
    out.extend_from_slice(b"{\"time\":\"");
    push_rfc3339(out, r.time);
    out.extend_from_slice(b"\",\"client\":\"");
    push_ip(out, r.client);
    out.extend_from_slice(b"\",\"subject\":\"");
    if let Some(c) = &r.claims {
        let (kind, id) = c.sub.parts();
        out.extend_from_slice(kind.as_bytes());
        out.push(b':');
        json_chars(out, id);
    }
    out.extend_from_slice(b"\",\"jti\":\"");
    if let Some(c) = &r.claims {
        json_chars(out, c.jti.as_str());
    }
    out.extend_from_slice(b"\",\"blob\":\"");
    if let Some(b) = &r.blob {
        out.extend_from_slice(&b.hex_bytes());
    }
    out.extend_from_slice(b"\",\"path\":\"");
    match &r.path {
        AuditPath::Blob(suffix) => {
            out.extend_from_slice(b"/v1/blobs/");
            if let Some(b) = &r.blob {
                out.extend_from_slice(&b.hex_bytes());
            }
            json_chars(out, suffix);
        }
        AuditPath::Text(p) => json_chars(out, p),
    }
    out.push(b'"');
    for (key, value) in [(&b",\"bytes\":"[..], r.bytes), (b",\"status\":", u64::from(r.status))] {
        out.extend_from_slice(key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }
    if !r.reason.is_empty() {
        out.extend_from_slice(b",\"reason\":\"");
        json_chars(out, &r.reason);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Whether any byte of `bytes` is `"`, `\\` or below 0x20.
fn needs_escape(bytes: &[u8]) -> bool {
    crate::scan::any_byte(bytes, |b| (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// The characters of `s` inside a JSON string, escaped as `serde_json` escapes them: `"`,
/// `\\` and control characters below U+0020 (short forms where JSON has them, `\u00XX`
/// otherwise); everything else as is.
fn json_chars(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Most fields need no escape at all (times, addresses, hex ids): one pass to tell.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..0x20 => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        from = i + 1;
        if short != 0 {
            out.extend_from_slice(&[b'\\', short]);
        } else {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
        }
    }
    out.extend_from_slice(&bytes[from..]);
}

/// An append-only JSON-lines file rotated by size, written by a thread of its own.
pub struct AuditLog {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// Encoded lines not yet written, and whether the log is closing.
    pending: Mutex<Pending>,
    wake: Condvar,
    /// The file; held while lines are written to it, so writes keep their order.
    file: Mutex<Inner>,
    /// Lines that could not be written, not yet reported by [`AuditLog::take_errors`].
    errors: AtomicU64,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

struct Inner {
    file: File,
    len: u64,
}

impl AuditLog {
    /// Opens (or creates) `path` for appending, and starts its writer thread.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<AuditLog, Error> {
        let audit_err = |source| Error::Audit { path: path.to_owned(), source };
        let (file, len) = open_append(path).map_err(audit_err)?;
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            max_bytes,
            keep,
            pending: Mutex::default(),
            wake: Condvar::new(),
            file: Mutex::new(Inner { file, len }),
            errors: AtomicU64::new(0),
        });
        let for_thread = Arc::clone(&shared);
        let writer =
            std::thread::Builder::new().name("audit-log".into()).spawn(move || for_thread.run()).map_err(audit_err)?;
        Ok(AuditLog { shared, writer: Some(writer) })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Buffers one record; the writer thread appends it soon (see the module docs). Fails
    /// only when the buffer was full and writing it out failed.
    pub fn write(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut p = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        let before = p.lines.len();
        encode(&mut p.lines, record);
        p.lines.push(b'\n');
        let len = p.lines.len();
        if len >= MAX_PENDING {
            // The writer thread is behind (a slow disk): write out here rather than grow.
            drop(p);
            return self.shared.flush();
        }
        if before < FLUSH_AT && len >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Writes out every buffered record now.
    pub fn flush(&self) -> std::io::Result<()> {
        self.shared.flush()
    }

    /// Records the writer thread failed to write since the last call.
    pub fn take_errors(&self) -> u64 {
        self.shared.errors.swap(0, Ordering::Relaxed)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).closing = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Shared {
    /// The writer thread: writes out what is buffered every [`FLUSH_EVERY`] (sooner when
    /// woken), until the log closes; then once more.
    fn run(&self) {
        loop {
            let closing = {
                let p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let (p, _) = self
                    .wake
                    .wait_timeout_while(p, FLUSH_EVERY, |p| p.lines.len() < FLUSH_AT && !p.closing)
                    .unwrap_or_else(|e| e.into_inner());
                p.closing
            };
            if let Err(e) = self.flush() {
                tracing::error!(path = %self.path.display(), error = %e, "audit records not written");
            }
            if closing {
                return;
            }
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        // The file lock is taken before the buffer is emptied, so lines reach the file in the
        // order they were buffered whoever writes them.
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let lines = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.lines.is_empty() {
                return Ok(());
            }
            // The buffer left behind has room for a flush's worth of lines, so records are
            // not appended through a buffer regrown from nothing after every flush.
            std::mem::replace(&mut pending.lines, Vec::with_capacity(FLUSH_AT + FLUSH_AT / 4))
        };
        self.write_lines(file, &lines)
    }

    /// Appends `lines` (whole lines), rotating first whenever the next line would take the
    /// file past its size limit; each `write` carries whole lines only.
    fn write_lines(&self, mut inner: std::sync::MutexGuard<'_, Inner>, lines: &[u8]) -> std::io::Result<()> {
        let r = (|| {
            let mut rest = lines;
            while !rest.is_empty() {
                let room = self.max_bytes.saturating_sub(inner.len) as usize;
                // The longest run of whole lines that fits (`rest` ends with a newline).
                let mut take = if rest.len() <= room {
                    rest.len()
                } else {
                    rest[..room].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
                };
                if take == 0 {
                    if inner.len > 0 {
                        self.rotate(&mut inner)?;
                        continue;
                    }
                    // One line longer than the limit: alone in a fresh file.
                    take = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
                }
                inner.file.write_all(&rest[..take])?;
                inner.len += take as u64;
                rest = &rest[take..];
            }
            Ok(())
        })();
        if r.is_err() {
            let n = lines.iter().filter(|&&b| b == b'\n').count() as u64;
            self.errors.fetch_add(n, Ordering::Relaxed);
        }
        r
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
    use fwrepo_entitle::Subject;

    fn claims(sub: Subject, jti: &str) -> Arc<Claims> {
        Arc::new(Claims {
            iss: "https://fw.example".into(),
            sub,
            aud: "fwrepo".into(),
            iat: fwrepo_entitle::UnixTime(0),
            nbf: fwrepo_entitle::UnixTime(0),
            exp: fwrepo_entitle::UnixTime(1),
            jti: fwrepo_entitle::Jti::new(jti).unwrap(),
            scope: fwrepo_entitle::Scope::Download,
            models: fwrepo_entitle::ModelSet::All,
        })
    }

    fn record(i: u64) -> AuditRecord {
        AuditRecord {
            time: SystemTime::now(),
            client: IpAddr::from([127, 0, 0, 1]),
            claims: Some(claims(Subject::Serial(fwrepo_entitle::Serial::new("S1").unwrap()), &format!("j{i}"))),
            blob: Some(Digest([0xab; 32])),
            path: AuditPath::Blob(""),
            bytes: i,
            status: 200,
            reason: String::new(),
        }
    }

    /// The record as text, each field formatted by std, chrono and `Digest`, in the order
    /// the log writes them: what `encode` must agree with, through serde_json.
    #[derive(serde::Serialize)]
    struct Plain {
        time: String,
        client: String,
        subject: String,
        jti: String,
        blob: String,
        path: String,
        bytes: u64,
        status: u16,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
    }

    fn plain(r: &AuditRecord) -> Plain {
        let blob = r.blob.map(|b| b.to_hex()).unwrap_or_default();
        Plain {
            time: chrono::DateTime::<chrono::Utc>::from(r.time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            client: r.client.to_string(),
            subject: r.claims.as_ref().map(|c| c.sub.to_string()).unwrap_or_default(),
            jti: r.claims.as_ref().map(|c| c.jti.as_str().to_owned()).unwrap_or_default(),
            path: match &r.path {
                AuditPath::Blob(suffix) => format!("/v1/blobs/{blob}{suffix}"),
                AuditPath::Text(p) => p.clone(),
            },
            blob,
            bytes: r.bytes,
            status: r.status,
            reason: r.reason.clone(),
        }
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_wherever_it_is() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100] {
            let clean = vec![b'a'; len];
            assert!(!needs_escape(&clean), "len {len}");
            for at in 0..len {
                for b in [b'"', b'\\', 0, b'\n', 0x1f] {
                    let mut dirty = clean.clone();
                    dirty[at] = b;
                    assert!(needs_escape(&dirty), "byte {b:#x} at {at} of {len}");
                }
                let mut fine = clean.clone();
                fine[at] = 0x20;
                fine[(at + 1) % len] = 0x7f;
                assert!(!needs_escape(&fine), "space and DEL need no escape");
            }
        }
    }

    #[test]
    fn records_are_encoded_as_serde_json_encodes_them() {
        let nasty = [
            "",
            "plain",
            "q\"uo\\te",
            "0123456789abcdefghij\"kl\\mn\u{1}",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é…\u{2028}😀",
            "/targets/a b%20c",
        ];
        let subjects = [
            Subject::Serial(fwrepo_entitle::Serial::new("CZ12345678").unwrap()),
            Subject::Agreement(fwrepo_entitle::AgreementId::new("SA-1").unwrap()),
            Subject::Partner(fwrepo_entitle::PartnerId::new("acme").unwrap()),
        ];
        let clients = [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0, 0, 0, 0]),
            IpAddr::from([255, 10, 100, 9]),
            "::1".parse().unwrap(),
            "2001:db8::ff00:42:8329".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ];
        let times = [UNIX_EPOCH, UNIX_EPOCH + Duration::from_millis(1_764_874_800_007), SystemTime::now()];
        for (i, s) in nasty.iter().enumerate() {
            let r = AuditRecord {
                time: times[i % times.len()],
                client: clients[i % clients.len()],
                claims: (i % 4 != 3).then(|| claims(subjects[i % subjects.len()].clone(), &format!("jti-{i}_x"))),
                blob: (i % 3 != 2).then(|| Digest::of(s.as_bytes())),
                path: match i % 4 {
                    0 => AuditPath::Blob(""),
                    1 => AuditPath::Blob("/chunks"),
                    _ => AuditPath::Text(nasty[(i + 1) % nasty.len()].to_string()),
                },
                bytes: u64::MAX - i as u64,
                status: 100 + i as u16,
                reason: if i % 2 == 0 { String::new() } else { s.to_string() },
            };
            let mut ours = Vec::new();
            encode(&mut ours, &r);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&plain(&r)).unwrap());
        }
    }

    #[test]
    fn times_are_rfc3339_with_milliseconds() {
        let mut out = Vec::new();
        push_rfc3339(&mut out, SystemTime::now());
        let t = String::from_utf8(out).unwrap();
        assert_eq!(t.len(), 24, "{t}");
        let parsed = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((now - parsed.timestamp_millis()).abs() < 5_000, "{t}");
        // The cached seconds are those of the time asked for, not of the last call.
        let mut a = Vec::new();
        push_rfc3339(&mut a, UNIX_EPOCH + Duration::from_millis(1_500));
        push_rfc3339(&mut a, UNIX_EPOCH + Duration::from_millis(61_020));
        assert_eq!(a, b"1970-01-01T00:00:01.500Z1970-01-01T00:01:01.020Z");
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
        log.flush().unwrap();
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

    #[test]
    fn records_are_written_soon_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 1 << 20, 1).unwrap();
        log.write(&record(1)).unwrap();
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&path).unwrap().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "the writer thread never wrote the record");
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn no_record_is_lost_when_the_log_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&path, 1 << 30, 1).unwrap());
        // Enough to pass MAX_PENDING, so requests write out themselves too.
        let per_thread = MAX_PENDING / 200;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        log.write(&record((t * per_thread + i) as u64)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(Arc::into_inner(log).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["bytes"].as_u64().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..4 * per_thread as u64).collect::<Vec<_>>());
    }
}
