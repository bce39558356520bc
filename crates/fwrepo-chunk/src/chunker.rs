//! Content-defined chunking: FastCDC 2020 (normalization level 1) with a repository's sizes.
//!
//! The streaming ingest and a client chunking the files it already holds must find the same
//! boundaries, so both go through [`Chunker::next_len`]: given at least `max_size` bytes (or the
//! rest of the input), the next boundary depends only on those bytes.

use std::ops::Range;

use fastcdc::v2020::{self, Normalization};
use serde::{Deserialize, Serialize};

use crate::Error;

/// FastCDC (2020 variant, normalization level 1) sizes. They decide every chunk boundary, so
/// a store records them once at `init` and never chunks with anything else, and a client
/// chunks its seeds with the sizes the repository publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 }
    }
}

impl ChunkerParams {
    /// Checks the sizes against what FastCDC 2020 supports.
    pub fn validate(&self) -> Result<(), Error> {
        use fastcdc::v2020 as f;
        let bad = |reason: String| Err(Error::ChunkerParams { reason });
        let (min, avg, max) = (self.min_size as usize, self.avg_size as usize, self.max_size as usize);
        if !(f::MINIMUM_MIN..=f::MINIMUM_MAX).contains(&min) {
            return bad(format!("min_size {min} outside {}..={}", f::MINIMUM_MIN, f::MINIMUM_MAX));
        }
        if !(f::AVERAGE_MIN..=f::AVERAGE_MAX).contains(&avg) {
            return bad(format!("avg_size {avg} outside {}..={}", f::AVERAGE_MIN, f::AVERAGE_MAX));
        }
        if !(f::MAXIMUM_MIN..=f::MAXIMUM_MAX).contains(&max) {
            return bad(format!("max_size {max} outside {}..={}", f::MAXIMUM_MIN, f::MAXIMUM_MAX));
        }
        if !(min < avg && avg < max) {
            return bad(format!("sizes must satisfy min < avg < max, got {min}/{avg}/{max}"));
        }
        if !(min.is_multiple_of(2) && avg.is_multiple_of(2) && max.is_multiple_of(2)) {
            return bad("sizes must be even".into());
        }
        Ok(())
    }
}

/// A FastCDC 2020 chunker with fixed sizes.
#[derive(Clone, Debug)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Chunker {
    /// A chunker for `params`, which must have passed [`ChunkerParams::validate`].
    pub fn new(params: ChunkerParams) -> Chunker {
        let (min, avg, max) = (params.min_size as usize, params.avg_size as usize, params.max_size as usize);
        let (mask_s, mask_l) = v2020::select_masks(avg, Normalization::Level1);
        Chunker { min, avg, max, mask_s, mask_l }
    }

    /// The largest chunk this chunker makes.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// The length of the chunk that starts at `data[0]`. `data` must hold at least
    /// `max_size` bytes, or else be all that is left of the input.
    pub fn next_len(&self, data: &[u8]) -> usize {
        let window = &data[..data.len().min(self.max)];
        let (_, len) = v2020::cut(
            window,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        // `cut` answers 0 only for empty input; never loop forever on a caller's mistake.
        len.max(window.len().min(1))
    }

    /// The chunks of a complete in-memory input, as byte ranges.
    pub fn chunks<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = Range<usize>> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= data.len() {
                return None;
            }
            let len = self.next_len(&data[pos..]);
            let range = pos..pos + len;
            pos += len;
            Some(range)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_input_within_size_bounds() {
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let c = Chunker::new(ChunkerParams::default());
        let chunks: Vec<_> = c.chunks(&data).collect();
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, data.len());
        for w in chunks.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &chunks[..chunks.len() - 1] {
            assert!(r.len() >= 16 * 1024 && r.len() <= 256 * 1024, "{r:?}");
        }
    }

    #[test]
    fn invalid_sizes_are_refused() {
        assert!(ChunkerParams::default().validate().is_ok());
        for (min, avg, max) in
            [(16, 64, 256), (64 * 1024, 16 * 1024, 256 * 1024), (16 * 1024 + 1, 64 * 1024, 256 * 1024)]
        {
            let p = ChunkerParams { min_size: min, avg_size: avg, max_size: max };
            assert!(matches!(p.validate(), Err(Error::ChunkerParams { .. })), "{p:?}");
        }
    }

    #[test]
    fn empty_input_has_no_chunks() {
        let c = Chunker::new(ChunkerParams::default());
        assert_eq!(c.chunks(&[]).count(), 0);
    }
}
