//! The engine against honest and hostile peers in memory: every misbehaviour ends in a typed
//! error or a successful retry, and the sink (which re-hashes) never sees a wrong byte.

use std::collections::{HashMap, HashSet};

use fwrepo_chunk::Digest;
use fwrepo_fetch::{BlobVerifier, Error, Fault, Transport};

use crate::support::{MemSink, MemStore, Origin, data, edited, remote_blobs, seed_of};

/// A v1 the client holds and a v2 it wants, published.
fn two_versions() -> (Origin, Vec<u8>, Vec<u8>, fwrepo_tuf::TargetPath) {
    let mut o = Origin::new();
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    o.publish("fw/a-1.bin", &v1);
    let p = o.publish("fw/a-2.bin", &v2);
    (o, v1, v2, p)
}

fn blob_path(b: &fwrepo_fetch::RemoteBlob) -> String {
    format!("/v1/blobs/{}", b.blob)
}

#[tokio::test]
async fn honest_peer_sends_only_the_missing_chunks_and_the_result_verifies() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();

    let missing: HashSet<Digest> =
        blobs[0].index.chunks.iter().map(|c| c.0).filter(|id| !seed.contains_key(id)).collect();
    assert!(!missing.is_empty() && missing.len() < blobs[0].index.chunks.len() / 2, "{}", missing.len());
    assert_eq!(report.chunks_fetched, missing.len() as u64);
    assert_eq!(sink.len(), missing.len());
    let bytes = sink.assemble(&blobs[0], &seed);
    assert_eq!(bytes, v2);
    let mut v = BlobVerifier::new(&blobs[0]).unwrap();
    v.update(&bytes).unwrap();
    v.finish().unwrap();
    // Range requests: never more than the runs of missing chunks.
    let needed: Vec<bool> = blobs[0].index.chunks.iter().map(|c| missing.contains(&c.0)).collect();
    let ranged = f.transport().requests().iter().filter(|r| r.range.is_some()).count();
    assert!(ranged as u64 == report.requests && ranged <= fwrepo_fetch::plan::runs(&needed), "{ranged}");
    assert!(!report.ranges_ignored);
    // Every gated request carried no token (none was set); with one set, it is sent.
    assert!(f.transport().requests().iter().all(|r| r.bearer.is_none()));
}

#[tokio::test]
async fn a_chunk_shared_by_several_targets_is_fetched_once() {
    let mut o = Origin::new();
    let common = data(7, 100_000);
    let a = [common.clone(), data(8, 50_000)].concat();
    let b = [data(9, 50_000), common.clone(), common.clone()].concat();
    let pa = o.publish("fw/a.bin", &a);
    let pb = o.publish("fw/b.bin", &b);
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&pa, &pb]).await;
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |_| false, &sink).await.unwrap();
    let distinct: HashSet<Digest> = blobs.iter().flat_map(|b| b.index.chunks.iter().map(|c| c.0)).collect();
    assert_eq!(report.chunks_fetched, distinct.len() as u64);
    let total: usize = blobs.iter().map(|b| b.index.chunks.len()).sum();
    assert!(distinct.len() < total, "the fixture must share chunks");
    // Placements say everywhere each chunk goes, so both files assemble.
    let none = HashMap::new();
    assert_eq!(sink.assemble(&blobs[0], &none), a);
    assert_eq!(sink.assemble(&blobs[1], &none), b);
    let placed: usize = sink.chunks.lock().unwrap().values().map(|(_, p)| p.len()).sum();
    assert_eq!(placed, total);
    // Per blob: the shared chunks count where they were fetched, and the parts add up.
    let [sa, sb] = [report.blobs[0], report.blobs[1]];
    assert_eq!(sa.chunks_fetched, blobs[0].index.chunks.iter().map(|c| c.0).collect::<HashSet<_>>().len() as u64);
    assert_eq!(sa.chunks_fetched + sb.chunks_fetched, report.chunks_fetched);
    assert_eq!(sa.body_bytes + sb.body_bytes, report.body_bytes);
    assert_eq!(sa.requests + sb.requests, report.requests);
    assert!(sa.head_bytes > 0 && sb.head_bytes > 0);
    assert!(sb.chunk_bytes_fetched < b.len() as u64 / 2, "b's copies of the common part came from a");
}

#[tokio::test]
async fn flipped_byte_is_a_chunk_mismatch_and_never_reaches_the_sink() {
    let (o, v1, _, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    o.peer.fault(blob_path(&blobs[0]), Fault::FlipByte { offset: 10 }, None);
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let err = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap_err();
    let Error::ChunkMismatch { chunk, .. } = err else { panic!("{err}") };
    assert!(!sink.has(&chunk));
    // Wrong bytes are not a transient failure: the peer is not asked again.
    assert_eq!(f.transport().requests().iter().filter(|r| r.path == blob_path(&blobs[0])).count(), 1);
}

#[tokio::test]
async fn truncated_range_is_retried_and_resumes() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    o.peer.fault(blob_path(&blobs[0]), Fault::Truncate { keep: 5000 }, Some(1));
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert!(report.retries >= 1);
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
}

#[tokio::test]
async fn truncation_that_persists_is_a_typed_error() {
    let (o, _, _, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    o.peer.fault(blob_path(&blobs[0]), Fault::Truncate { keep: 100 }, None);
    let sink = MemSink::default();
    let err = f.fetch_chunks(&blobs, |_| false, &sink).await.unwrap_err();
    assert!(matches!(err, Error::Truncated { got: 100, .. }), "{err}");
    assert_eq!(sink.len(), 0, "100 bytes hold no whole chunk");
}

#[tokio::test]
async fn connection_dropped_mid_body_resumes_after_the_chunks_already_verified() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    // Nothing held: one range of the whole blob, dropped two thirds of the way.
    o.peer.fault(blob_path(&blobs[0]), Fault::DropAfter { bytes: 200_000 }, Some(1));
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |_| false, &sink).await.unwrap();
    assert_eq!(report.retries, 1);
    let ranges: Vec<(u64, u64)> = f.transport().requests().iter().filter_map(|r| r.range).collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], (0, v2.len() as u64));
    assert!(ranges[1].0 > 150_000 && ranges[1].0 <= 200_000, "the retry starts after verified chunks: {ranges:?}");
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    o.peer.fault(blob_path(&blobs[0]), Fault::Status(500), Some(2));
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert_eq!(report.retries, 2);
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
    // Past the retry budget, the status is the error.
    o.peer.fault(blob_path(&blobs[0]), Fault::Status(503), None);
    let err = f.fetch_chunks(&blobs, |_| false, &MemSink::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
}

#[tokio::test]
async fn forbidden_and_missing_are_not_retried() {
    for status in [401, 403, 404] {
        let (o, _, _, p) = two_versions();
        let f = o.fetcher();
        let store = MemStore::default();
        let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
        o.peer.fault(blob_path(&blobs[0]), Fault::Status(status), None);
        let before = f.transport().requests().len();
        let err = f.fetch_chunks(&blobs, |_| false, &MemSink::default()).await.unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert_eq!(f.transport().requests().len() - before, 1, "{status} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_peer_times_out_and_the_retry_completes() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    o.peer.fault(blob_path(&blobs[0]), Fault::Stall { after: 1000 }, Some(1));
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert!(report.retries >= 1);
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
    o.peer.fault(blob_path(&blobs[0]), Fault::Stall { after: 0 }, None);
    let err = f.fetch_chunks(&blobs, |_| false, &MemSink::default()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_peer_that_ignores_range_is_read_whole_once_and_verified() {
    let mut o = Origin::new();
    let v1 = data(1, 300_000);
    let v2 = edited(&v1);
    // The second blob shares its edges with the first, so what it lacks is in the middle.
    let other = [v1[..60_000].to_vec(), data(5, 120_000), v1[240_000..].to_vec()].concat();
    o.publish("fw/a-1.bin", &v1);
    let p = o.publish("fw/a-2.bin", &v2);
    let q = o.publish("fw/b.bin", &other);
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p, &q]).await;
    o.peer.fault("/v1/blobs/", Fault::IgnoreRange, None);
    let seed = seed_of(&v1);
    let sink = MemSink::default();
    let report = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap();
    assert!(report.ranges_ignored && f.ranges_ignored());
    let gets: Vec<_> = f
        .transport()
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/blobs/") && !r.path.ends_with("/chunks"))
        .collect();
    assert_eq!(gets.len(), 2, "one whole read per blob: {gets:?}");
    assert!(gets[1].range.is_none(), "once known, blobs are asked for whole");
    assert_eq!(sink.assemble(&blobs[0], &seed), v2);
    assert_eq!(sink.assemble(&blobs[1], &seed), other);
}

#[tokio::test]
async fn a_whole_body_answer_with_a_flipped_byte_is_refused() {
    let (o, v1, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    // Flip a byte inside the first chunk the client lacks, and ignore Range.
    let seed = seed_of(&v1);
    let (offset, _) = blobs[0].index.offsets().find(|(_, c)| !seed.contains_key(&c.0)).unwrap();
    let mut bad = v2.clone();
    bad[offset as usize + 1] ^= 1;
    o.peer.fault(blob_path(&blobs[0]), Fault::Replace(bad.into()), None);
    o.peer.fault(blob_path(&blobs[0]), Fault::IgnoreRange, None);
    let sink = MemSink::default();
    let err = f.fetch_chunks(&blobs, |id| seed.contains_key(id), &sink).await.unwrap_err();
    assert!(matches!(err, Error::ChunkMismatch { offset: at, .. } if at == offset), "{err}");
}

#[tokio::test]
async fn chunk_index_that_does_not_hash_to_its_signed_id_is_refused() {
    let (o, _, _, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let mut r = f.refresh(&o.root_v1, &store, crate::support::t0(), Default::default()).await.unwrap();
    let info = f.find_target(&mut r.updater, &p, &store).await.unwrap().unwrap();
    let blob = info.file.custom.as_ref().unwrap()["blake3"].as_str().unwrap().to_owned();
    // A well-formed index of other bytes.
    let forged = crate::support::index_of(&data(3, 300_000)).to_bytes();
    o.peer.fault(format!("/v1/blobs/{blob}/chunks"), Fault::Replace(forged.into()), None);
    let err = f.remote_blob(&info).await.unwrap_err();
    assert!(matches!(err, Error::ChunkIndexMismatch { .. }), "{err}");
    // An endless one is cut off at the longest index the signed length allows.
    o.peer.clear_faults();
    o.peer.fault(format!("/v1/blobs/{blob}/chunks"), Fault::Replace(vec![0u8; 10_000_000].into()), None);
    let before = f.transport().wire().stats().body_bytes;
    let err = f.remote_blob(&info).await.unwrap_err();
    assert!(matches!(err, Error::TooLong { .. }), "{err}");
    assert!(f.transport().wire().stats().body_bytes - before < 200_000);
}

#[tokio::test]
async fn chunk_index_for_another_length_is_refused_even_when_signed() {
    let mut o = Origin::new();
    let real = data(1, 100_000);
    let other = data(2, 90_000);
    let index = crate::support::index_of(&other);
    o.peer.insert(format!("/v1/blobs/{}/chunks", Digest::of(&real)), index.to_bytes());
    let mut t = fwrepo_tuf::TargetFile::describing(&real, None);
    t.custom = Some(serde_json::json!({ "blake3": Digest::of(&real).to_hex(), "chunk_index": index.id().to_hex() }));
    let p = o.sign("fw/lie.bin", t);
    let f = o.fetcher();
    let store = MemStore::default();
    let mut r = f.refresh(&o.root_v1, &store, crate::support::t0(), Default::default()).await.unwrap();
    let info = f.find_target(&mut r.updater, &p, &store).await.unwrap().unwrap();
    let err = f.remote_blob(&info).await.unwrap_err();
    assert!(matches!(err, Error::ChunkIndexLength { index_len: 90_000, signed_len: 100_000, .. }), "{err}");
}

#[tokio::test]
async fn target_without_fwrepo_custom_ids_is_refused() {
    let mut o = Origin::new();
    let p = o.sign("fw/plain.bin", fwrepo_tuf::TargetFile::describing(b"plain", None));
    let f = o.fetcher();
    let store = MemStore::default();
    let mut r = f.refresh(&o.root_v1, &store, crate::support::t0(), Default::default()).await.unwrap();
    let info = f.find_target(&mut r.updater, &p, &store).await.unwrap().unwrap();
    assert!(matches!(f.remote_blob(&info).await, Err(Error::TargetCustom { .. })));
}

#[tokio::test]
async fn assembled_bytes_that_differ_from_the_signed_target_fail_verification() {
    let (o, _, v2, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let mut bad = v2.clone();
    bad[1234] ^= 1;
    let mut v = BlobVerifier::new(&blobs[0]).unwrap();
    v.update(&bad).unwrap();
    assert!(matches!(v.finish(), Err(Error::Target { .. })));
    let mut v = BlobVerifier::new(&blobs[0]).unwrap();
    v.update(&v2[..1000]).unwrap();
    assert!(matches!(v.finish(), Err(Error::Target { .. })), "short");
    let mut v = BlobVerifier::new(&blobs[0]).unwrap();
    assert!(v.update(&vec![0; blobs[0].len() as usize + 1]).is_err(), "past the signed length");
}

#[tokio::test]
async fn bearer_token_goes_with_gated_requests_only() {
    let (o, v1, _, p) = two_versions();
    let f = o.fetcher();
    f.set_bearer(Some("tok"));
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let seed = seed_of(&v1);
    f.fetch_chunks(&blobs, |id| seed.contains_key(id), &MemSink::default()).await.unwrap();
    for r in f.transport().requests() {
        let gated = r.path.starts_with("/v1/blobs/");
        assert_eq!(r.bearer.as_deref() == Some("tok"), gated, "{}", r.path);
    }
}

#[tokio::test]
async fn a_sink_error_stops_the_fetch_with_the_chunk_named() {
    struct Full;
    impl fwrepo_fetch::ChunkSink for Full {
        fn put(&self, _: &fwrepo_fetch::VerifiedChunk) -> Result<(), fwrepo_fetch::BoxError> {
            Err("disk full".into())
        }
    }
    let (o, _, _, p) = two_versions();
    let f = o.fetcher();
    let store = MemStore::default();
    let blobs = remote_blobs(&f, &o.root_v1, &store, &[&p]).await;
    let err = f.fetch_chunks(&blobs, |_| false, &Full).await.unwrap_err();
    assert!(matches!(err, Error::Sink { chunk, .. } if chunk == blobs[0].index.chunks[0].0), "{err}");
}

#[tokio::test]
async fn post_json_returns_any_answer_and_retries_only_server_errors() {
    let o = Origin::new();
    o.peer.insert("/v1/tokens", &b"{\"token\":\"t\"}"[..]);
    o.peer.fault("/v1/tokens", Fault::Status(503), Some(1));
    let f = o.fetcher();
    let (status, body) = f.post_json("/v1/tokens", &serde_json::json!({ "serial": "S1" }), 1000).await.unwrap();
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"{\"token\":\"t\"}"[..]));
    assert_eq!(f.retries(), 1);
    let sent = f.transport().requests();
    assert_eq!(sent.last().unwrap().json.as_deref(), Some(&b"{\"serial\":\"S1\"}"[..]));
    assert_eq!(sent.last().unwrap().method, fwrepo_fetch::Method::Post);
    // A refusal is an answer for the caller to read, not a retry.
    o.peer.fault("/v1/tokens", Fault::Status(403), None);
    let (status, _) = f.post_json("/v1/tokens", &serde_json::json!({}), 1000).await.unwrap();
    assert_eq!((status.as_u16(), f.retries()), (403, 1));
    // An answer longer than the caller allows is cut off.
    o.peer.clear_faults();
    assert!(matches!(f.post_json("/v1/tokens", &serde_json::json!({}), 5).await, Err(Error::TooLong { .. })));
}
