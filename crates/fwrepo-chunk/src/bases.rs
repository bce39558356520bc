//! Choosing base chunks for chunk-pair deltas.
//!
//! The client (and `fwrepo publish`, which precomputes the deltas clients will ask for) must
//! pick the same bases for a target chunk, so the rule lives here, once:
//!
//! 1. Target chunks whose id the seed holds need no delta. Of those matches, the longest chain
//!    whose seed positions increase in target order are the *anchors* (a chunk that moved is
//!    still copied, but does not anchor).
//! 2. Each run of unmatched target chunks lies between two anchors (or the start / end). The
//!    seed chunks between the corresponding seed anchors are the run's candidates.
//! 3. A target chunk's bases are the candidates its byte span overlaps when the run and the
//!    candidates are laid side by side from their starts, and those it overlaps when they are
//!    laid side by side from their ends. An edit changes bytes at one place: content before it
//!    keeps its distance from the run's start, content after it its distance from the run's
//!    end, so a chunk cut across an insert or a removal finds both of its halves. The bases go
//!    in seed order (the prefix the delta is made against is their concatenation), at most
//!    [`MAX_BASES`] of them and [`MAX_BASE_BYTES`] in all, taken alternately from the two
//!    alignments, nearest the edges of the run first, when there are more.
//! 4. A target chunk with no candidate goes without a base.

use std::collections::HashMap;

use crate::ChunkId;
use crate::delta::{MAX_BASE_BYTES, MAX_BASES};

/// For each chunk of `target`: no bases when `seed` holds it (copy it) or when no candidate
/// exists, otherwise the seed chunks, in seed order, to encode it against.
pub fn choose_bases(target: &[(ChunkId, u32)], seed: &[(ChunkId, u32)]) -> Vec<Vec<ChunkId>> {
    let mut first_pos: HashMap<ChunkId, usize> = HashMap::with_capacity(seed.len());
    for (j, (id, _)) in seed.iter().enumerate() {
        first_pos.entry(*id).or_insert(j);
    }
    let held: Vec<Option<usize>> = target.iter().map(|(id, _)| first_pos.get(id).copied()).collect();

    let anchors = anchors(&held);

    let mut out = vec![Vec::new(); target.len()];
    let mut i = 0;
    while i < target.len() {
        if held[i].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < target.len() && held[i].is_none() {
            i += 1;
        }
        let run = start..i;
        // Seed candidates lie strictly between the anchors around the run.
        let before = anchors.iter().rev().find(|&&(ti, _)| ti < run.start).map(|&(_, sj)| sj + 1).unwrap_or(0);
        let after = anchors.iter().find(|&&(ti, _)| ti >= run.end).map(|&(_, sj)| sj).unwrap_or(seed.len());
        if before >= after {
            continue;
        }
        let candidates = &seed[before..after];
        let cand = spans(candidates);
        let cand_len = cand.last().map_or(0, |s| s.1);
        let targets = spans(&target[run.clone()]);
        let run_len = targets.last().map_or(0, |s| s.1);
        for (t, &(a, b)) in run.zip(&targets) {
            // Candidates overlapping [a, b) from the start, and [a, b) measured from the end.
            let from_start: Vec<usize> = (0..candidates.len()).filter(|&k| cand[k].0 < b && a < cand[k].1).collect();
            let (ea, eb) = (run_len - b, run_len - a);
            let from_end: Vec<usize> = (0..candidates.len())
                .rev()
                .filter(|&k| cand_len - cand[k].1 < eb && ea < cand_len - cand[k].0)
                .collect();
            out[t] = pick(&from_start, &from_end, candidates);
        }
    }
    out
}

/// Start and end offsets of each chunk, from the first one's start.
fn spans(chunks: &[(ChunkId, u32)]) -> Vec<(u64, u64)> {
    let mut pos = 0u64;
    chunks
        .iter()
        .map(|(_, len)| {
            let s = pos;
            pos += u64::from(*len);
            (s, pos)
        })
        .collect()
}

/// Up to the limits, alternately from each list (each nearest its edge of the run first),
/// returned in seed order.
fn pick(from_start: &[usize], from_end: &[usize], candidates: &[(ChunkId, u32)]) -> Vec<ChunkId> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    let (mut s, mut e) = (from_start.iter(), from_end.iter());
    loop {
        let (ns, ne) = (s.next(), e.next());
        if ns.is_none() && ne.is_none() {
            break;
        }
        for &k in ns.into_iter().chain(ne) {
            let len = u64::from(candidates[k].1);
            if chosen.contains(&k) || chosen.len() >= MAX_BASES || bytes + len > MAX_BASE_BYTES as u64 {
                continue;
            }
            bytes += len;
            chosen.push(k);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|k| candidates[k].0).collect()
}

/// The anchors: the longest chain of matches whose seed positions increase in target order
/// (a longest increasing subsequence, O(n log n)), as (target position, seed position).
fn anchors(held: &[Option<usize>]) -> Vec<(usize, usize)> {
    let matches: Vec<(usize, usize)> = held.iter().enumerate().filter_map(|(i, j)| j.map(|j| (i, j))).collect();
    // tails[k]: index into `matches` of the smallest seed position ending a chain of k + 1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; matches.len()];
    for (m, &(_, j)) in matches.iter().enumerate() {
        let k = tails.partition_point(|&t| matches[t].1 < j);
        prev[m] = k.checked_sub(1).map(|p| tails[p]);
        if k == tails.len() {
            tails.push(m);
        } else {
            tails[k] = m;
        }
    }
    let mut chain = Vec::with_capacity(tails.len());
    let mut at = tails.last().copied();
    while let Some(m) = at {
        chain.push(matches[m]);
        at = prev[m];
    }
    chain.reverse();
    chain
}

/// How many of `target`'s chunks `seed` holds: the measure for picking the seed that looks
/// most like an earlier version of the target.
pub fn shared_chunks(target: &[(ChunkId, u32)], seed: &[(ChunkId, u32)]) -> usize {
    let have: std::collections::HashSet<&ChunkId> = seed.iter().map(|(id, _)| id).collect();
    target.iter().filter(|(id, _)| have.contains(id)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn c(name: &str, len: u32) -> (ChunkId, u32) {
        (Digest::of(name.as_bytes()), len)
    }
    fn ids(names: &[&str]) -> Vec<ChunkId> {
        names.iter().map(|n| Digest::of(n.as_bytes())).collect()
    }

    #[test]
    fn patched_chunk_takes_the_seed_chunk_in_its_place() {
        let seed = [c("a", 10), c("b", 10), c("c", 10)];
        let target = [c("a", 10), c("b2", 10), c("c", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![vec![], ids(&["b"]), vec![]]);
    }

    #[test]
    fn runs_of_different_counts_take_what_they_overlap_from_either_end() {
        let seed = [c("a", 10), c("x", 100), c("y", 100), c("z", 100), c("e", 10)];
        let target = [c("a", 10), c("p", 150), c("q", 150), c("e", 10)];
        // From the start p covers 0..150 (x, y), q 150..300 (y, z); from the end the same.
        assert_eq!(choose_bases(&target, &seed), vec![vec![], ids(&["x", "y"]), ids(&["y", "z"]), vec![]]);
    }

    #[test]
    fn chunk_cut_across_a_removal_takes_both_halves() {
        // x | y | z became m, where m is x's head and z's tail: from the start m lies on x, from
        // the end on z.
        let seed = [c("a", 10), c("x", 100), c("y", 100), c("z", 100), c("e", 10)];
        let target = [c("a", 10), c("m", 100), c("e", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![vec![], ids(&["x", "z"]), vec![]]);
    }

    #[test]
    fn chunks_cut_across_an_insert_find_the_seed_on_their_side() {
        // x became p | q | r: p starts like x, r ends like x, q is new bytes in the middle.
        let seed = [c("a", 10), c("x", 100), c("e", 10)];
        let target = [c("a", 10), c("p", 60), c("q", 60), c("r", 60), c("e", 10)];
        let got = choose_bases(&target, &seed);
        assert_eq!(got[1], ids(&["x"]));
        assert_eq!(got[3], ids(&["x"]));
    }

    #[test]
    fn a_run_beyond_the_candidates_still_reaches_them_from_one_end() {
        let seed = [c("a", 10), c("x", 10)];
        let target = [c("a", 10), c("p", 30), c("q", 30)];
        assert_eq!(choose_bases(&target, &seed), vec![vec![], ids(&["x"]), ids(&["x"])]);
    }

    #[test]
    fn an_insert_between_adjacent_anchors_has_no_base() {
        let seed = [c("a", 10), c("b", 10)];
        let target = [c("a", 10), c("new", 10), c("b", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![vec![], vec![], vec![]]);
    }

    #[test]
    fn unrelated_seed_offers_its_chunks_by_position() {
        let seed = [c("s1", 10), c("s2", 10)];
        let target = [c("t1", 10), c("t2", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![ids(&["s1"]), ids(&["s2"])]);
        assert!(choose_bases(&target, &[]).iter().all(Vec::is_empty));
    }

    #[test]
    fn a_chunk_moved_backwards_does_not_anchor() {
        let seed = [c("a", 10), c("b", 10), c("c", 10), c("d", 10)];
        // d moved to the front; b changed. Anchors: a (seed 0) and c (seed 2); d is copied.
        let target = [c("d", 10), c("a", 10), c("b2", 10), c("c", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![vec![], vec![], ids(&["b"]), vec![]]);
        assert_eq!(shared_chunks(&target, &seed), 3);
    }

    #[test]
    fn bases_stay_within_the_protocol_limits_and_keep_both_edges() {
        // One big target chunk over many small seed chunks.
        let seed: Vec<_> = (0..40).map(|n| c(&format!("s{n}"), 1000)).collect();
        let target = [c("t", 40_000)];
        let got = &choose_bases(&target, &seed)[0];
        assert_eq!(got.len(), MAX_BASES);
        assert_eq!(got.first(), Some(&seed[0].0));
        assert_eq!(got.last(), Some(&seed[39].0));
        let big: Vec<_> = (0..6).map(|n| c(&format!("b{n}"), 300 << 10)).collect();
        let got = &choose_bases(&[c("t", 2 << 20)], &big)[0];
        let bytes: u64 = got.iter().map(|id| u64::from(big.iter().find(|b| b.0 == *id).unwrap().1)).sum();
        assert!(bytes <= MAX_BASE_BYTES as u64 && got.len() == 3, "{} bases, {bytes} bytes", got.len());
    }
}
