//! `ServerConfig`: everything an operator tunes about the server, read from TOML.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

/// Server settings. Every field has a default, so an empty file is a valid configuration;
/// `deploy/fwrepo-server.toml` shows each one.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Seconds a client has to send a request's complete header block (slowloris guard).
    pub header_read_timeout_s: u64,
    /// Largest request header block in bytes (8 KiB to 1 MiB); larger ones are refused.
    pub max_header_bytes: usize,
    /// Seconds without any byte read or written after which a connection is closed.
    pub idle_timeout_s: u64,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most connections one client (an IPv4 address, an IPv6 /64) may hold at once; a further
    /// one is closed as soon as it is accepted, so one client cannot take every slot.
    pub max_connections_per_ip: usize,
    /// Seconds a connection may stay open with no request in progress, whatever else it sends
    /// (HTTP/2 PINGs or SETTINGS, bytes of an unfinished header block): then it is closed, after
    /// a GOAWAY on HTTP/2. Keep-alive connections between requests count as idle too.
    pub request_idle_timeout_s: u64,
    /// Seconds a client has to send a whole request body (`/v1/catalog/plan`, `/v1/tokens`),
    /// however steadily it trickles: a slower one is answered 408 and the connection closed.
    pub body_read_timeout_s: u64,
    /// Seconds in-flight requests get to finish after shutdown is asked for; connections still
    /// open then are cut.
    pub shutdown_grace_s: u64,
    /// Largest JSON request body (`/v1/catalog/plan`, `/v1/tokens`) in bytes.
    pub max_json_body_bytes: usize,
    /// Most HTTP/2 streams a client may open at once on one connection.
    pub h2_max_concurrent_streams: u32,
    /// Tokens whose signature check is cached.
    pub token_cache_capacity: usize,
    /// `max-age` in seconds of `timestamp.json` and other unversioned metadata. Versioned
    /// metadata (`N.root.json`, `V.snapshot.json`, …) never changes and is cached for a year.
    pub timestamp_max_age_s: u64,
    /// Audit log of gated downloads (JSON lines); none when absent.
    pub audit_log: Option<PathBuf>,
    /// Size in bytes at which the audit log is rotated to `<file>.1`.
    pub audit_log_max_bytes: u64,
    /// Rotated audit logs kept (`<file>.1` … `<file>.N`); older ones are deleted.
    pub audit_log_keep: usize,
    /// PEM certificate chain (leaf first) to serve HTTPS with; ALPN offers `h2` and
    /// `http/1.1`. Set together with `tls_key`; plain HTTP when both are absent.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of `tls_cert`. Refused when group or others may
    /// access the file.
    pub tls_key: Option<PathBuf>,
    /// Seconds between catching up with the writer: releases, records, revocations.
    pub refresh_interval_s: u64,
    /// Seconds revocation data may go without a successful refresh; past that, gated
    /// downloads answer 503 until one succeeds (metadata stays public) and `/readyz` says
    /// not ready. Default: 5 × `refresh_interval_s`. Must exceed `refresh_interval_s`.
    pub revocation_max_age_s: Option<u64>,
    /// Longest token life (`exp − iat`) accepted, in seconds: 1 to 86400 (24 h).
    pub token_max_lifetime_s: i64,
    /// `POST /v1/tokens`: which credentials earn a token, and its rate limits (`[tokens]`).
    pub tokens: TokenConfig,
    /// `POST /v1/blobs/<id>/deltas`: compression level, worker pool, queue bound and cache
    /// (`[deltas]`).
    pub deltas: DeltaConfig,
    /// Plain-HTTP (no TLS) HTTP/1.1 GET and HEAD requests are served by fwrepo's own
    /// connection loop, which sends blob bytes with `sendfile(2)` straight from the pack files;
    /// `false`: hyper serves every connection and copies them out of the mapping.
    pub sendfile: bool,
}

/// Settings of `POST /v1/blobs/<id>/deltas`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeltaConfig {
    /// zstd level of deltas computed on demand, 1 to 22 (publish precomputes at
    /// `fwrepo_chunk::delta::DEFAULT_LEVEL`). Default [`ON_DEMAND_LEVEL`].
    pub level: i32,
    /// Most deltas computed at once, each on a blocking thread (never on the async runtime's
    /// threads); 0 means one per core. Never more than the cores.
    pub workers: usize,
    /// Most delta requests with computations waiting for or holding a worker; one more is
    /// answered 503 with `Retry-After` at once instead of queueing without limit.
    pub max_queued_requests: usize,
    /// Bytes of computed deltas kept in memory, keyed by (base, target); oldest out first.
    pub cache_bytes: u64,
    /// `Retry-After` seconds of a 503 when the queue is full.
    pub retry_after_s: u64,
}

/// The default zstd level of deltas computed on demand: 3. Measured with
/// `cargo run --release -p fwrepo-server --example bench-deltas` (real GRUB and OVMF pairs and
/// synthetic ones, one core; figures in that example's doc comment): levels past 3 shrink the
/// deltas by at most 10–18% (and not at all on high-entropy images) for 4–100× the CPU, level 1
/// makes them up to half again as large. Precomputed deltas use 19: that CPU is spent once.
pub const ON_DEMAND_LEVEL: i32 = 3;

impl Default for DeltaConfig {
    fn default() -> Self {
        DeltaConfig {
            level: ON_DEMAND_LEVEL,
            workers: 0,
            max_queued_requests: 64,
            cache_bytes: 256 << 20,
            retry_after_s: 1,
        }
    }
}

impl DeltaConfig {
    /// The worker count: `workers`, or one per core when 0, at most the cores.
    pub fn worker_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.workers == 0 { cores } else { self.workers.min(cores) }
    }
}

/// Which credentials `POST /v1/tokens` accepts on their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TokenRequire {
    /// A serial alone (as strong as the serial is secret: it is printed on the machine), an
    /// agreement alone, or a partner credential.
    #[default]
    #[serde(rename = "serial")]
    Serial,
    /// An agreement id together with a serial it covers, or a partner credential; a serial or
    /// an agreement alone is refused.
    #[serde(rename = "serial+agreement")]
    SerialAndAgreement,
}

/// Settings of `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// `"serial"` (default) or `"serial+agreement"`.
    pub require: TokenRequire,
    /// Token requests one client (IPv4 address, IPv6 /64) may make per minute, sustained ...
    pub per_client_per_minute: u32,
    /// ... and at once after a quiet spell.
    pub per_client_burst: u32,
    /// Token requests naming one serial, agreement or partner credential per minute, from
    /// anywhere ...
    pub per_credential_per_minute: u32,
    /// ... and at once.
    pub per_credential_burst: u32,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            require: TokenRequire::Serial,
            per_client_per_minute: 60,
            per_client_burst: 20,
            per_credential_per_minute: 10,
            per_credential_burst: 10,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_read_timeout_s: 10,
            max_header_bytes: 16 * 1024,
            idle_timeout_s: 60,
            max_connections: 4096,
            max_connections_per_ip: 64,
            request_idle_timeout_s: 30,
            body_read_timeout_s: 10,
            shutdown_grace_s: 30,
            max_json_body_bytes: 256 * 1024,
            h2_max_concurrent_streams: 128,
            token_cache_capacity: 100_000,
            timestamp_max_age_s: 10,
            audit_log: None,
            audit_log_max_bytes: 64 << 20,
            audit_log_keep: 8,
            tls_cert: None,
            tls_key: None,
            refresh_interval_s: 5,
            revocation_max_age_s: None,
            token_max_lifetime_s: fwrepo_entitle::MAX_TOKEN_LIFETIME_S,
            tokens: TokenConfig::default(),
            deltas: DeltaConfig::default(),
            sendfile: true,
        }
    }
}

impl ServerConfig {
    /// Parses TOML text (`origin` names the file in errors) and checks the values.
    pub fn from_toml(origin: &str, text: &str) -> Result<ServerConfig, Error> {
        let config: ServerConfig =
            toml::from_str(text).map_err(|e| Error::Config { origin: origin.to_owned(), reason: e.to_string() })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let bad = |reason: &str| Err(Error::Config { origin: origin.to_owned(), reason: reason.to_owned() });
        if self.header_read_timeout_s == 0
            || self.idle_timeout_s == 0
            || self.request_idle_timeout_s == 0
            || self.body_read_timeout_s == 0
        {
            return bad("timeouts must be at least one second");
        }
        // hyper refuses read buffers below 8 KiB; a head of more than 1 MiB is no request
        // (and the plain HTTP/1.1 path keeps offsets into a head as 32-bit numbers).
        if !(8192..=1 << 20).contains(&self.max_header_bytes) {
            return bad("max_header_bytes must be from 8192 to 1048576");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.max_connections_per_ip == 0 {
            return bad("max_connections_per_ip must be at least 1");
        }
        let t = &self.tokens;
        if t.per_client_per_minute == 0
            || t.per_client_burst == 0
            || t.per_credential_per_minute == 0
            || t.per_credential_burst == 0
        {
            return bad("token rate limits must be at least 1");
        }
        if self.audit_log.is_some() && self.audit_log_max_bytes < 4096 {
            return bad("audit_log_max_bytes must be at least 4096");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key must be set together");
        }
        if self.refresh_interval_s == 0 {
            return bad("refresh_interval_s must be at least 1");
        }
        if self.revocation_max_age_s.is_some_and(|m| m <= self.refresh_interval_s) {
            return bad("revocation_max_age_s must be longer than refresh_interval_s");
        }
        let d = &self.deltas;
        if !(1..=22).contains(&d.level) {
            return bad("deltas.level must be 1 to 22");
        }
        if d.max_queued_requests == 0 {
            return bad("deltas.max_queued_requests must be at least 1");
        }
        if d.retry_after_s == 0 {
            return bad("deltas.retry_after_s must be at least 1");
        }
        if !(1..=fwrepo_entitle::MAX_TOKEN_LIFETIME_S).contains(&self.token_max_lifetime_s) {
            return bad("token_max_lifetime_s must be 1 to 86400");
        }
        Ok(())
    }

    /// Time between refreshes.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval_s)
    }

    /// How old revocation data may get before gated downloads fail closed.
    pub fn revocation_max_age(&self) -> Duration {
        Duration::from_secs(self.revocation_max_age_s.unwrap_or(self.refresh_interval_s.saturating_mul(5)))
    }

    pub(crate) fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_s)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }

    pub(crate) fn request_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.request_idle_timeout_s)
    }

    pub(crate) fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_s)
    }

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
}
