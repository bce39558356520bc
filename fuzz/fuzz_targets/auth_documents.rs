//! Mirrors parse `auth/issuers.json` and `auth/revocations.json` after a sync: the parsers must
//! never panic, and whatever parses must survive a round trip through its own encoding.
#![no_main]

use fwrepo_entitle::{Revocations, VerifyingKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = VerifyingKeys::from_jwks(data) {
        let again = VerifyingKeys::from_jwks(&keys.to_jwks_bytes()).expect("own JWK Set parses");
        assert_eq!(again.len(), keys.len());
    }
    if let Ok(revs) = Revocations::from_json(data) {
        let again = Revocations::from_json(&revs.to_json_bytes()).expect("own revocation list parses");
        assert_eq!(again.len(), revs.len());
    }
});
