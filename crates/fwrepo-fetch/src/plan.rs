//! Range planning: which byte ranges of a blob to ask for, given its chunk index and the
//! chunks still needed. Pure functions, plus the running estimate of the peer's round-trip
//! time and bandwidth they are planned with.
//!
//! Adjacent needed chunks always form one range. Two ranges separated by a gap of chunks not
//! needed are merged when fetching the gap costs less than a request: `gap / bandwidth <
//! round trip`, i.e. the gap is shorter than the bandwidth-delay product (capped by
//! [`CostModel::max_gap`], since the bytes of a filled gap count on the wire too).

use std::ops::Range;
use std::sync::Mutex;
use std::time::Duration;

use fwrepo_chunk::ChunkIndex;

/// What a request costs, in time, against what a byte costs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Round-trip time of one request (time to the response head).
    pub rtt: Duration,
    /// Body bytes per second.
    pub bytes_per_sec: f64,
    /// Largest gap ever filled.
    pub max_gap: u64,
}

impl Default for CostModel {
    /// A guess until the first measurements: 20 ms and 100 Mbit/s. Gaps up to 16 KiB (a
    /// quarter of the default average chunk): past that, a filled gap costs more wire bytes
    /// than the head of another request saves, whatever the latency.
    fn default() -> Self {
        CostModel { rtt: Duration::from_millis(20), bytes_per_sec: 12.5e6, max_gap: 16 * 1024 }
    }
}

impl CostModel {
    /// Gaps strictly shorter than this are filled.
    pub fn gap_threshold(&self) -> u64 {
        let bdp = self.rtt.as_secs_f64() * self.bytes_per_sec.max(0.0);
        (if bdp.is_finite() { bdp as u64 } else { u64::MAX }).min(self.max_gap)
    }
}

/// One request to make: bytes `start..end` of the blob, covering chunks `chunks` of its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRange {
    pub start: u64,
    pub end: u64,
    pub chunks: Range<usize>,
}

/// Runs of adjacent needed chunks: the number of requests without any coalescing.
pub fn runs(needed: &[bool]) -> usize {
    needed.iter().enumerate().filter(|&(i, &n)| n && (i == 0 || !needed[i - 1])).count()
}

/// The ranges to fetch for the chunks of `index` marked in `needed` (one flag per chunk).
/// Never more ranges than [`runs`]; ranges are disjoint, in order, start and end on chunk
/// boundaries, and each needed chunk lies in exactly one.
pub fn coalesce(index: &ChunkIndex, needed: &[bool], model: &CostModel) -> Vec<PlannedRange> {
    assert_eq!(index.chunks.len(), needed.len(), "one flag per chunk");
    let threshold = model.gap_threshold();
    let mut out: Vec<PlannedRange> = Vec::new();
    for (i, (offset, &(_, len))) in index.offsets().enumerate() {
        if !needed[i] {
            continue;
        }
        let end = offset + u64::from(len);
        match out.last_mut() {
            // Adjacent (gap 0) or a gap worth filling.
            Some(last) if offset - last.end < threshold || offset == last.end => {
                last.end = end;
                last.chunks.end = i + 1;
            }
            _ => out.push(PlannedRange { start: offset, end, chunks: i..i + 1 }),
        }
    }
    out
}

/// The running estimate of a peer's round trip and bandwidth, updated from each request
/// (an exponentially weighted average, so one slow answer does not swing the plan).
#[derive(Debug)]
pub struct Estimator {
    model: Mutex<CostModel>,
}

/// Bodies shorter than this say more about latency than bandwidth; they update only the rtt.
const MIN_BANDWIDTH_SAMPLE: u64 = 64 * 1024;
const WEIGHT: f64 = 0.3;

impl Estimator {
    pub fn new(initial: CostModel) -> Estimator {
        Estimator { model: Mutex::new(initial) }
    }

    pub fn current(&self) -> CostModel {
        *self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request: time to its response head, body bytes, and time to read them.
    pub fn observe(&self, head_after: Duration, body_bytes: u64, body_time: Duration) {
        let mut m = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let rtt = m.rtt.as_secs_f64() * (1.0 - WEIGHT) + head_after.as_secs_f64() * WEIGHT;
        m.rtt = Duration::from_secs_f64(rtt);
        if body_bytes >= MIN_BANDWIDTH_SAMPLE && !body_time.is_zero() {
            let bw = body_bytes as f64 / body_time.as_secs_f64();
            m.bytes_per_sec = m.bytes_per_sec * (1.0 - WEIGHT) + bw * WEIGHT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fwrepo_chunk::Digest;

    fn index(lens: &[u32]) -> ChunkIndex {
        let chunks: Vec<_> = lens.iter().enumerate().map(|(i, &l)| (Digest::of(&i.to_le_bytes()), l)).collect();
        ChunkIndex { blob_len: lens.iter().map(|&l| u64::from(l)).sum(), chunks }
    }

    fn model(threshold: u64) -> CostModel {
        CostModel { rtt: Duration::from_secs(1), bytes_per_sec: threshold as f64, max_gap: u64::MAX }
    }

    #[test]
    fn adjacent_chunks_form_one_range_and_small_gaps_are_filled() {
        let idx = index(&[10, 10, 10, 10, 10, 100, 10]);
        let needed = [true, true, false, true, false, false, true];
        // No gap filling: the three runs.
        let r = coalesce(&idx, &needed, &model(0));
        assert_eq!(r.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), [(0, 20), (30, 40), (150, 160)]);
        // A 10-byte gap is worth filling at threshold 11, the 110-byte one is not.
        let r = coalesce(&idx, &needed, &model(11));
        assert_eq!(r.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), [(0, 40), (150, 160)]);
        assert_eq!(r[0].chunks, 0..4);
        assert_eq!(runs(&needed), 3);
        assert!(coalesce(&idx, &[false; 7], &model(1000)).is_empty());
    }

    #[test]
    fn the_estimate_follows_measurements() {
        let e = Estimator::new(CostModel::default());
        for _ in 0..30 {
            e.observe(Duration::from_millis(1), 10_000_000, Duration::from_millis(10));
        }
        let m = e.current();
        assert!(m.rtt < Duration::from_millis(2), "{m:?}");
        assert!((m.bytes_per_sec - 1e9).abs() < 1e8, "{m:?}");
        // 1 ms at 1 GB/s: a 1 MB bandwidth-delay product, capped at 16 KiB.
        assert_eq!(m.gap_threshold(), 16 * 1024);
        // At 50 ms and 1 Mbit/s the product (6 KB) is under the cap and decides.
        let slow = CostModel { rtt: Duration::from_millis(50), bytes_per_sec: 125_000.0, max_gap: 16 * 1024 };
        assert_eq!(slow.gap_threshold(), 6250);
    }
}
