//! Properties over random input: nothing but a genuine token verifies.

use fwrepo_entitle::{Revocations, Scope};
use proptest::prelude::*;

use crate::support::*;

proptest! {
    #[test]
    fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(verifier(Revocations::new()).verify(&token, NOW, Scope::Download, &["DL380 Gen9"]).is_err());
    }

    #[test]
    fn random_segments_never_verify(
        h in proptest::collection::vec(any::<u8>(), 0..80),
        p in proptest::collection::vec(any::<u8>(), 0..300),
        s in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let token = format!("{}.{}.{}", b64(&h), b64(&p), b64(&s));
        prop_assert!(verifier(Revocations::new()).authenticate(&token, NOW).is_err());
    }

    #[test]
    fn well_formed_tokens_with_random_signatures_never_verify(sig in proptest::collection::vec(any::<u8>(), 64)) {
        let genuine = download_token().token;
        let prefix = &genuine[..genuine.rfind('.').unwrap()];
        let token = format!("{prefix}.{}", b64(&sig));
        prop_assert!(verifier(Revocations::new()).authenticate(&token, NOW).is_err());
    }

    #[test]
    fn flipping_any_byte_of_a_genuine_token_breaks_it(i in 0usize..1000, bit in 0u8..7) {
        let genuine = download_token().token;
        let mut bytes = genuine.into_bytes();
        let i = i % bytes.len();
        bytes[i] ^= 1 << bit;
        if let Ok(token) = String::from_utf8(bytes) {
            prop_assert!(verifier(Revocations::new()).authenticate(&token, NOW).is_err());
        }
    }
}
