//! Byte checks on the request path, written so that the compiler vectorizes them.

/// Whether `pred` holds for any byte of `bytes`.
///
/// Checked 16 bytes at a time with no early exit inside a block, which the compiler turns into
/// vector compares where a byte-wise `any` stays a loop of branches: bearer tokens, request
/// targets and audit fields are checked on every request, and byte by byte those checks cost
/// more than the rest of the download gate.
#[inline(always)]
pub(crate) fn any_byte(bytes: &[u8], pred: impl Fn(u8) -> bool) -> bool {
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |m, &b| m | pred(b)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| pred(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_is_found_wherever_it_is() {
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100] {
            let clean = vec![b'a'; len];
            assert!(!any_byte(&clean, |b| b == b'x'), "len {len}");
            for at in 0..len {
                let mut dirty = clean.clone();
                dirty[at] = b'x';
                assert!(any_byte(&dirty, |b| b == b'x'), "at {at} of {len}");
            }
        }
    }
}
