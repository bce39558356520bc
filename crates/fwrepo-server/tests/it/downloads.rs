//! Downloads through the server match the stored bytes, over random ranges and both protocols.

use http::StatusCode;
use proptest::prelude::*;

use crate::range_table::parse_multipart;
use crate::support::{Fixture, bearer, token};

#[test]
fn random_ranges_match_the_stored_bytes() {
    let fx = Fixture::new();
    let t = token("*");
    let len = fx.big.bytes.len() as u64;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 64, ..ProptestConfig::default() });
    let strategy = (proptest::collection::vec((0..len, 1..70_000u64), 1..5), any::<bool>());
    runner
        .run(&strategy, |(specs, h2)| {
            let header = specs.iter().map(|(a, n)| format!("{a}-{}", a + n - 1)).collect::<Vec<_>>().join(",");
            let headers = [bearer(&t), ("range", format!("bytes={header}"))];
            let resp = if h2 { fx.get_h2(&fx.big.url(), &headers) } else { fx.get(&fx.big.url(), &headers) };
            // What the server must have done: clamp, sort, coalesce.
            let mut want: Vec<(u64, u64)> = specs.iter().map(|&(a, n)| (a, (a + n).min(len))).collect();
            let total: u64 = want.iter().map(|(a, b)| b - a).sum();
            want.sort();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (a, b) in want {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            if total > len {
                prop_assert_eq!(resp.status, StatusCode::OK);
                prop_assert_eq!(&resp.body, &fx.big.bytes);
            } else if merged.len() == 1 {
                prop_assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
                let (a, b) = merged[0];
                prop_assert_eq!(&resp.body[..], &fx.big.bytes[a as usize..b as usize]);
            } else {
                prop_assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
                let parts = parse_multipart(&resp, len as usize);
                prop_assert_eq!(parts.len(), merged.len());
                for ((a, b, bytes), (wa, wb)) in parts.into_iter().zip(merged) {
                    prop_assert_eq!((a as u64, b as u64), (wa, wb));
                    prop_assert_eq!(&bytes[..], &fx.big.bytes[a..b]);
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn whole_downloads_by_blob_id_and_by_target_name() {
    let fx = Fixture::new();
    let t = token("ProLiant DL380 Gen9");
    let by_id = fx.get(&fx.big.url(), &[bearer(&t)]);
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.body, fx.big.bytes);
    let by_name = fx.get(&fx.big.hashed_target(), &[bearer(&t)]);
    assert_eq!(by_name.status, StatusCode::OK);
    assert_eq!(by_name.body, fx.big.bytes);
    assert_eq!(by_name.header("etag"), Some(fx.big.etag().as_str()));
    let h2 = fx.get_h2(&fx.big.hashed_target(), &[bearer(&t), ("range", "bytes=10-19".into())]);
    assert_eq!(h2.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h2.body, fx.big.bytes.slice(10..20));
}

#[test]
fn chunk_index_is_served_and_hashes_to_the_signed_id() {
    let fx = Fixture::new();
    let t = token("ProLiant DL380 Gen9");
    let resp = fx.get(&format!("{}/chunks", fx.big.url()), &[bearer(&t)]);
    assert_eq!(resp.status, StatusCode::OK);
    let info = fx.state.store().blob_info(&fx.big.id).unwrap();
    assert_eq!(fwrepo_store::Digest::of(&resp.body), info.chunk_index);
    let index = fwrepo_store::ChunkIndex::parse(&resp.body).unwrap();
    assert_eq!(index.blob_len, 300_000);
    let etag = resp.header("etag").unwrap().to_owned();
    let again = fx.get(&format!("{}/chunks", fx.big.url()), &[bearer(&t), ("if-none-match", etag)]);
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // Gated like the blob.
    assert_eq!(fx.get(&format!("{}/chunks", fx.big.url()), &[]).status, StatusCode::UNAUTHORIZED);
    let wrong = token("ProLiant DL360 Gen9");
    assert_eq!(fx.get(&format!("{}/chunks", fx.big.url()), &[bearer(&wrong)]).status, StatusCode::FORBIDDEN);
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let fx = Fixture::new();
    let t = token("*");
    for extra in [None, Some("bytes=5-9"), Some("bytes=0-9,20-29"), Some("bytes=999999-")] {
        let mut h = vec![bearer(&t)];
        if let Some(r) = extra {
            h.push(("range", r.to_owned()));
        }
        let get = fx.get(&fx.big.url(), &h);
        let head = fx.head(&fx.big.url(), &h);
        assert_eq!(get.status, head.status, "{extra:?}");
        assert!(head.body.is_empty());
        for name in ["content-length", "content-type", "content-range", "etag", "accept-ranges", "cache-control"] {
            assert_eq!(get.header(name), head.header(name), "{name} for {extra:?}");
        }
    }
    let get = fx.get("/metadata/timestamp.json", &[]);
    let head = fx.head("/metadata/timestamp.json", &[]);
    assert_eq!(get.header("content-length"), head.header("content-length"));
    assert_eq!(get.header("etag"), head.header("etag"));
}

#[test]
fn if_none_match_answers_304_before_range() {
    let fx = Fixture::new();
    let t = token("*");
    let etag = fx.big.etag();
    for inm in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}"), "*".into()] {
        let resp = fx.get(&fx.big.url(), &[bearer(&t), ("if-none-match", inm.clone()), ("range", "bytes=0-1".into())]);
        assert_eq!(resp.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("etag"), Some(etag.as_str()));
    }
    let resp = fx.get(&fx.big.url(), &[bearer(&t), ("if-none-match", "\"other\"".into())]);
    assert_eq!(resp.status, StatusCode::OK);
}

#[test]
fn non_matching_if_match_is_412() {
    let fx = Fixture::new();
    let t = token("*");
    let etag = fx.big.etag();
    let weak = format!("W/{etag}");
    let listed = format!("\"x\", {etag}");
    // (If-Match fields, If-None-Match, status) for a ranged GET of the blob.
    let rows: Vec<(Vec<&str>, Option<&str>, StatusCode)> = vec![
        (vec![], None, StatusCode::PARTIAL_CONTENT),
        (vec!["*"], None, StatusCode::PARTIAL_CONTENT),
        (vec![&etag], None, StatusCode::PARTIAL_CONTENT),
        (vec![&listed], None, StatusCode::PARTIAL_CONTENT),
        (vec!["\"x\"", &etag], None, StatusCode::PARTIAL_CONTENT),
        (vec!["\"other\""], None, StatusCode::PRECONDITION_FAILED),
        (vec!["\"a\", \"b\""], None, StatusCode::PRECONDITION_FAILED),
        // Strong comparison: a weak tag never matches.
        (vec![&weak], None, StatusCode::PRECONDITION_FAILED),
        (vec!["garbage"], None, StatusCode::PRECONDITION_FAILED),
        // If-Match is evaluated before If-None-Match.
        (vec!["\"other\""], Some(&etag), StatusCode::PRECONDITION_FAILED),
        (vec![&etag], Some(&etag), StatusCode::NOT_MODIFIED),
    ];
    for (if_match, inm, want) in rows {
        let mut h = vec![bearer(&t), ("range", "bytes=0-9".to_owned())];
        h.extend(if_match.iter().map(|v| ("if-match", (*v).to_owned())));
        h.extend(inm.map(|v| ("if-none-match", v.to_owned())));
        assert_eq!(fx.get(&fx.big.url(), &h).status, want, "GET {if_match:?} {inm:?}");
        assert_eq!(fx.head(&fx.big.url(), &h).status, want, "HEAD {if_match:?} {inm:?}");
        assert_eq!(fx.get(&fx.big.hashed_target(), &h).status, want, "target {if_match:?} {inm:?}");
    }
    // The chunk index and metadata have their own tags.
    let chunks = format!("{}/chunks", fx.big.url());
    let tag = fx.get(&chunks, &[bearer(&t)]).header("etag").unwrap().to_owned();
    assert_eq!(fx.get(&chunks, &[bearer(&t), ("if-match", tag)]).status, StatusCode::OK);
    assert_eq!(fx.get(&chunks, &[bearer(&t), ("if-match", etag.clone())]).status, StatusCode::PRECONDITION_FAILED);
    let ts = fx.get("/metadata/timestamp.json", &[]).header("etag").unwrap().to_owned();
    assert_eq!(fx.get("/metadata/timestamp.json", &[("if-match", ts)]).status, StatusCode::OK);
    assert_eq!(fx.get("/metadata/timestamp.json", &[("if-match", "*".into())]).status, StatusCode::OK);
    assert_eq!(
        fx.get("/metadata/timestamp.json", &[("if-match", "\"stale\"".into())]).status,
        StatusCode::PRECONDITION_FAILED
    );
    // The gate comes first: a caller who may not see the blob learns nothing from If-Match.
    let other = token("ProLiant DL360 Gen9");
    assert_eq!(fx.get(&fx.big.url(), &[bearer(&other), ("if-match", "\"x\"".into())]).status, StatusCode::FORBIDDEN);
}
