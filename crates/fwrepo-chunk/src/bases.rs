//! Choosing base chunks for chunk-pair deltas.
//!
//! The client (and `fwrepo publish`, which precomputes the deltas clients will ask for) must
//! pick the same base for a target chunk, so the rule lives here, once:
//!
//! 1. Target chunks whose id the seed holds need no delta. Of those matches, the longest chain
//!    whose seed positions increase in target order are the *anchors* (a chunk that moved is
//!    still copied, but does not anchor).
//! 2. Each run of unmatched target chunks lies between two anchors (or the start / end). The
//!    seed chunks between the corresponding seed anchors are the run's candidates. When the
//!    counts agree they pair one to one; otherwise each target chunk takes the candidate whose
//!    byte span (measured from the start of the candidates) contains the target chunk's
//!    midpoint (measured from the start of the run), the last candidate when it lies beyond.
//! 3. A target chunk with no candidate goes without a base.

use std::collections::HashMap;

use crate::ChunkId;

/// For each chunk of `target`: `None` when `seed` holds it (copy it) or when no candidate
/// exists, otherwise the seed chunk to encode it against.
pub fn choose_bases(target: &[(ChunkId, u32)], seed: &[(ChunkId, u32)]) -> Vec<Option<ChunkId>> {
    let mut first_pos: HashMap<ChunkId, usize> = HashMap::with_capacity(seed.len());
    for (j, (id, _)) in seed.iter().enumerate() {
        first_pos.entry(*id).or_insert(j);
    }
    let held: Vec<Option<usize>> = target.iter().map(|(id, _)| first_pos.get(id).copied()).collect();

    let anchors = anchors(&held);

    let mut out = vec![None; target.len()];
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
        if candidates.len() == run.len() {
            for (k, t) in run.clone().enumerate() {
                out[t] = Some(candidates[k].0);
            }
            continue;
        }
        let mut cand_ends = Vec::with_capacity(candidates.len());
        let mut pos = 0u64;
        for (_, len) in candidates {
            pos += u64::from(*len);
            cand_ends.push(pos);
        }
        let mut rel = 0u64;
        for t in run {
            let len = u64::from(target[t].1);
            let mid = rel + len / 2;
            rel += len;
            let k = cand_ends.partition_point(|&end| end <= mid).min(candidates.len() - 1);
            out[t] = Some(candidates[k].0);
        }
    }
    out
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
    fn id(name: &str) -> Option<ChunkId> {
        Some(Digest::of(name.as_bytes()))
    }

    #[test]
    fn patched_chunk_takes_the_seed_chunk_in_its_place() {
        let seed = [c("a", 10), c("b", 10), c("c", 10)];
        let target = [c("a", 10), c("b2", 10), c("c", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![None, id("b"), None]);
    }

    #[test]
    fn runs_of_different_counts_pair_by_offset() {
        let seed = [c("a", 10), c("x", 100), c("y", 100), c("z", 100), c("e", 10)];
        let target = [c("a", 10), c("p", 150), c("q", 150), c("e", 10)];
        // p's midpoint 75 lies in x (0..100), q's midpoint 225 in z (200..300).
        assert_eq!(choose_bases(&target, &seed), vec![None, id("x"), id("z"), None]);
    }

    #[test]
    fn a_run_beyond_the_candidates_takes_the_last_one() {
        let seed = [c("a", 10), c("x", 10)];
        let target = [c("a", 10), c("p", 30), c("q", 30)];
        assert_eq!(choose_bases(&target, &seed), vec![None, id("x"), id("x")]);
    }

    #[test]
    fn an_insert_between_adjacent_anchors_has_no_base() {
        let seed = [c("a", 10), c("b", 10)];
        let target = [c("a", 10), c("new", 10), c("b", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![None, None, None]);
    }

    #[test]
    fn unrelated_seed_offers_its_chunks_by_position() {
        let seed = [c("s1", 10), c("s2", 10)];
        let target = [c("t1", 10), c("t2", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![id("s1"), id("s2")]);
        assert!(choose_bases(&target, &[]).iter().all(Option::is_none));
    }

    #[test]
    fn a_chunk_moved_backwards_does_not_anchor() {
        let seed = [c("a", 10), c("b", 10), c("c", 10), c("d", 10)];
        // d moved to the front; b changed. Anchors: a (seed 0) and c (seed 2); d is copied.
        let target = [c("d", 10), c("a", 10), c("b2", 10), c("c", 10)];
        assert_eq!(choose_bases(&target, &seed), vec![None, None, id("b"), None]);
        assert_eq!(shared_chunks(&target, &seed), 3);
    }
}
