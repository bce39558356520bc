//! Chunk-pair deltas against honest and hostile delta endpoints in memory: fewer bytes than
//! ranges when honest; every lie a typed error with nothing wrong reaching the sink (which
//! re-hashes); ranges when the peer has no endpoint.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use fwrepo_chunk::Digest;
use fwrepo_chunk::bases::choose_bases;
use fwrepo_chunk::delta::{self, MAX_ENTRIES};
use fwrepo_fetch::{BaseSource, Bases, Error, FetchOptions, Fetcher, RemoteBlob, Transport};
use fwrepo_tuf::TargetPath;

use crate::responder::{DeltaPeer, Hostile};
use crate::support::{MemSink, MemStore, Origin, data, edited, index_of, quick, remote_blobs, seed_of};

/// Chunks held from an old version, offered as bases.
struct Held {
    chunks: HashMap<Digest, Vec<u8>>,
    /// Ids whose bytes are served damaged (a seed changed underneath).
    damaged: Vec<Digest>,
    reads: Mutex<u64>,
}

impl Held {
    fn of(old: &[u8]) -> Held {
        Held { chunks: seed_of(old), damaged: Vec::new(), reads: Mutex::new(0) }
    }
}

impl BaseSource for Held {
    fn read_base(&self, id: &Digest) -> Option<Bytes> {
        *self.reads.lock().unwrap() += 1;
        let mut b = self.chunks.get(id)?.clone();
        if self.damaged.contains(id) {
            b[0] ^= 0xff;
        }
        Some(Bytes::from(b))
    }
}

/// A v1 the client holds, a v2 it wants, and a peer with the delta endpoint.
struct Case {
    origin: Origin,
    v1: Vec<u8>,
    v2: Vec<u8>,
    peer: DeltaPeer,
    f: Fetcher<DeltaPeer>,
    blobs: Vec<RemoteBlob>,
}

async fn case_with(v1: Vec<u8>, v2: Vec<u8>, opts: FetchOptions) -> Case {
    let mut origin = Origin::new();
    origin.publish("fw/a-1.bin", &v1);
    let p: TargetPath = origin.publish("fw/a-2.bin", &v2);
    let peer = DeltaPeer::new(origin.peer.clone());
    peer.know(&v1);
    let f = Fetcher::new(peer.clone(), opts);
    let blobs = remote_blobs(&f, &origin.root_v1, &MemStore::default(), &[&p]).await;
    Case { origin, v1, v2, peer, f, blobs }
}

async fn case() -> Case {
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    case_with(v1, v2, quick()).await
}

impl Case {
    fn chosen(&self) -> Vec<Vec<Vec<Digest>>> {
        vec![choose_bases(&self.blobs[0].index.chunks, &index_of(&self.v1).chunks)]
    }

    /// Fetches v2 with v1's chunks held and offered as bases.
    async fn fetch(&self, held: &Held, sink: &MemSink) -> fwrepo_fetch::Result<fwrepo_fetch::FetchReport> {
        let bases = Bases { chosen: self.chosen(), source: held };
        self.f.fetch_deltas(&self.blobs, |id| held.chunks.contains_key(id), &bases, sink).await
    }

    /// The first chunk v2 lacks: the one every attack aims at.
    fn first_missing(&self, held: &Held) -> Digest {
        self.blobs[0].index.chunks.iter().map(|c| c.0).find(|id| !held.chunks.contains_key(id)).unwrap()
    }

    /// The last chunk v2 lacks (in the last frame of a reply naming them all).
    fn last_missing(&self, held: &Held) -> Digest {
        self.blobs[0].index.chunks.iter().map(|c| c.0).filter(|id| !held.chunks.contains_key(id)).last().unwrap()
    }

    fn delta_requests(&self) -> usize {
        self.peer.log().len()
    }
}

#[tokio::test]
async fn deltas_against_the_old_version_cost_far_fewer_wire_bytes_than_ranges() {
    let c = case().await;
    let held = Held::of(&c.v1);
    let sink = MemSink::default();
    let before = c.f.transport().wire().stats();
    let report = c.fetch(&held, &sink).await.unwrap();
    let after = c.f.transport().wire().stats();
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    let missing = c.blobs[0].index.chunks.iter().filter(|ch| !held.chunks.contains_key(&ch.0)).count();
    assert_eq!(report.chunks_fetched, missing as u64);
    // One request for every missing chunk, each named with the chunk in its place in v1.
    let log = c.peer.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].entries.len(), missing);
    assert!(log[0].entries.iter().all(|e| !e.bases.is_empty()), "{log:?}");
    assert_eq!(report.requests, 1);
    // Wire bytes are counted like every other answer, heads included.
    let s = report.blobs[0];
    assert_eq!(after.wire_bytes() - before.wire_bytes(), s.head_bytes + s.body_bytes);
    assert_eq!(s.delta_bytes, s.body_bytes);
    assert!(!report.deltas_unsupported);

    // The same update as ranges, from the same origin.
    let plain = c.origin.fetcher();
    let blobs = remote_blobs(&plain, &c.origin.root_v1, &MemStore::default(), &[&c.blobs[0].target.path]).await;
    let before = plain.transport().wire().stats();
    plain.fetch_chunks(&blobs, |id| held.chunks.contains_key(id), &MemSink::default()).await.unwrap();
    let ranges = plain.transport().wire().stats().wire_bytes() - before.wire_bytes();
    let deltas = s.head_bytes + s.body_bytes;
    // The edits add 3,016 new bytes (a random insertion and a patch); the chunks around them
    // are tens of KiB.
    assert!(deltas * 4 < ranges, "deltas {deltas} bytes, ranges {ranges} bytes");
    assert!(s.delta_bytes < 3 * 3016, "{}", s.delta_bytes);
}

/// Text-like bytes: zstd compresses them well.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(format!("entry {i:08} table {:04} flags 0x{:02x}\n", (i * 7) % 1000, i % 251).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

#[tokio::test]
async fn chunks_without_a_base_come_compressed_alone() {
    let c = case_with(text(1, 10_000), text(50_000, 200_000), quick()).await;
    let sink = MemSink::default();
    let report = c.f.fetch_deltas(&c.blobs, |_| false, &Bases::none(), &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &HashMap::new()), c.v2);
    assert!(c.peer.log()[0].entries.iter().all(|e| e.bases.is_empty()));
    assert!(report.delta_bytes * 3 < c.v2.len() as u64, "{} bytes of frames", report.delta_bytes);
    assert_eq!(report.requests, 1);
}

#[tokio::test]
async fn incompressible_base_less_chunks_switch_to_ranges_after_the_sample() {
    let mut origin = Origin::new();
    let (a, b) = (data(3, 400_000), data(4, 300_000));
    let pa = origin.publish("fw/a.bin", &a);
    let pb = origin.publish("fw/b.bin", &b);
    let peer = DeltaPeer::new(origin.peer.clone());
    let f = Fetcher::new(peer.clone(), quick());
    let blobs = remote_blobs(&f, &origin.root_v1, &MemStore::default(), &[&pa, &pb]).await;
    let sink = MemSink::default();
    let report = f.fetch_deltas(&blobs, |_| false, &Bases::none(), &sink).await.unwrap();
    assert_eq!(sink.assemble(&blobs[0], &HashMap::new()), a);
    assert_eq!(sink.assemble(&blobs[1], &HashMap::new()), b);
    // a went as raw frames (random bytes do not compress); b, planned after, as ranges.
    assert!(report.blobs[0].delta_bytes >= a.len() as u64);
    assert_eq!(report.blobs[1].delta_bytes, 0);
    assert!(report.blobs[1].body_bytes >= b.len() as u64);
    assert_eq!(peer.log().len(), 1);
    assert!(peer.inner.requests().iter().any(|r| r.range.is_some()));
}

#[tokio::test]
async fn batches_respect_the_byte_limit_and_the_entry_limit() {
    let opts = FetchOptions { delta_batch_bytes: 64 * 1024, ..quick() };
    let c = case_with(data(5, 10_000), data(6, 300_000), opts).await;
    let sink = MemSink::default();
    c.f.fetch_deltas(&c.blobs, |_| false, &Bases::none(), &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &HashMap::new()), c.v2);
    let lens: HashMap<Digest, u32> = c.blobs[0].index.chunks.iter().copied().collect();
    let log = c.peer.log();
    assert!(log.len() >= 5, "{} requests", log.len());
    for req in &log {
        let bytes: u64 = req.entries.iter().map(|e| u64::from(lens[&e.target])).sum();
        assert!(bytes <= 64 * 1024, "{bytes}");
    }
    assert_eq!(log.iter().map(|r| r.entries.len()).sum::<usize>(), c.blobs[0].index.chunks.len());

    // More chunks than one request may name: cut at MAX_ENTRIES.
    let c = case_with(data(7, 10_000), data(8, 10 << 20), quick()).await;
    assert!(c.blobs[0].index.chunks.len() > MAX_ENTRIES);
    let sink = MemSink::default();
    c.f.fetch_deltas(&c.blobs, |_| false, &Bases::none(), &sink).await.unwrap();
    assert_eq!(sink.len(), c.blobs[0].index.chunks.iter().map(|c| c.0).collect::<std::collections::HashSet<_>>().len());
    let log = c.peer.log();
    assert!(log.len() >= 2 && log.iter().all(|r| r.entries.len() <= MAX_ENTRIES), "{:?}", log.len());
}

#[tokio::test]
async fn a_chunk_cut_across_a_removal_is_asked_against_both_halves_and_costs_little() {
    // 60 KB removed from the middle of random bytes: the chunk across the cut starts like one
    // seed chunk and ends like another, so it is asked against several, in seed order.
    let v1 = data(21, 400_000);
    let v2 = [&v1[..150_000], &v1[210_000..]].concat();
    let c = case_with(v1, v2, quick()).await;
    let held = Held::of(&c.v1);
    let sink = MemSink::default();
    let report = c.fetch(&held, &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    let log = c.peer.log();
    let multi = log[0].entries.iter().filter(|e| e.bases.len() >= 2).count();
    assert!(multi >= 1, "{log:?}");
    // Nothing in v2 is new bytes: the frames cost a small fraction of the changed chunks.
    let changed: u64 =
        c.blobs[0].index.chunks.iter().filter(|ch| !held.chunks.contains_key(&ch.0)).map(|ch| u64::from(ch.1)).sum();
    assert!(report.blobs[0].delta_bytes * 20 < changed, "{} of {changed}", report.blobs[0].delta_bytes);
}

#[tokio::test]
async fn a_base_that_no_longer_hashes_to_its_id_is_not_named() {
    let c = case().await;
    let mut held = Held::of(&c.v1);
    let chosen = c.chosen();
    let victim = chosen[0].iter().flatten().next().copied().unwrap();
    held.damaged.push(victim);
    let sink = MemSink::default();
    c.fetch(&held, &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    let log = c.peer.log();
    assert!(log[0].entries.iter().all(|e| !e.bases.contains(&victim)), "the damaged base was named");
    assert!(log[0].entries.iter().any(|e| !e.bases.is_empty()));
}

#[tokio::test]
async fn a_base_the_peer_does_not_know_is_answered_without_it() {
    let c = case().await;
    // Bases from a version the peer never saw: it answers those entries as if none was named.
    let v0 = data(11, 300_000);
    let held = Held::of(&v0);
    let bases = Bases { chosen: vec![choose_bases(&c.blobs[0].index.chunks, &index_of(&v0).chunks)], source: &held };
    let sink = MemSink::default();
    c.f.fetch_deltas(&c.blobs, |_| false, &bases, &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &HashMap::new()), c.v2);
    assert!(c.peer.log()[0].entries.iter().any(|e| !e.bases.is_empty()));
}

#[tokio::test]
async fn a_truncated_reply_is_retried_for_the_frames_still_missing() {
    let c = case().await;
    let held = Held::of(&c.v1);
    // Cut inside the last frame: the frames before it are verified and kept.
    c.peer.hostile(Hostile::DropLastFrame, Some(1));
    let sink = MemSink::default();
    let report = c.fetch(&held, &sink).await.unwrap();
    assert_eq!(report.retries, 1);
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    let log = c.peer.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].entries.len(), 1, "only the missing frame is asked again");
    assert_eq!(log[1].entries[0], *log[0].entries.last().unwrap());
    // Bases were read once for the batch, not per attempt.
    let distinct: std::collections::HashSet<_> = log[0].entries.iter().flat_map(|e| e.bases.iter()).collect();
    assert_eq!(*held.reads.lock().unwrap(), distinct.len() as u64);
}

/// Runs one attack on every reply (on its first frame unless the attack is about the end of
/// the reply); returns the error and checks that the attacked chunk never reached the sink
/// (which re-hashes everything it gets).
async fn attack(h: Hostile, offer_bases: bool) -> (Error, usize) {
    let c = case().await;
    let held = Held::of(&c.v1);
    let victim = match h {
        Hostile::DropLastFrame => Some(c.last_missing(&held)),
        // Every frame is right; what follows them is not.
        Hostile::TrailingBytes => None,
        _ => Some(c.first_missing(&held)),
    };
    c.peer.hostile(h, None);
    let sink = MemSink::default();
    let err = if offer_bases {
        c.fetch(&held, &sink).await.unwrap_err()
    } else {
        c.f.fetch_deltas(&c.blobs, |id| held.chunks.contains_key(id), &Bases::none(), &sink).await.unwrap_err()
    };
    assert!(victim.is_none_or(|v| !sink.has(&v)), "the attacked chunk reached the sink");
    (err, c.delta_requests())
}

#[tokio::test]
async fn delta_that_decodes_to_the_wrong_bytes_is_a_chunk_mismatch() {
    let (err, requests) = attack(Hostile::WrongBytes, true).await;
    assert!(matches!(err, Error::ChunkMismatch { .. }), "{err}");
    assert_eq!(requests, 1, "wrong bytes are not asked for again from the same peer");
}

#[tokio::test]
async fn truncated_frame_is_refused() {
    let (err, requests) = attack(Hostile::Truncate { keep: 10 }, true).await;
    assert!(matches!(err, Error::FramesMissing { got: 0, .. }), "{err}");
    assert_eq!(requests, 3, "truncation is retried like a truncated range, then fails");
}

#[tokio::test]
async fn reply_with_fewer_frames_than_entries_is_refused() {
    let (err, _) = attack(Hostile::DropLastFrame, true).await;
    assert!(matches!(err, Error::FramesMissing { .. }), "{err}");
}

#[tokio::test]
async fn bytes_after_the_last_frame_are_refused() {
    let (err, _) = attack(Hostile::TrailingBytes, true).await;
    assert!(matches!(err, Error::TooLong { .. }), "{err}");
}

#[tokio::test]
async fn frame_header_claiming_a_huge_payload_is_refused_before_reading_it() {
    let (err, requests) = attack(Hostile::HugeHeader, true).await;
    let Error::BadDelta { reason, .. } = &err else { panic!("{err}") };
    assert!(reason.contains("claims"), "{reason}");
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn zstd_bomb_decoding_past_the_chunk_length_is_refused() {
    // 64 MiB of zeros in a few KiB: decoded into room for one chunk only.
    let (_, bomb) = delta::encode(&vec![0u8; 64 << 20], None, 1).unwrap();
    assert!(bomb.len() < 32 * 1024);
    let (err, _) = attack(Hostile::ZstdPayload(bomb.into()), false).await;
    assert!(matches!(err, Error::BadDelta { .. }), "{err}");
}

/// A zstd frame header (no checksum, no dictionary) and one RLE block of 128 KiB.
fn zstd_frame(fhd: u8, window: Option<u8>, content_size: Option<u64>) -> Bytes {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, fhd];
    f.extend(window);
    if let Some(n) = content_size {
        f.extend_from_slice(&n.to_le_bytes());
    }
    let block: u32 = 1 | (1 << 1) | ((128 * 1024) << 3);
    f.extend_from_slice(&block.to_le_bytes()[..3]);
    f.push(0);
    f.into()
}

#[tokio::test]
async fn zstd_frame_claiming_gigabytes_is_refused() {
    // 8-byte content size of 8 GiB, a 1 MiB window.
    let bomb = zstd_frame(0xc0, Some(10 << 3), Some(8 << 30));
    let (err, _) = attack(Hostile::ZstdPayload(bomb), false).await;
    assert!(matches!(err, Error::BadDelta { .. }), "{err}");
}

#[tokio::test]
async fn zstd_frame_asking_for_a_huge_window_is_refused() {
    // No content size, a 2 GiB window (window log 31).
    let bomb = zstd_frame(0x00, Some(21 << 3), None);
    let (err, _) = attack(Hostile::ZstdPayload(bomb), false).await;
    assert!(matches!(err, Error::BadDelta { .. }), "{err}");
}

#[tokio::test]
async fn frame_in_an_unknown_encoding_is_refused() {
    let (err, _) = attack(Hostile::EncodingByte(9), true).await;
    assert!(matches!(err, Error::BadDelta { .. }), "{err}");
}

#[tokio::test]
async fn frame_encoded_against_a_base_no_one_named_is_refused() {
    let (err, _) = attack(Hostile::BasedWithoutBase, false).await;
    let Error::BadDelta { reason, .. } = &err else { panic!("{err}") };
    assert!(reason.contains("base"), "{reason}");
}

#[tokio::test]
async fn a_peer_without_the_endpoint_gets_ranges_and_is_remembered() {
    let c = case().await;
    // The plain origin: no delta endpoint, a POST to it is 404.
    let f = c.origin.fetcher();
    let blobs = remote_blobs(&f, &c.origin.root_v1, &MemStore::default(), &[&c.blobs[0].target.path]).await;
    let held = Held::of(&c.v1);
    let bases = Bases { chosen: c.chosen(), source: &held };
    let sink = MemSink::default();
    let report = f.fetch_deltas(&blobs, |id| held.chunks.contains_key(id), &bases, &sink).await.unwrap();
    assert_eq!(sink.assemble(&blobs[0], &held.chunks), c.v2);
    assert!(report.deltas_unsupported && f.deltas_unsupported());
    assert_eq!(report.delta_bytes, 0);
    let posts = |f: &Fetcher<fwrepo_fetch::MemoryTransport>| {
        f.transport().requests().iter().filter(|r| r.path.ends_with("/deltas")).count()
    };
    assert_eq!(posts(&f), 1);
    assert!(f.transport().requests().iter().any(|r| r.range.is_some()));
    // Remembered for the peer: the next call asks for ranges straight away.
    f.fetch_deltas(&blobs, |_| false, &bases, &MemSink::default()).await.unwrap();
    assert_eq!(posts(&f), 1);
}

#[tokio::test]
async fn method_not_allowed_or_a_page_instead_of_frames_means_ranges() {
    for h in [Hostile::Status(405), Hostile::Status(501), Hostile::NotDeltas] {
        let c = case().await;
        c.peer.hostile(h.clone(), None);
        let held = Held::of(&c.v1);
        let sink = MemSink::default();
        let report = c.fetch(&held, &sink).await.unwrap();
        assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2, "{h:?}");
        assert!(report.deltas_unsupported, "{h:?}");
        assert_eq!(c.delta_requests(), 1, "{h:?}");
    }
}

#[tokio::test]
async fn a_batch_refused_as_too_large_is_fetched_as_ranges() {
    let c = case().await;
    c.peer.hostile(Hostile::Status(413), Some(1));
    let held = Held::of(&c.v1);
    let sink = MemSink::default();
    let report = c.fetch(&held, &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    assert!(!report.deltas_unsupported, "a 413 says nothing about the endpoint");
    assert!(c.peer.inner.requests().iter().any(|r| r.range.is_some()));
}

#[tokio::test]
async fn other_refusals_are_errors_not_fallbacks() {
    for status in [400, 403] {
        let c = case().await;
        c.peer.hostile(Hostile::Status(status), None);
        let held = Held::of(&c.v1);
        let err = c.fetch(&held, &MemSink::default()).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err}");
        assert_eq!(c.delta_requests(), 1);
    }
}

#[tokio::test]
async fn no_deltas_option_sends_no_delta_request() {
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    let c = case_with(v1, v2, FetchOptions { deltas: false, ..quick() }).await;
    let held = Held::of(&c.v1);
    let sink = MemSink::default();
    c.fetch(&held, &sink).await.unwrap();
    assert_eq!(sink.assemble(&c.blobs[0], &held.chunks), c.v2);
    assert_eq!(c.delta_requests(), 0);
    assert_eq!(*held.reads.lock().unwrap(), 0);
}
