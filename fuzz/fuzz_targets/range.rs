//! `Range` and `If-Range` headers are attacker input: planning must never panic, and every plan
//! must describe bytes inside the blob — ascending, disjoint, within the RFC's limits — with a
//! multipart length that matches what is sent.
#![no_main]

// The range planner is pure (std + bytes); compile it here without the server's RocksDB.
#[path = "../../crates/fwrepo-server/src/range.rs"]
#[allow(dead_code)]
mod range;

use libfuzzer_sys::fuzz_target;
use range::{MAX_RANGES, Multipart, RangePlan, plan};

const ETAG: &str = "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"";

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    // Lengths up to 1 TiB, small ones often.
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40) >> (data[8] % 40);
    let rest = &data[9..];
    let (range, if_range) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    match plan(Some(range), if_range, ETAG, len) {
        RangePlan::Full | RangePlan::Unsatisfiable => {}
        RangePlan::Single(r) => assert!(r.start < r.end && r.end <= len, "{r:?} of {len}"),
        RangePlan::Multi(rs) => {
            assert!(rs.len() >= 2 && rs.len() <= MAX_RANGES, "{} ranges", rs.len());
            for r in &rs {
                assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
            }
            for w in rs.windows(2) {
                assert!(w[0].end < w[1].start, "not ascending, disjoint and apart: {rs:?}");
            }
            let total: u64 = rs.iter().map(|r| r.end - r.start).sum();
            assert!(total <= len);
            let m = Multipart::new("b".repeat(40), &rs, len, "application/octet-stream");
            let sent: u64 =
                m.parts.iter().map(|(h, r)| h.len() as u64 + (r.end - r.start)).sum::<u64>() + m.trailer.len() as u64;
            assert_eq!(m.content_length(), sent);
        }
    }
});
