//! Bearer tokens are attacker input: verifying any byte string must never panic, and nothing
//! the fuzzer makes (it holds no signing key) may verify.
#![no_main]

use std::sync::LazyLock;

use fwrepo_entitle::{IssuerKeyring, Revocations, Scope, UnixTime, Verifier};
use libfuzzer_sys::fuzz_target;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let ring = IssuerKeyring::from_seeds(&[[7u8; 32], [9u8; 32]]).expect("fixed seeds make a keyring");
    Verifier::new(ring.verifying_keys(), Revocations::new(), "fwrepo")
});

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verdict = VERIFIER.verify(&token, UnixTime(1_800_000_000), Scope::Download, &["ProLiant DL380 Gen10"]);
    assert!(verdict.is_err(), "a token the fuzzer made verified: {token:?}");
});
