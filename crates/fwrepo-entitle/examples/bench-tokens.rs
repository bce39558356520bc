//! Token verification throughput on one thread: full Ed25519 verification against cache hits.
//!
//! Prints `uncached_verify_per_s = N` and `cached_verify_per_s = N`.
//! Run with `cargo run --release -p fwrepo-entitle --example bench-tokens [-- SECONDS]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fwrepo_entitle::{
    Issuer, IssuerConfig, IssuerKeyring, ModelSet, Revocations, Scope, Subject, TokenCache, UnixTime, Verifier,
};

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);

    let keyring = IssuerKeyring::generate().expect("random key");
    let verifier = Verifier::new(keyring.verifying_keys(), revocations(), "fwrepo");
    let issuer = Issuer::new(IssuerConfig::new("https://origin.example", "fwrepo"), keyring).expect("issuer");
    let now = UnixTime::now();
    let models = ModelSet::parse_list("ProLiant DL380 Gen9;ProLiant DL360 Gen9").expect("models");
    let subject: Subject = "partner:bench".parse().expect("subject");
    let token = issuer.mint(subject, Scope::Download, models, None, now).expect("token").token;
    let blob = ["ProLiant DL380 Gen9"];

    let uncached = rate(budget, || {
        black_box(verifier.verify(black_box(&token), now, Scope::Download, &blob)).expect("genuine token");
    });
    let cache = TokenCache::new(10_000);
    let cached = rate(budget, || {
        black_box(cache.verify(&verifier, black_box(&token), now, Scope::Download, &blob)).expect("genuine token");
    });
    println!("token_bytes = {}", token.len());
    println!("uncached_verify_per_s = {uncached:.0}");
    println!("cached_verify_per_s = {cached:.0}");
}

/// A revocation list of realistic size, so hits pay for real lookups.
fn revocations() -> Revocations {
    let mut r = Revocations::new();
    for i in 0..1000 {
        r.revoke_token(fwrepo_entitle::Jti::new(&format!("revoked-{i}")).expect("jti"), UnixTime(0));
        r.revoke_subject(format!("serial:S{i}").parse().expect("subject"), UnixTime(0));
    }
    r
}

/// Calls `f` in batches until `budget` has passed; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        for _ in 0..100 {
            f();
        }
        n += 100;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return n as f64 / elapsed.as_secs_f64();
        }
    }
}
