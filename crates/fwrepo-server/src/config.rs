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
    /// Largest request header block in bytes; larger ones are refused.
    pub max_header_bytes: usize,
    /// Seconds without any byte read or written after which a connection is closed.
    pub idle_timeout_s: u64,
    /// Most connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_read_timeout_s: 10,
            max_header_bytes: 16 * 1024,
            idle_timeout_s: 60,
            max_connections: 4096,
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
        if self.header_read_timeout_s == 0 || self.idle_timeout_s == 0 {
            return bad("timeouts must be at least one second");
        }
        // hyper refuses read buffers below 8 KiB.
        if self.max_header_bytes < 8192 {
            return bad("max_header_bytes must be at least 8192");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
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

    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
}
