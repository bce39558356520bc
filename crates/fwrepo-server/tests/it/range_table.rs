//! A table of Range exchanges (request headers → status, `Content-Range`, body), run through
//! the server against a 300 kB blob and a zero-length one.

use http::StatusCode;

use crate::support::{Fixture, bearer, token};

/// What the body must be.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// The whole blob.
    Whole,
    /// Bytes `a..b` of the blob.
    Slice(usize, usize),
    /// A multipart body with these parts.
    Parts(&'static [(usize, usize)]),
    /// An error body (416).
    Error,
}

struct Row {
    range: &'static str,
    if_range: Option<&'static str>,
    status: u16,
    content_range: Option<&'static str>,
    want: Want,
}

const fn row(range: &'static str, status: u16, content_range: Option<&'static str>, want: Want) -> Row {
    Row { range, if_range: None, status, content_range, want }
}

/// Against the 300 000-byte blob.
const BIG: &[Row] = &[
    row("bytes=0-0", 206, Some("bytes 0-0/300000"), Want::Slice(0, 1)),
    row("bytes=0-99", 206, Some("bytes 0-99/300000"), Want::Slice(0, 100)),
    row("bytes=299999-", 206, Some("bytes 299999-299999/300000"), Want::Slice(299_999, 300_000)),
    row("bytes=299990-400000", 206, Some("bytes 299990-299999/300000"), Want::Slice(299_990, 300_000)),
    row("bytes=-10", 206, Some("bytes 299990-299999/300000"), Want::Slice(299_990, 300_000)),
    // A suffix longer than the blob is the whole blob, as a 206.
    row("bytes=-999999", 206, Some("bytes 0-299999/300000"), Want::Slice(0, 300_000)),
    row("bytes=1000-", 206, Some("bytes 1000-299999/300000"), Want::Slice(1000, 300_000)),
    // Unit is case-insensitive; whitespace around list elements is allowed.
    row("BYTES=5-9", 206, Some("bytes 5-9/300000"), Want::Slice(5, 10)),
    row("bytes= 5-9 ,", 206, Some("bytes 5-9/300000"), Want::Slice(5, 10)),
    row("bytes=\t5-9", 206, Some("bytes 5-9/300000"), Want::Slice(5, 10)),
    // Huge numbers: a last-pos past u64 is clamped; a first-pos past it is unsatisfiable.
    row("bytes=0-99999999999999999999999999", 206, Some("bytes 0-299999/300000"), Want::Slice(0, 300_000)),
    row("bytes=99999999999999999999999999-", 416, Some("bytes */300000"), Want::Error),
    row("bytes=300000-", 416, Some("bytes */300000"), Want::Error),
    row("bytes=-0", 416, Some("bytes */300000"), Want::Error),
    // Malformed: ignored, the whole representation.
    row("bytes=", 200, None, Want::Whole),
    row("bytes=5-1", 200, None, Want::Whole),
    row("bytes=a-b", 200, None, Want::Whole),
    row("bytes=--5", 200, None, Want::Whole),
    row("bytes 0-5", 200, None, Want::Whole),
    row("bytes=0-5,x", 200, None, Want::Whole),
    // Other units are ignored.
    row("items=0-5", 200, None, Want::Whole),
    row("none", 200, None, Want::Whole),
    // Several ranges: sorted, overlapping and adjacent ones coalesced.
    row("bytes=0-9,20-29", 206, None, Want::Parts(&[(0, 10), (20, 30)])),
    row("bytes=20-29,0-9", 206, None, Want::Parts(&[(0, 10), (20, 30)])),
    row("bytes=0-9,10-19", 206, Some("bytes 0-19/300000"), Want::Slice(0, 20)),
    row("bytes=0-9,5-14,100-109", 206, None, Want::Parts(&[(0, 15), (100, 110)])),
    row("bytes=0-9,-5", 206, None, Want::Parts(&[(0, 10), (299_995, 300_000)])),
    // Unsatisfiable members are dropped when others are satisfiable.
    row("bytes=0-9,400000-", 206, Some("bytes 0-9/300000"), Want::Slice(0, 10)),
    // Ranges adding up past the blob: the whole blob.
    row("bytes=0-,0-", 200, None, Want::Whole),
    row("bytes=0-199999,100000-", 200, None, Want::Whole),
];

fn check(fx: &Fixture, blob: &crate::support::Blob, rows: &[Row]) {
    let t = token("*");
    for r in rows {
        let mut headers = vec![bearer(&t), ("range", r.range.to_owned())];
        if let Some(ir) = r.if_range {
            headers.push(("if-range", ir.replace("ETAG", &blob.etag())));
        }
        let resp = fx.get(&blob.url(), &headers);
        let ctx = format!("Range: {:?} If-Range: {:?}", r.range, r.if_range);
        assert_eq!(resp.status, StatusCode::from_u16(r.status).unwrap(), "{ctx}");
        assert_eq!(resp.header("content-range"), r.content_range, "{ctx}");
        assert_eq!(resp.header("accept-ranges"), Some("bytes"), "{ctx}");
        assert_eq!(resp.header("content-length").unwrap().parse::<usize>().unwrap(), resp.body.len(), "{ctx}");
        match r.want {
            Want::Whole => assert_eq!(resp.body, blob.bytes, "{ctx}"),
            Want::Slice(a, b) => assert_eq!(resp.body, blob.bytes.slice(a..b), "{ctx}"),
            Want::Parts(parts) => {
                let got = parse_multipart(&resp, blob.bytes.len());
                let want: Vec<_> = parts.iter().map(|&(a, b)| (a, b, blob.bytes.slice(a..b).to_vec())).collect();
                assert_eq!(got, want, "{ctx}");
            }
            Want::Error => assert!(resp.header("content-type").unwrap().starts_with("application/json"), "{ctx}"),
        }
    }
}

#[test]
fn range_exchanges_on_a_blob() {
    let fx = Fixture::new();
    check(&fx, &fx.big, BIG);
}

#[test]
fn if_range_needs_our_strong_etag() {
    let fx = Fixture::new();
    let rows = [
        Row { if_range: Some("ETAG"), ..row("bytes=0-9", 206, Some("bytes 0-9/300000"), Want::Slice(0, 10)) },
        Row { if_range: Some("\"0000\""), ..row("bytes=0-9", 200, None, Want::Whole) },
        Row { if_range: Some("W/ETAG"), ..row("bytes=0-9", 200, None, Want::Whole) },
        Row { if_range: Some("Tue, 01 Jul 2025 00:00:00 GMT"), ..row("bytes=0-9", 200, None, Want::Whole) },
    ];
    check(&fx, &fx.big, &rows);
}

#[test]
fn range_exchanges_on_an_empty_blob() {
    let fx = Fixture::new();
    let rows = [
        row("bytes=0-0", 416, Some("bytes */0"), Want::Error),
        row("bytes=0-", 416, Some("bytes */0"), Want::Error),
        row("bytes=-5", 416, Some("bytes */0"), Want::Error),
        row("bytes=", 200, None, Want::Whole),
        row("items=0-1", 200, None, Want::Whole),
    ];
    check(&fx, &fx.empty, &rows);
    let t = token("*");
    let resp = fx.get(&fx.empty.url(), &[bearer(&t)]);
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-length"), Some("0"));
}

#[test]
fn a_thousand_ranges_get_the_whole_blob() {
    let fx = Fixture::new();
    let many: Vec<String> = (0..1000).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect();
    let t = token("*");
    let resp = fx.get(&fx.big.url(), &[bearer(&t), ("range", format!("bytes={}", many.join(",")))]);
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body, fx.big.bytes);
    // 64 are still served as parts.
    let ok: Vec<String> = (0..64).map(|i| format!("{}-{}", i * 10, i * 10 + 1)).collect();
    let resp = fx.get(&fx.big.url(), &[bearer(&t), ("range", format!("bytes={}", ok.join(",")))]);
    assert_eq!(resp.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(parse_multipart(&resp, fx.big.bytes.len()).len(), 64);
}

/// Parses a `multipart/byteranges` body back into `(start, end, bytes)` parts, checking the
/// framing strictly.
pub fn parse_multipart(resp: &crate::support::Resp, len: usize) -> Vec<(usize, usize, Vec<u8>)> {
    let ct = resp.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/byteranges; boundary=").expect("multipart content type");
    let body = &resp.body[..];
    let delim = format!("--{boundary}");
    let mut pos = 0;
    let mut parts = Vec::new();
    loop {
        if pos > 0 {
            assert_eq!(&body[pos..pos + 2], b"\r\n");
            pos += 2;
        }
        assert_eq!(&body[pos..pos + delim.len()], delim.as_bytes());
        pos += delim.len();
        if &body[pos..pos + 2] == b"--" {
            assert_eq!(&body[pos..], b"--\r\n");
            break;
        }
        assert_eq!(&body[pos..pos + 2], b"\r\n");
        pos += 2;
        let end = pos + body[pos..].windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&body[pos..end]).unwrap();
        pos = end + 4;
        let mut range = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(": ").unwrap();
            if k.eq_ignore_ascii_case("content-range") {
                let v = v.strip_prefix("bytes ").unwrap();
                let (r, total) = v.split_once('/').unwrap();
                assert_eq!(total.parse::<usize>().unwrap(), len);
                let (a, b) = r.split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap() + 1));
            } else {
                assert!(k.eq_ignore_ascii_case("content-type"));
            }
        }
        let (a, b) = range.expect("each part has a Content-Range");
        parts.push((a, b, body[pos..pos + (b - a)].to_vec()));
        pos += b - a;
    }
    parts
}
