//! Abuse limits keyed by client: the rate limits of `POST /v1/tokens` (per client address and
//! per credential, GCRA through `governor`), the bound on how many of those refusals reach the
//! audit log, and the client key shared with the per-address connection cap.
//!
//! A serial number is a bearer credential printed on the machine: the limits make guessing one
//! slow, they do not make it impossible. `[tokens] require = "serial+agreement"` is the
//! stronger policy (see `ServerConfig::tokens`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fwrepo_store::Digest;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::TokenConfig;

/// The key a client is counted under: its IPv4 address, or the /64 of its IPv6 address (one
/// host usually holds a whole /64). An IPv4-mapped IPv6 address counts as the IPv4 one.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Which limit refused a token request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitedBy {
    Client,
    Credential,
}

impl LimitedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitedBy::Client => "client",
            LimitedBy::Credential => "credential",
        }
    }
}

/// A refusal: which limit, and how long until the next request could pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimited {
    pub by: LimitedBy,
    pub retry_after: Duration,
}

/// Keys kept before stale ones are dropped (each costs a few dozen bytes).
const PRUNE_AT: usize = 100_000;

/// The token request limiters.
pub(crate) struct TokenLimits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by the BLAKE3 of `kind:value`, so no plain credential stays in memory.
    per_credential: DefaultKeyedRateLimiter<Digest>,
    /// At most one audited refusal per client a minute ...
    audit_per_client: DefaultKeyedRateLimiter<IpAddr>,
    /// ... and ten a second overall, so a flood cannot rotate real records out of the log.
    audit_overall: DefaultDirectRateLimiter,
    checks: AtomicU64,
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    let per_minute = per_minute.max(1);
    let period = Duration::from_secs(60) / per_minute;
    Quota::with_period(period)
        .expect("a minute divided by a u32 is never zero")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"))
}

impl TokenLimits {
    pub(crate) fn new(config: &TokenConfig) -> TokenLimits {
        TokenLimits {
            per_client: RateLimiter::keyed(quota(config.per_client_per_minute, config.per_client_burst)),
            per_credential: RateLimiter::keyed(quota(config.per_credential_per_minute, config.per_credential_burst)),
            audit_per_client: RateLimiter::keyed(quota(1, 1)),
            audit_overall: RateLimiter::direct(quota(600, 10)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one token request from `client`; checked before its body is read.
    pub(crate) fn check_client(&self, client: IpAddr) -> Result<(), RateLimited> {
        self.prune();
        self.per_client.check_key(&client_key(client)).map_err(|not_until| RateLimited {
            by: LimitedBy::Client,
            retry_after: not_until.wait_time_from(self.per_client.clock().now()),
        })
    }

    /// Counts one request for each credential named (`kind` such as `serial`, and its value).
    pub(crate) fn check_credentials(&self, credentials: &[(&str, &str)]) -> Result<(), RateLimited> {
        for (kind, value) in credentials {
            let mut keyed = Vec::with_capacity(kind.len() + 1 + value.len());
            keyed.extend_from_slice(kind.as_bytes());
            keyed.push(b':');
            keyed.extend_from_slice(value.as_bytes());
            self.per_credential.check_key(&Digest::of(&keyed)).map_err(|not_until| RateLimited {
                by: LimitedBy::Credential,
                retry_after: not_until.wait_time_from(self.per_credential.clock().now()),
            })?;
        }
        Ok(())
    }

    /// Whether a refusal for `client` should be written to the audit log now.
    pub(crate) fn audit_refusal(&self, client: IpAddr) -> bool {
        self.audit_per_client.check_key(&client_key(client)).is_ok() && self.audit_overall.check().is_ok()
    }

    /// Drops keys whose state is back to fresh, every 1024 checks once many are kept.
    fn prune(&self) {
        if !self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(1024) {
            return;
        }
        for limiter in [&self.per_client, &self.audit_per_client] {
            if limiter.len() > PRUNE_AT {
                limiter.retain_recent();
            }
        }
        if self.per_credential.len() > PRUNE_AT {
            self.per_credential.retain_recent();
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_burst_past_the_quota_is_refused_with_a_wait() {
        let config = TokenConfig { per_client_per_minute: 60, per_client_burst: 3, ..TokenConfig::default() };
        let limits = TokenLimits::new(&config);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_client(ip).unwrap();
        }
        let refused = limits.check_client(ip).unwrap_err();
        assert_eq!(refused.by, LimitedBy::Client);
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1));
        // Another client is not affected.
        limits.check_client("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
    }
}
