//! Counters for `/metrics`, in the Prometheus text format.
//!
//! Every label set is fixed at compile time (routes, a list of statuses, token reject
//! reasons), so the counters are plain atomics in arrays: no lock and no allocation on the
//! request path, and no label a caller can make up.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use fwrepo_entitle::Reject;

use crate::limit::LimitedBy;

/// What a request was for, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metadata,
    Targets,
    Blobs,
    Chunks,
    Deltas,
    CatalogModels,
    CatalogModel,
    CatalogRelease,
    CatalogPlan,
    Tokens,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

impl Route {
    pub const ALL: [Route; 14] = [
        Route::Metadata,
        Route::Targets,
        Route::Blobs,
        Route::Chunks,
        Route::Deltas,
        Route::CatalogModels,
        Route::CatalogModel,
        Route::CatalogRelease,
        Route::CatalogPlan,
        Route::Tokens,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Metadata => "metadata",
            Route::Targets => "targets",
            Route::Blobs => "blobs",
            Route::Chunks => "chunks",
            Route::Deltas => "deltas",
            Route::CatalogModels => "catalog_models",
            Route::CatalogModel => "catalog_model",
            Route::CatalogRelease => "catalog_release",
            Route::CatalogPlan => "catalog_plan",
            Route::Tokens => "tokens",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// Statuses counted separately; anything else is counted as `other`.
const STATUSES: [u16; 19] =
    [200, 204, 206, 304, 400, 401, 403, 404, 405, 408, 412, 413, 415, 416, 429, 431, 500, 503, 0];

fn status_slot(status: u16) -> usize {
    STATUSES[..STATUSES.len() - 1].iter().position(|&s| s == status).unwrap_or(STATUSES.len() - 1)
}

const ROUTES: usize = Route::ALL.len();
const REASONS: usize = Reject::ALL.len() + 1;

/// The server's counters.
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES],
    bytes_sent: AtomicU64,
    verifications_cached: AtomicU64,
    verifications_uncached: AtomicU64,
    /// By [`Reject`] reason, plus one slot for a missing or non-Bearer `Authorization`.
    auth_failures: [AtomicU64; REASONS],
    open_connections: AtomicI64,
    connections_total: AtomicU64,
    audit_errors: AtomicU64,
    /// Last successful refresh (creation counts: the state starts with fresh data), in
    /// [`coarse_ms`].
    last_refresh_ms: AtomicU64,
    refresh_failures_in_a_row: AtomicU64,
    refresh_failures_total: AtomicU64,
    connections_refused_per_ip: AtomicU64,
    connections_closed_no_request: AtomicU64,
    /// By [`LimitedBy`]: client, credential.
    tokens_rate_limited: [AtomicU64; 2],
    blob_facts_cached: AtomicU64,
    blob_facts_looked_up: AtomicU64,
}

/// Milliseconds of the kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`). It is read
/// on every gated request (the revocation data's age) and needs only seconds: the coarse
/// clock is the monotonic one as of the last timer tick (a few ms behind at most), read
/// without the time-stamp counter, which in a virtual machine costs several times as much.
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(rc, 0, "CLOCK_MONOTONIC_COARSE is always there on Linux");
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            bytes_sent: AtomicU64::new(0),
            verifications_cached: AtomicU64::new(0),
            verifications_uncached: AtomicU64::new(0),
            auth_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            open_connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            audit_errors: AtomicU64::new(0),
            last_refresh_ms: AtomicU64::new(coarse_ms()),
            refresh_failures_in_a_row: AtomicU64::new(0),
            refresh_failures_total: AtomicU64::new(0),
            connections_refused_per_ip: AtomicU64::new(0),
            connections_closed_no_request: AtomicU64::new(0),
            tokens_rate_limited: std::array::from_fn(|_| AtomicU64::new(0)),
            blob_facts_cached: AtomicU64::new(0),
            blob_facts_looked_up: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, route: Route, status: u16) {
        self.requests[route as usize][status_slot(status)].fetch_add(1, Relaxed);
    }

    pub fn add_bytes_sent(&self, n: u64) {
        if n > 0 {
            self.bytes_sent.fetch_add(n, Relaxed);
        }
    }

    pub fn token_verification(&self, cached: bool) {
        if cached { &self.verifications_cached } else { &self.verifications_uncached }.fetch_add(1, Relaxed);
    }

    /// An authentication failure; `None` for a request without a bearer token.
    pub fn auth_failure(&self, reason: Option<Reject>) {
        let slot = match reason {
            Some(r) => Reject::ALL.iter().position(|&x| x == r).unwrap_or(REASONS - 1),
            None => REASONS - 1,
        };
        self.auth_failures[slot].fetch_add(1, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }

    pub fn audit_errors(&self, n: u64) {
        if n > 0 {
            self.audit_errors.fetch_add(n, Relaxed);
        }
    }

    pub fn audit_error(&self) {
        self.audit_errors.fetch_add(1, Relaxed);
    }

    /// A refresh round succeeded: revocation data is fresh again.
    pub fn refresh_succeeded(&self) {
        self.last_refresh_ms.store(coarse_ms(), Relaxed);
        self.refresh_failures_in_a_row.store(0, Relaxed);
    }

    pub fn refresh_failed(&self) {
        self.refresh_failures_in_a_row.fetch_add(1, Relaxed);
        self.refresh_failures_total.fetch_add(1, Relaxed);
    }

    /// Time since the last successful refresh (or since the counters were made).
    pub fn since_last_refresh(&self) -> Duration {
        Duration::from_millis(coarse_ms().saturating_sub(self.last_refresh_ms.load(Relaxed)))
    }

    /// Refresh rounds failed since the last success.
    pub fn consecutive_refresh_failures(&self) -> u64 {
        self.refresh_failures_in_a_row.load(Relaxed)
    }

    /// A connection closed at accept because its client already held its share.
    pub fn connection_refused_per_ip(&self) {
        self.connections_refused_per_ip.fetch_add(1, Relaxed);
    }

    /// A connection closed because no request was in progress for too long.
    pub fn connection_closed_no_request(&self) {
        self.connections_closed_no_request.fetch_add(1, Relaxed);
    }

    pub(crate) fn token_rate_limited(&self, by: LimitedBy) {
        let slot = match by {
            LimitedBy::Client => 0,
            LimitedBy::Credential => 1,
        };
        self.tokens_rate_limited[slot].fetch_add(1, Relaxed);
    }

    /// A download-gate lookup of a blob's facts, answered from the cache or not.
    pub fn blob_facts(&self, cached: bool) {
        if cached { &self.blob_facts_cached } else { &self.blob_facts_looked_up }.fetch_add(1, Relaxed);
    }

    /// Current number of open connections.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Relaxed)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP fwrepo_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE fwrepo_http_requests_total counter\n");
        for route in Route::ALL {
            for (i, status) in STATUSES.iter().enumerate() {
                let n = self.requests[route as usize][i].load(Relaxed);
                if n == 0 {
                    continue;
                }
                let status = if *status == 0 { "other".to_owned() } else { status.to_string() };
                let _ =
                    writeln!(out, "fwrepo_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", route.as_str());
            }
        }
        out.push_str("# HELP fwrepo_http_response_body_bytes_total Response body bytes handed to connections.\n");
        out.push_str("# TYPE fwrepo_http_response_body_bytes_total counter\n");
        let _ = writeln!(out, "fwrepo_http_response_body_bytes_total {}", self.bytes_sent.load(Relaxed));
        out.push_str("# HELP fwrepo_token_verifications_total Bearer tokens checked, by whether the signature check was cached.\n");
        out.push_str("# TYPE fwrepo_token_verifications_total counter\n");
        let _ = writeln!(
            out,
            "fwrepo_token_verifications_total{{cache=\"hit\"}} {}",
            self.verifications_cached.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "fwrepo_token_verifications_total{{cache=\"miss\"}} {}",
            self.verifications_uncached.load(Relaxed)
        );
        out.push_str("# HELP fwrepo_auth_failures_total Requests refused for their credentials, by reason.\n");
        out.push_str("# TYPE fwrepo_auth_failures_total counter\n");
        for (i, r) in Reject::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "fwrepo_auth_failures_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.auth_failures[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "fwrepo_auth_failures_total{{reason=\"missing_token\"}} {}",
            self.auth_failures[REASONS - 1].load(Relaxed)
        );
        out.push_str("# HELP fwrepo_open_connections Connections open now.\n");
        out.push_str("# TYPE fwrepo_open_connections gauge\n");
        let _ = writeln!(out, "fwrepo_open_connections {}", self.open_connections.load(Relaxed));
        out.push_str("# HELP fwrepo_connections_total Connections accepted.\n");
        out.push_str("# TYPE fwrepo_connections_total counter\n");
        let _ = writeln!(out, "fwrepo_connections_total {}", self.connections_total.load(Relaxed));
        out.push_str("# HELP fwrepo_audit_errors_total Audit records that could not be written.\n");
        out.push_str("# TYPE fwrepo_audit_errors_total counter\n");
        let _ = writeln!(out, "fwrepo_audit_errors_total {}", self.audit_errors.load(Relaxed));
        out.push_str(
            "# HELP fwrepo_revocations_age_seconds Seconds since revocation data last refreshed successfully.\n",
        );
        out.push_str("# TYPE fwrepo_revocations_age_seconds gauge\n");
        let _ = writeln!(out, "fwrepo_revocations_age_seconds {}", self.since_last_refresh().as_secs());
        out.push_str("# HELP fwrepo_refresh_failures_consecutive Refresh rounds failed since the last success.\n");
        out.push_str("# TYPE fwrepo_refresh_failures_consecutive gauge\n");
        let _ = writeln!(out, "fwrepo_refresh_failures_consecutive {}", self.consecutive_refresh_failures());
        out.push_str("# HELP fwrepo_refresh_failures_total Refresh rounds failed.\n");
        out.push_str("# TYPE fwrepo_refresh_failures_total counter\n");
        let _ = writeln!(out, "fwrepo_refresh_failures_total {}", self.refresh_failures_total.load(Relaxed));
        out.push_str("# HELP fwrepo_connections_refused_total Connections closed at accept, by reason.\n");
        out.push_str("# TYPE fwrepo_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "fwrepo_connections_refused_total{{reason=\"per_ip\"}} {}",
            self.connections_refused_per_ip.load(Relaxed)
        );
        out.push_str(
            "# HELP fwrepo_connections_closed_no_request_total Connections closed with no request in progress for too long.\n",
        );
        out.push_str("# TYPE fwrepo_connections_closed_no_request_total counter\n");
        let _ = writeln!(
            out,
            "fwrepo_connections_closed_no_request_total {}",
            self.connections_closed_no_request.load(Relaxed)
        );
        out.push_str("# HELP fwrepo_token_requests_rate_limited_total Token requests refused with 429, by limit.\n");
        out.push_str("# TYPE fwrepo_token_requests_rate_limited_total counter\n");
        for (i, by) in [LimitedBy::Client, LimitedBy::Credential].iter().enumerate() {
            let _ = writeln!(
                out,
                "fwrepo_token_requests_rate_limited_total{{limit=\"{}\"}} {}",
                by.as_str(),
                self.tokens_rate_limited[i].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP fwrepo_blob_facts_total Download-gate lookups of blob facts, by whether the cache answered.\n",
        );
        out.push_str("# TYPE fwrepo_blob_facts_total counter\n");
        let _ = writeln!(out, "fwrepo_blob_facts_total{{cache=\"hit\"}} {}", self.blob_facts_cached.load(Relaxed));
        let _ = writeln!(out, "fwrepo_blob_facts_total{{cache=\"miss\"}} {}", self.blob_facts_looked_up.load(Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revocation_age_counts_from_the_last_refresh_on_the_coarse_clock() {
        let m = Metrics::default();
        assert!(m.since_last_refresh() < Duration::from_secs(1), "made fresh");
        std::thread::sleep(Duration::from_millis(120));
        let age = m.since_last_refresh();
        // The coarse clock lags the precise one by at most a tick (10 ms at HZ=100).
        assert!(age >= Duration::from_millis(100) && age < Duration::from_secs(5), "{age:?}");
        m.refresh_succeeded();
        assert!(m.since_last_refresh() < Duration::from_millis(100), "fresh again");
    }
}
