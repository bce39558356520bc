//! Mirror mode: what a server that mirrors an upstream adds. It issues no tokens (it names the
//! origin instead), answers 404 "not carried" for firmware outside what it mirrors, reports
//! its sync in `/metrics`, and is not ready once its timestamp metadata has expired.

use std::fmt::Write as _;
use std::sync::RwLock;

/// The sync facts a mirror server reports; Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    pub last_success: Option<i64>,
    pub consecutive_failures: u64,
    pub timestamp_expires: Option<i64>,
    pub wire_bytes_total: u64,
    pub chunk_bytes_total: u64,
    pub chunks_total: u64,
}

/// A server's mirror role: where tokens come from, and the last sync status.
#[derive(Debug)]
pub(crate) struct MirrorMode {
    pub origin: String,
    pub status: RwLock<MirrorStatus>,
}

impl MirrorMode {
    pub fn new(origin: String) -> MirrorMode {
        MirrorMode { origin, status: RwLock::new(MirrorStatus::default()) }
    }

    pub fn status(&self) -> MirrorStatus {
        self.status.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the served timestamp metadata has expired at `now` (clients would refuse it).
    pub fn expired(&self, now: i64) -> bool {
        self.status().timestamp_expires.is_none_or(|e| e <= now)
    }

    /// The Prometheus lines of the mirror's sync.
    pub fn render(&self, out: &mut String) {
        let s = self.status();
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            out,
            "fwrepo_mirror_last_success_seconds",
            "Unix time of the last successful sync.",
            s.last_success.unwrap_or(0),
        );
        gauge(
            out,
            "fwrepo_mirror_consecutive_failures",
            "Failed syncs since the last success.",
            s.consecutive_failures as i64,
        );
        gauge(
            out,
            "fwrepo_mirror_timestamp_expires_seconds",
            "Expiry of the served timestamp metadata.",
            s.timestamp_expires.unwrap_or(0),
        );
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            out,
            "fwrepo_mirror_wire_bytes_total",
            "Bytes received from the upstream by syncs.",
            s.wire_bytes_total,
        );
        counter(out, "fwrepo_mirror_chunk_bytes_total", "Bytes of chunks fetched by syncs.", s.chunk_bytes_total);
        counter(out, "fwrepo_mirror_chunks_total", "Chunks fetched by syncs.", s.chunks_total);
    }
}
