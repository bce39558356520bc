//! RFC 9110 range requests, pure: parsing `Range`, deciding what to answer (`If-Range`,
//! coalescing, the abuse limits), conditional `If-Match` and `If-None-Match`, and laying out a
//! `multipart/byteranges` body.
//!
//! Nothing here touches the network or the store, so the whole request → response decision is
//! covered by a table of exchanges. The single-range path (the common one: a client fetching
//! missing chunks) allocates nothing; several ranges cost one `Vec`.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// More range-specs than this in one request are answered with the whole representation.
/// Each part costs a header and a store lookup; legitimate delta clients coalesce to far fewer.
pub const MAX_RANGES: usize = 64;

/// What to send for a GET/HEAD of a representation of known length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangePlan {
    /// 200: the whole representation (no `Range`, an ignored one, or a failed `If-Range`).
    Full,
    /// 206 with `Content-Range: bytes a-b/len`.
    Single(Range<u64>),
    /// 206 `multipart/byteranges`: at least two ranges, ascending, disjoint and not adjacent.
    Multi(Vec<Range<u64>>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Decides the answer to a request with the given `Range` and `If-Range` header values for a
/// representation of `len` bytes whose strong entity tag is `etag` (quotes included).
///
/// Choices the RFC leaves to the server, made here:
/// * a `Range` that does not parse (`bytes=`, `bytes=5-1`, garbage) is ignored: 200;
/// * a unit other than `bytes` is ignored: 200;
/// * more than [`MAX_RANGES`] specs, or satisfiable ranges whose lengths add up past `len`
///   (overlap abuse), are answered with the whole representation: 200;
/// * `If-Range` matches only our strong entity tag, byte for byte; a date never matches, since
///   blobs carry no `Last-Modified`.
pub fn plan(range: Option<&[u8]>, if_range: Option<&[u8]>, etag: &str, len: u64) -> RangePlan {
    let Some(range) = range else { return RangePlan::Full };
    if let Some(tag) = if_range
        && trim(tag) != etag.as_bytes()
    {
        return RangePlan::Full;
    }
    let Some(set) = strip_bytes_unit(range) else { return RangePlan::Full };

    // First pass: syntax, count and total, without allocating.
    let mut count = 0usize;
    let mut satisfiable = 0usize;
    let mut total = 0u64;
    let mut single = 0..0;
    for spec in set.split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            // `1#` lists allow empty elements; they carry nothing.
            continue;
        }
        count += 1;
        if count > MAX_RANGES {
            return RangePlan::Full;
        }
        let Some(spec) = parse_spec(spec) else { return RangePlan::Full };
        if let Some(r) = spec.resolve(len) {
            satisfiable += 1;
            total = total.saturating_add(r.end - r.start);
            single = r;
        }
    }
    if count == 0 {
        return RangePlan::Full;
    }
    if satisfiable == 0 {
        return RangePlan::Unsatisfiable;
    }
    if total > len {
        return RangePlan::Full;
    }
    if satisfiable == 1 {
        return RangePlan::Single(single);
    }

    // Second pass for several ranges: collect, sort, coalesce overlapping and adjacent ones.
    let mut ranges: Vec<Range<u64>> = Vec::with_capacity(satisfiable);
    for spec in set.split(|&b| b == b',') {
        let spec = trim(spec);
        if spec.is_empty() {
            continue;
        }
        if let Some(r) = parse_spec(spec).and_then(|s| s.resolve(len)) {
            ranges.push(r);
        }
    }
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() == 1 { RangePlan::Single(merged.pop().expect("one range")) } else { RangePlan::Multi(merged) }
}

/// Whether an `If-None-Match` value matches `etag` under the weak comparison RFC 9110 asks for
/// (so `W/"x"` matches `"x"`); `*` matches any existing representation.
pub fn if_none_match(value: &[u8], etag: &str) -> bool {
    let value = trim(value);
    if value == b"*" {
        return true;
    }
    let want = etag.as_bytes();
    let want = want.strip_prefix(b"W/").unwrap_or(want);
    value.split(|&b| b == b',').any(|tag| {
        let tag = trim(tag);
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == want
    })
}

/// Whether an `If-Match` field value lets a request on the representation tagged `etag`
/// (strong, quotes included) proceed (RFC 9110 §13.1.1): `*`, or a list naming `etag` by
/// strong comparison, so a weak `W/` tag never matches. `false` means 412.
pub fn if_match(value: &[u8], etag: &str) -> bool {
    let value = trim(value);
    value == b"*" || value.split(|&b| b == b',').any(|tag| trim(tag) == etag.as_bytes())
}

/// One parsed range-spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last` or `first-` (last = None).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl Spec {
    /// The byte range this spec selects from a representation of `len` bytes, or `None` when
    /// it selects nothing (first byte past the end, zero-length suffix, empty representation).
    fn resolve(self, len: u64) -> Option<Range<u64>> {
        match self {
            Spec::From { first, last } => {
                if first >= len {
                    return None;
                }
                let end = match last {
                    Some(last) => last.saturating_add(1).min(len),
                    None => len,
                };
                Some(first..end)
            }
            Spec::Suffix(n) => {
                if n == 0 || len == 0 {
                    return None;
                }
                Some(len - n.min(len)..len)
            }
        }
    }
}

/// `bytes=` (unit case-insensitive) removed, or `None` for another unit or no `=`.
fn strip_bytes_unit(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, rest) = (&value[..eq], &value[eq + 1..]);
    unit.eq_ignore_ascii_case(b"bytes").then_some(rest)
}

/// Parses one trimmed, non-empty range-spec; `None` when it is not valid syntax.
fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(parse_num(last)?));
    }
    let first = parse_num(first)?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = parse_num(last)?;
    // `last < first` makes the spec (and so the whole header) invalid.
    (last >= first).then_some(Spec::From { first, last: Some(last) })
}

/// Decimal digits, saturating at `u64::MAX`: a huge position is still a valid position (one
/// past any representation we hold), not a syntax error.
fn parse_num(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(n)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Appends `bytes a-b/len` for a non-empty `range` of `len` bytes (numbers by `itoa`: this is
/// on every range response, and `format!` costs more than the rest of the head).
pub fn put_content_range(out: &mut impl BufMut, range: &Range<u64>, len: u64) {
    out.put_slice(b"bytes ");
    let mut digits = itoa::Buffer::new();
    out.put_slice(digits.format(range.start).as_bytes());
    out.put_u8(b'-');
    out.put_slice(digits.format(range.end - 1).as_bytes());
    out.put_u8(b'/');
    out.put_slice(digits.format(len).as_bytes());
}

/// `bytes */len`, the `Content-Range` of a 416.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

/// The framing of a `multipart/byteranges` body: one header before each part's bytes and a
/// closing delimiter. The payload itself is not here: the server interleaves these with
/// slices of the store, so no payload byte is copied.
#[derive(Clone, Debug)]
pub struct Multipart {
    /// Without the `--`; the same for every part of the response.
    pub boundary: String,
    /// `(header, range)` per part, in order. Each header starts with the CRLF that ends the
    /// previous part (except the first) and ends with the blank line before the bytes.
    pub parts: Vec<(Bytes, Range<u64>)>,
    /// `CRLF--boundary--CRLF`.
    pub trailer: Bytes,
}

impl Multipart {
    /// Lays out `ranges` of a representation of `len` bytes and type `content_type`.
    /// `boundary` must not occur in the payload; callers derive it from a hash.
    pub fn new(boundary: String, ranges: &[Range<u64>], len: u64, content_type: &str) -> Multipart {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut h = BytesMut::with_capacity(96 + boundary.len());
                if i > 0 {
                    h.put_slice(b"\r\n");
                }
                h.put_slice(b"--");
                h.put_slice(boundary.as_bytes());
                h.put_slice(b"\r\nContent-Type: ");
                h.put_slice(content_type.as_bytes());
                h.put_slice(b"\r\nContent-Range: ");
                put_content_range(&mut h, r, len);
                h.put_slice(b"\r\n\r\n");
                (h.freeze(), r.clone())
            })
            .collect();
        let trailer = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Multipart { boundary, parts, trailer }
    }

    /// The body's exact length.
    pub fn content_length(&self) -> u64 {
        self.parts.iter().map(|(h, r)| h.len() as u64 + (r.end - r.start)).sum::<u64>() + self.trailer.len() as u64
    }

    /// The `Content-Type` of the whole response.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_what_format_writes() {
        for (r, len) in
            [(0..1, 1), (0..10, 10), (5..6, 100), (1 << 20..(1 << 20) + 65536, 8 << 20), (0..u64::MAX, u64::MAX)]
        {
            let mut out = Vec::new();
            put_content_range(&mut out, &r, len);
            assert_eq!(out, format!("bytes {}-{}/{}", r.start, r.end - 1, len).as_bytes());
        }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(parse_spec(b"0-0"), Some(Spec::From { first: 0, last: Some(0) }));
        assert_eq!(parse_spec(b"5-"), Some(Spec::From { first: 5, last: None }));
        assert_eq!(parse_spec(b"-7"), Some(Spec::Suffix(7)));
        assert_eq!(parse_spec(b"5-1"), None);
        assert_eq!(parse_spec(b"-"), None);
        assert_eq!(parse_spec(b"a-1"), None);
        assert_eq!(parse_spec(b"1-2-3"), None);
        assert_eq!(parse_spec(b"+1-2"), None);
        assert_eq!(parse_num(b"99999999999999999999999999"), Some(u64::MAX));
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(if_none_match(b"\"a\"", "\"a\""));
        assert!(if_none_match(b"W/\"a\"", "\"a\""));
        assert!(if_none_match(b"\"b\", \"a\"", "\"a\""));
        assert!(if_none_match(b"*", "\"a\""));
        assert!(!if_none_match(b"\"b\"", "\"a\""));
        assert!(!if_none_match(b"a", "\"a\""));
    }

    #[test]
    fn multipart_length_counts_every_byte() {
        let m = Multipart::new("B".into(), &[0..3, 10..12], 20, "application/octet-stream");
        let mut body = Vec::new();
        for (h, r) in &m.parts {
            body.extend_from_slice(h);
            body.extend(std::iter::repeat_n(b'x', (r.end - r.start) as usize));
        }
        body.extend_from_slice(&m.trailer);
        assert_eq!(body.len() as u64, m.content_length());
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(
            "--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-2/20\r\n\r\nxxx\r\n--B\r\n"
        ));
        assert!(text.ends_with("xx\r\n--B--\r\n"));
    }
}
