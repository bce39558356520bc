//! `POST /v1/blobs/<id>/deltas`: round trips on every synthetic edit, the entitlement matrix on
//! both sides of a delta, request bounds, the precomputed path, and pool and cache bounds
//! under concurrent load.

use std::collections::HashMap;

use bytes::Bytes;
use fwrepo_catalog::{Catalog, Release};
use fwrepo_chunk::bases::choose_bases;
use fwrepo_chunk::delta::{self, BasesKey, DeltaEntry, DeltaRequest, Encoding, FRAME_HEADER_LEN};
use fwrepo_store::{ChunkId, Digest};
use fwrepo_synth::Change;
use http::{Method, StatusCode};

use crate::support::{Blob, DL360, DL380, Fixture, Resp, bearer, component, ingest, send, token};

const JSON: (&str, &str) = ("content-type", "application/json");

fn deltas_url(blob: &Blob) -> String {
    format!("/v1/blobs/{}/deltas", blob.id)
}

fn post_deltas(fx: &Fixture, blob: &Blob, token: &str, entries: &[DeltaEntry]) -> Resp {
    let body = serde_json::to_vec(&DeltaRequest { entries: entries.to_vec() }).unwrap();
    let h = [bearer(token), (JSON.0, JSON.1.to_owned())];
    fx.request(Method::POST, &deltas_url(blob), &h, Bytes::from(body))
}

/// The frames of a 200 reply, in order.
fn frames(resp: &Resp) -> Vec<(Encoding, Bytes)> {
    assert_eq!(resp.status, StatusCode::OK, "{:?}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/vnd.fwrepo.chunk-deltas"));
    assert_eq!(resp.header("content-length").unwrap().parse::<usize>().unwrap(), resp.body.len());
    let mut out = Vec::new();
    let mut at = 0;
    while at < resp.body.len() {
        let header: [u8; FRAME_HEADER_LEN] = resp.body[at..at + FRAME_HEADER_LEN].try_into().unwrap();
        let (enc, len) = delta::parse_frame_header(&header, 1 << 24).unwrap();
        at += FRAME_HEADER_LEN;
        out.push((enc, resp.body.slice(at..at + len)));
        at += len;
    }
    out
}

/// Chunk list of a stored blob, with each chunk's offset.
fn chunks(fx: &Fixture, blob: &Blob) -> Vec<(ChunkId, u32, usize)> {
    let index = fx.state.store().chunk_index(&blob.id).unwrap();
    let mut at = 0;
    index
        .chunks
        .iter()
        .map(|&(id, len)| {
            let c = (id, len, at);
            at += len as usize;
            c
        })
        .collect()
}

/// Stores `bytes` and publishes it for `models` in a release of its own, then refreshes.
fn publish(fx: &Fixture, bytes: Vec<u8>, release: &str, target: &str, models: &[&str]) -> Blob {
    let store = fx.state.store();
    let blob = ingest(&store, bytes, target);
    let release = Release {
        id: release.parse().unwrap(),
        name: format!("Service Pack for ProLiant {release}"),
        date: "2025-03-15".parse().unwrap(),
        components: vec![component("System ROM", &blob, models)],
    };
    Catalog::new(store.db().clone()).add_release(&release).unwrap();
    fx.state.refresh().unwrap();
    blob
}

/// What a client does: copies the chunks the seed holds, asks deltas for the rest against the
/// bases `choose_bases` picks, decodes each with its base, checks every chunk's id and returns
/// the rebuilt file and the delta reply's body bytes.
fn rebuild(fx: &Fixture, token: &str, seed: &Blob, target: &Blob) -> (Vec<u8>, usize) {
    let seed_chunks = chunks(fx, seed);
    let target_chunks = chunks(fx, target);
    let pairs = |v: &[(ChunkId, u32, usize)]| v.iter().map(|&(id, len, _)| (id, len)).collect::<Vec<_>>();
    let bases = choose_bases(&pairs(&target_chunks), &pairs(&seed_chunks));
    let seed_at: HashMap<ChunkId, (u32, usize)> = seed_chunks.iter().map(|&(id, len, at)| (id, (len, at))).collect();
    let seed_bytes = |id: &ChunkId| {
        let (len, at) = seed_at[id];
        &seed.bytes[at..at + len as usize]
    };
    let mut entries = Vec::new();
    for (&(id, _, _), base) in target_chunks.iter().zip(&bases) {
        if !seed_at.contains_key(&id) {
            entries.push(DeltaEntry { target: id, bases: base.clone() });
        }
    }
    let mut got: HashMap<ChunkId, Vec<u8>> = HashMap::new();
    let mut wire = 0;
    if !entries.is_empty() {
        let resp = post_deltas(fx, target, token, &entries);
        wire = resp.body.len();
        let frames = frames(&resp);
        assert_eq!(frames.len(), entries.len());
        for (e, (enc, payload)) in entries.iter().zip(frames) {
            let len = target_chunks.iter().find(|c| c.0 == e.target).unwrap().1 as usize;
            let prefix: Vec<u8> = e.bases.iter().flat_map(|b| seed_bytes(b).to_vec()).collect();
            let base = (enc == Encoding::ZstdWithBase).then_some(prefix.as_slice());
            let bytes = delta::decode(enc, &payload, base, len).unwrap();
            assert_eq!(Digest::of(&bytes), e.target, "a decoded chunk must hash to its id");
            got.insert(e.target, bytes);
        }
    }
    let mut out = Vec::new();
    for (id, _, _) in &target_chunks {
        match got.get(id) {
            Some(b) => out.extend_from_slice(b),
            None => out.extend_from_slice(seed_bytes(id)),
        }
    }
    (out, wire)
}

#[test]
fn every_synthetic_edit_round_trips_through_deltas() {
    let fx = Fixture::new();
    let t = token(DL380);
    let edits = [Change::SmallPatch, Change::Insert, Change::Remove, Change::Shift, Change::Recompress];
    for (i, change) in edits.into_iter().enumerate() {
        let mut rng = fwrepo_synth::Rng::new(100 + i as u64);
        let v2 = fwrepo_synth::mutate(&mut rng, &fx.big.bytes, change);
        assert_ne!(v2, fx.big.bytes.to_vec(), "{change:?} changed nothing");
        let path = format!("firmware/rom-edit{i}.bin");
        let target = publish(&fx, v2.clone(), &format!("2025.{:02}.0", i + 3), &path, &[DL380]);
        let (rebuilt, wire) = rebuild(&fx, &t, &fx.big, &target);
        assert!(rebuilt == v2, "{change:?}: rebuilt file differs");
        if change == Change::SmallPatch {
            // A few 8-byte patches: the deltas are far smaller than the changed chunks.
            let new: usize = chunks(&fx, &target)
                .iter()
                .filter(|c| !chunks(&fx, &fx.big).iter().any(|s| s.0 == c.0))
                .map(|c| c.1 as usize)
                .sum();
            assert!(wire * 10 < new, "{wire} bytes of deltas for {new} bytes of changed chunks");
        }
    }
}

#[test]
fn target_blob_outside_the_tokens_models_is_forbidden() {
    let fx = Fixture::new();
    let first = chunks(&fx, &fx.big)[0].0;
    let entry = [DeltaEntry { target: first, bases: vec![] }];
    let outside = post_deltas(&fx, &fx.big, &token(DL360), &entry);
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    // An unknown blob answers the same 403 to a token that cannot see everything ...
    let unknown = Blob { id: Digest::of(b"no such blob"), ..fx.big.clone() };
    let r = post_deltas(&fx, &unknown, &token(DL380), &entry);
    assert_eq!((r.status, &r.body), (StatusCode::FORBIDDEN, &outside.body));
    // ... and 404 to one that can.
    assert_eq!(post_deltas(&fx, &unknown, &token("*"), &entry).status, StatusCode::NOT_FOUND);
    let anonymous = fx.request(Method::POST, &deltas_url(&fx.big), &[(JSON.0, JSON.1.to_owned())], Bytes::new());
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

/// A DL360-only blob that is a patched copy of the DL380 blob: its chunks make good bases
/// that a DL380 token may not see.
fn publish_hidden_copy(fx: &Fixture, seed: u64) -> Blob {
    let mut rng = fwrepo_synth::Rng::new(seed);
    let copy = fwrepo_synth::mutate(&mut rng, &fx.big.bytes, Change::SmallPatch);
    publish(fx, copy, "2025.03.0", "firmware/rom-dl360.bin", &[DL360])
}

#[test]
fn base_outside_the_tokens_models_is_answered_as_no_base() {
    let fx = Fixture::new();
    let hidden = publish_hidden_copy(&fx, 7);
    let big = chunks(&fx, &fx.big);
    let hid = chunks(&fx, &hidden);
    let (target, base) = big
        .iter()
        .zip(&hid)
        .find(|(b, h)| b.0 != h.0 && b.1 == h.1)
        .map(|(b, h)| (b.0, h.0))
        .expect("a patched chunk at the same place");
    let plain = post_deltas(&fx, &fx.big, &token(DL380), &[DeltaEntry { target, bases: vec![] }]);
    let hidden_base = post_deltas(&fx, &fx.big, &token(DL380), &[DeltaEntry { target, bases: vec![base] }]);
    assert_eq!(hidden_base.status, StatusCode::OK);
    assert_eq!(hidden_base.body, plain.body, "a base the token may not see must change nothing");
    // The same base for a token that may see it does make a delta: the check is what hid it.
    let seen = post_deltas(&fx, &fx.big, &token("*"), &[DeltaEntry { target, bases: vec![base] }]);
    let f = frames(&seen);
    assert_eq!(f[0].0, Encoding::ZstdWithBase);
    assert!(seen.body.len() < plain.body.len());
    assert!(fx.metric("fwrepo_delta_bases_dropped_total") >= 1);
}

#[test]
fn one_hidden_base_among_seen_ones_is_answered_as_no_base() {
    let fx = Fixture::new();
    let hidden = publish_hidden_copy(&fx, 8);
    let big = chunks(&fx, &fx.big);
    let (target, seen) = (big[2].0, big[1].0);
    let hidden_chunk = chunks(&fx, &hidden).into_iter().find(|h| big.iter().all(|b| b.0 != h.0)).unwrap().0;
    let t = token(DL380);
    let plain = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![] }]);
    let mixed = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![seen, hidden_chunk] }]);
    assert_eq!(mixed.status, StatusCode::OK);
    assert_eq!(mixed.body, plain.body, "one base the token may not see drops them all");
    // Without the hidden one the seen base is used (or the chunk alone wins on its own).
    let fine = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![seen] }]);
    assert_eq!(fine.status, StatusCode::OK);
    assert!(fx.metric("fwrepo_delta_bases_dropped_total") >= 1);
}

#[test]
fn too_many_bases_or_base_bytes_in_an_entry_are_refused_with_413() {
    let fx = Fixture::new();
    let t = token("*");
    let all = chunks(&fx, &fx.big);
    let target = all[0].0;
    let nine = vec![all[1].0; delta::MAX_BASES + 1];
    let r = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: nine }]);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["reason"].as_str().unwrap().contains("bases"), "{v}");
}

#[test]
fn bases_of_more_than_a_mebibyte_in_an_entry_are_refused_with_413() {
    // Chunks up to 1 MiB, so that a few bases can weigh more than the limit.
    let sizes = fwrepo_store::ChunkerParams { min_size: 64 << 10, avg_size: 256 << 10, max_size: 1 << 20 };
    let fx = Fixture::with_store(sizes, fwrepo_store::InitOptions::default().pack_max_size, |_| {});
    let t = token("*");
    let target = chunks(&fx, &fx.big)[0].0;
    // Erased flash: chunks of the largest size, one id.
    let flat = publish(&fx, vec![0xFF; 3 << 20], "2025.04.0", "firmware/erased.bin", &[DL380]);
    let (erased, len) = (chunks(&fx, &flat)[0].0, chunks(&fx, &flat)[0].1 as usize);
    assert_eq!(len, delta::MAX_BASE_BYTES);
    let r = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![erased, erased] }]);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["reason"].as_str().unwrap().contains("bytes of bases"), "{v}");
    // At the limit it is served.
    let r = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![erased] }]);
    assert_eq!(frames(&r).len(), 1);
    // A token that may not see the bases learns nothing from the limit: no base, no 413.
    let outsider = post_deltas(&fx, &fx.big, &token(DL380), &[DeltaEntry { target, bases: vec![Digest::of(b"x"); 8] }]);
    assert_eq!(outsider.status, StatusCode::OK);
}

#[test]
fn unknown_base_is_answered_as_no_base() {
    let fx = Fixture::new();
    let target = chunks(&fx, &fx.big)[3].0;
    let t = token("*");
    let plain = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![] }]);
    let unknown = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![Digest::of(b"never stored")] }]);
    assert_eq!(unknown.status, StatusCode::OK);
    assert_eq!(unknown.body, plain.body);
}

#[test]
fn target_chunk_not_in_the_named_blob_is_refused() {
    let fx = Fixture::new();
    let mine = chunks(&fx, &fx.big)[0].0;
    let foreign = chunks(&fx, &fx.other)[0].0;
    let r = post_deltas(
        &fx,
        &fx.big,
        &token("*"),
        &[DeltaEntry { target: mine, bases: vec![] }, DeltaEntry { target: foreign, bases: vec![] }],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "target_not_in_blob");
    assert!(v["reason"].as_str().unwrap().contains("entry 1"), "{v}");
}

#[test]
fn too_many_entries_or_target_bytes_are_refused_with_413() {
    let fx = Fixture::new();
    let t = token("*");
    let all = chunks(&fx, &fx.big);
    let small = all.iter().min_by_key(|c| c.1).unwrap().0;
    let many = vec![DeltaEntry { target: small, bases: vec![] }; delta::MAX_ENTRIES + 1];
    let r = post_deltas(&fx, &fx.big, &t, &many);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "too_large");
    // 1024 entries of the largest chunk: more than 16 MiB of targets.
    let largest = all.iter().max_by_key(|c| c.1).unwrap();
    assert!(u64::from(largest.1) * delta::MAX_ENTRIES as u64 > 16 << 20, "largest chunk {} bytes", largest.1);
    let heavy = vec![DeltaEntry { target: largest.0, bases: vec![] }; delta::MAX_ENTRIES];
    let r = post_deltas(&fx, &fx.big, &t, &heavy);
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"], "too_large");
    // Exactly the limit of entries is fine.
    let ok = vec![DeltaEntry { target: small, bases: vec![] }; delta::MAX_ENTRIES];
    assert_eq!(frames(&post_deltas(&fx, &fx.big, &t, &ok)).len(), delta::MAX_ENTRIES);
}

#[test]
fn malformed_delta_requests_are_bad_requests() {
    let fx = Fixture::new();
    let h = [bearer(&token("*")), (JSON.0, JSON.1.to_owned())];
    for body in ["not json", r#"{"entries":[{"target":"abc"}]}"#, r#"{"entries":[],"more":1}"#] {
        let r = fx.request(Method::POST, &deltas_url(&fx.big), &h, Bytes::from(body));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "bad_request");
    }
    assert_eq!(fx.get(&deltas_url(&fx.big), &[bearer(&token("*"))]).status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn deltas_are_audited_and_counted() {
    let fx = Fixture::new();
    let target = chunks(&fx, &fx.big)[1].0;
    let r = post_deltas(&fx, &fx.big, &token(DL380), &[DeltaEntry { target, bases: vec![] }]);
    let sent = frames(&r).len();
    assert_eq!(sent, 1);
    let again = post_deltas(&fx, &fx.big, &token(DL380), &[DeltaEntry { target, bases: vec![] }]);
    assert_eq!(again.body, r.body);
    let line = fx
        .audit_lines()
        .into_iter()
        .rfind(|l| l["path"] == format!("/v1/blobs/{}/deltas", fx.big.id))
        .expect("an audit record of the delta request");
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], r.body.len());
    assert_eq!(fx.metric("fwrepo_delta_entries_total"), 2);
    assert_eq!(fx.metric("fwrepo_delta_computations_total"), 1);
    assert_eq!(fx.metric("fwrepo_delta_cache_hits_total"), 1);
    assert_eq!(fx.metric("fwrepo_delta_bytes_out_total"), 2 * r.body.len() as u64);
    assert_eq!(fx.metric("fwrepo_http_requests_total{route=\"deltas\",status=\"200\"}"), 2);
}

#[test]
fn precomputed_deltas_are_served_without_compression() {
    let fx = Fixture::new();
    let mut rng = fwrepo_synth::Rng::new(11);
    let v2 = fwrepo_synth::mutate(&mut rng, &fx.big.bytes, Change::SmallPatch);
    let target = publish(&fx, v2, "2025.03.0", "firmware/rom-v2.bin", &[DL380]);
    let seed = chunks(&fx, &fx.big);
    let new = chunks(&fx, &target);
    let (t, b) = new.iter().zip(&seed).find(|(n, s)| n.0 != s.0).map(|(n, s)| (*n, *s)).unwrap();
    let tbytes = fx.state.store().read_chunk(&t.0).unwrap().unwrap();
    let bbytes = fx.state.store().read_chunk(&b.0).unwrap().unwrap();
    let (enc, payload) = delta::encode(&tbytes, Some(&bbytes), delta::DEFAULT_LEVEL).unwrap();
    fx.state.store().put_deltas(&[(BasesKey::of(&[b.0]), t.0, enc, payload.clone())]).unwrap();
    let r = post_deltas(&fx, &target, &token(DL380), &[DeltaEntry { target: t.0, bases: vec![b.0] }]);
    let f = frames(&r);
    assert_eq!((f[0].0, &f[0].1[..]), (enc, &payload[..]));
    assert_eq!(fx.metric("fwrepo_delta_precomputed_total"), 1);
    assert_eq!(fx.metric("fwrepo_delta_computations_total"), 0, "a precomputed delta costs no compression");
}

#[test]
fn pool_and_cache_bounds_hold_under_concurrent_delta_requests() {
    let budget: u64 = 96 * 1024;
    let fx = Fixture::with_config(|c| {
        c.deltas.workers = 1;
        c.deltas.max_queued_requests = 3;
        c.deltas.cache_bytes = budget;
        c.deltas.level = 19;
    });
    let t = token("*");
    let all = chunks(&fx, &fx.big);
    // Distinct (base, target) pairs, so nothing is answered from the cache.
    let mut pairs = Vec::new();
    for (i, b) in all.iter().enumerate() {
        for (j, tg) in all.iter().enumerate() {
            if i != j {
                pairs.push(DeltaEntry { target: tg.0, bases: vec![b.0] });
            }
        }
    }
    let per_request = 12;
    let requests: Vec<Vec<DeltaEntry>> = pairs.chunks(per_request).take(48).map(|c| c.to_vec()).collect();
    assert_eq!(requests.len(), 48);
    let addr = fx.addr;
    let url = deltas_url(&fx.big);
    let results: Vec<(Vec<DeltaEntry>, Resp)> = fx.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for entries in requests {
            let body = Bytes::from(serde_json::to_vec(&DeltaRequest { entries: entries.clone() }).unwrap());
            let h = [bearer(&t), (JSON.0, JSON.1.to_owned())];
            let url = url.clone();
            set.spawn(async move { (entries, send(addr, false, Method::POST, &url, &h, body).await) });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    let mut ok = 0;
    let mut busy = 0;
    let at: HashMap<ChunkId, (u32, usize)> = all.iter().map(|&(id, len, at)| (id, (len, at))).collect();
    for (entries, resp) in &results {
        match resp.status {
            StatusCode::OK => {
                ok += 1;
                for (e, (enc, payload)) in entries.iter().zip(frames(resp)) {
                    let (len, _) = at[&e.target];
                    let prefix: Vec<u8> = e
                        .bases
                        .iter()
                        .flat_map(|b| {
                            let (l, o) = at[b];
                            fx.big.bytes[o..o + l as usize].to_vec()
                        })
                        .collect();
                    let base = (enc == Encoding::ZstdWithBase).then_some(prefix.as_slice());
                    let bytes = delta::decode(enc, &payload, base, len as usize).unwrap();
                    assert_eq!(Digest::of(&bytes), e.target);
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(resp.header("retry-after"), Some("1"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok > 0, "no request was served");
    assert!(busy > 0, "48 concurrent requests against a queue of 3 must see 503s");
    assert_eq!(fx.metric("fwrepo_delta_refused_busy_total"), busy);
    assert_eq!(fx.metric("fwrepo_delta_computations_active_max"), 1, "one worker: one computation at a time");
    assert_eq!(fx.metric("fwrepo_delta_computations_active"), 0);
    let held = fx.metric("fwrepo_delta_cache_bytes");
    assert!(held > 0 && held <= budget, "cache holds {held} bytes, budget {budget}");
    assert_eq!(fx.metric("fwrepo_delta_computations_total"), (ok * per_request) as u64);
}

#[test]
fn base_of_a_blob_no_release_names_counts_only_once_published() {
    let fx = Fixture::new();
    let t = token(DL380);
    let mut rng = fwrepo_synth::Rng::new(13);
    let copy = fwrepo_synth::mutate(&mut rng, &fx.big.bytes, Change::SmallPatch);
    // Stored, but in no release yet (a refused publish, a mirror mid-sync): lends no bases.
    let stored = ingest(&fx.state.store(), copy.clone(), "firmware/rom-later.bin");
    let (target, base) = chunks(&fx, &fx.big)
        .iter()
        .zip(chunks(&fx, &stored))
        .find(|(b, s)| b.0 != s.0 && b.1 == s.1)
        .map(|(b, s)| (b.0, s.0))
        .expect("a patched chunk at the same place");
    let plain = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![] }]);
    let early = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![base] }]);
    assert_eq!(early.body, plain.body);
    // Published for the token's model: after the refresh the chunk-owner map knows it.
    publish(&fx, copy, "2025.03.0", "firmware/rom-later.bin", &[DL380]);
    let late = post_deltas(&fx, &fx.big, &t, &[DeltaEntry { target, bases: vec![base] }]);
    assert_eq!(frames(&late)[0].0, Encoding::ZstdWithBase);
    assert_eq!(fx.metric("fwrepo_delta_owner_rebuilds_total"), 2);
}
