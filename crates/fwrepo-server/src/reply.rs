//! A response as the handlers build it: a status, a few header fields in the order they were
//! set, and a [`Body`].
//!
//! Responses here carry three to seven fields, most of them static text. An
//! `http::HeaderMap` hashes each name, allocates its index and entry tables on the first
//! insert and frees them afterwards, and is walked through those tables again when the head
//! is written. A [`Reply`] keeps the fields in a small inline list instead: a new reply's
//! fields are appended with no search ([`HeadFields::append`]), and the plain HTTP/1.1 loop
//! (`crate::http1`) writes the head straight from the list. That took about 1,050 of the
//! 19,600 instructions of a 64 KiB range request (docs/BENCHMARKS.md). Hyper's connections
//! get an `http::Response` built from it ([`Reply::into_response`]), with the same fields in
//! the same order.
//!
//! The list is inline, so a reply is moved by value: the body's audit record and six fields
//! make it about 650 bytes, and more inline fields cost more in copies than they save.
//!
//! A field's value is what `http` holds, or for a range response's `Content-Range` its three
//! numbers ([`FieldValue::Range`]), written out as text only where the head is written:
//! formatting them into a `HeaderValue` was the two allocations a 64 KiB range response still
//! made in its head.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use smallvec::SmallVec;

use crate::body::Body;

/// Fields kept inline (a HEAD of a range has six); a reply with more spills them to the heap.
const INLINE_FIELDS: usize = 6;

/// A response: status, header fields, body.
pub(crate) struct Reply {
    status: StatusCode,
    fields: HeadFields,
    body: Body,
}

/// The value of a field of a [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldValue {
    Header(HeaderValue),
    /// `bytes <range.start>-<range.end - 1>/<len>`, for a non-empty `range`.
    Range {
        range: Range<u64>,
        len: u64,
    },
}

impl FieldValue {
    /// Appends the value's text to `out`.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        match self {
            FieldValue::Header(v) => out.extend_from_slice(v.as_bytes()),
            FieldValue::Range { range, len } => crate::range::put_content_range(out, range, *len),
        }
    }

    /// The value's text.
    pub(crate) fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            FieldValue::Header(v) => Cow::Borrowed(v.as_bytes()),
            FieldValue::Range { .. } => {
                let mut out = Vec::new();
                self.put(&mut out);
                Cow::Owned(out)
            }
        }
    }

    fn into_header_value(self) -> HeaderValue {
        match self {
            FieldValue::Header(v) => v,
            range => HeaderValue::from_maybe_shared(Bytes::from(range.bytes().into_owned())).expect("ASCII digits"),
        }
    }
}

/// The header fields of a [`Reply`], in order. A name may appear more than once (a list
/// written as several fields), as in an `http::HeaderMap`.
#[derive(Default)]
pub(crate) struct HeadFields(SmallVec<[(HeaderName, FieldValue); INLINE_FIELDS]>);

impl HeadFields {
    /// Adds a field after the others, whether or not `name` is set already (as
    /// `HeaderMap::append`). What a handler uses to build a new reply: no search.
    pub(crate) fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.push((name, FieldValue::Header(value)));
    }

    /// Adds `Content-Range` for `range` of a representation of `len` bytes after the others.
    pub(crate) fn append_content_range(&mut self, range: Range<u64>, len: u64) {
        debug_assert!(range.start < range.end, "a satisfied range is not empty");
        self.0.push((http::header::CONTENT_RANGE, FieldValue::Range { range, len }));
    }

    /// Sets `name` to `value` alone: the first field of that name gets the value in its
    /// place, any others are removed; a name not set is added last (as `HeaderMap::insert`).
    pub(crate) fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        let value = FieldValue::Header(value);
        match self.0.iter().position(|(n, _)| *n == name) {
            Some(at) => {
                self.0[at].1 = value;
                let mut i = at + 1;
                while i < self.0.len() {
                    if self.0[i].0 == name {
                        self.0.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
            None => self.0.push((name, value)),
        }
    }

    /// Removes every field named `name`, returning the first one's value.
    pub(crate) fn remove(&mut self, name: &HeaderName) -> Option<FieldValue> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        let first = self.0.remove(at).1;
        self.0.retain(|(n, _)| n != name);
        Some(first)
    }

    /// The value of the first field named `name`.
    pub(crate) fn get(&self, name: &HeaderName) -> Option<&FieldValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The fields, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&HeaderName, &FieldValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Reply {
    /// A 200 with `body` and no fields.
    pub(crate) fn new(body: Body) -> Reply {
        Reply { status: StatusCode::OK, fields: HeadFields::default(), body }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    pub(crate) fn headers(&self) -> &HeadFields {
        &self.fields
    }

    pub(crate) fn headers_mut(&mut self) -> &mut HeadFields {
        &mut self.fields
    }

    pub(crate) fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    pub(crate) fn body(&self) -> &Body {
        &self.body
    }

    /// The body alone, once the head has been written.
    pub(crate) fn into_body(self) -> Body {
        self.body
    }

    /// The same response as an `http::Response`, for hyper.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.fields.0 {
            map.append(name, value.into_header_value());
        }
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = map;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn names(f: &HeadFields) -> Vec<&str> {
        f.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn text<V: std::borrow::Borrow<FieldValue>>(v: Option<V>) -> Vec<u8> {
        v.expect("the field is set").borrow().bytes().into_owned()
    }

    #[test]
    fn insert_replaces_in_place_and_remove_takes_the_field_out() {
        let mut r = Reply::new(Body::empty());
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("a/b"));
        h.insert(header::ETAG, HeaderValue::from_static("\"1\""));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        h.insert(header::ETAG, HeaderValue::from_static("\"2\""));
        assert_eq!(names(r.headers()), ["content-type", "etag", "cache-control"]);
        assert_eq!(text(r.headers().get(&header::ETAG)), b"\"2\"");
        assert_eq!(text(r.headers_mut().remove(&header::ETAG)), b"\"2\"");
        assert_eq!(r.headers_mut().remove(&header::ETAG), None);
        assert_eq!(r.headers().get(&header::ETAG), None);
        assert_eq!(names(r.headers()), ["content-type", "cache-control"]);
    }

    #[test]
    fn appended_fields_are_all_kept_and_insert_leaves_one() {
        let mut r = Reply::new(Body::empty());
        let h = r.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("a"));
        h.append(header::ETAG, HeaderValue::from_static("\"1\""));
        h.append(header::VARY, HeaderValue::from_static("b"));
        assert_eq!(names(r.headers()), ["vary", "etag", "vary"]);
        assert_eq!(text(r.headers().get(&header::VARY)), b"a");
        let resp = Reply { status: StatusCode::OK, fields: HeadFields(r.headers().0.clone()), body: Body::empty() };
        let values: Vec<_> = resp.into_response().headers().get_all(header::VARY).iter().cloned().collect();
        assert_eq!(values, ["a", "b"]);
        r.headers_mut().insert(header::VARY, HeaderValue::from_static("c"));
        assert_eq!(names(r.headers()), ["vary", "etag"]);
        assert_eq!(text(r.headers().get(&header::VARY)), b"c");
        r.headers_mut().append(header::VARY, HeaderValue::from_static("d"));
        assert_eq!(text(r.headers_mut().remove(&header::VARY)), b"c");
        assert_eq!(names(r.headers()), ["etag"]);
    }

    #[test]
    fn more_fields_than_fit_inline_are_all_kept() {
        let mut r = Reply::new(Body::empty());
        for i in 0..INLINE_FIELDS * 2 {
            let name = HeaderName::from_bytes(format!("x-field-{i}").as_bytes()).unwrap();
            r.headers_mut().insert(name, HeaderValue::from(i));
        }
        assert_eq!(r.headers().len(), INLINE_FIELDS * 2);
        let resp = r.into_response();
        assert_eq!(resp.headers().len(), INLINE_FIELDS * 2);
        assert_eq!(resp.headers()["x-field-11"], "11");
    }

    #[test]
    fn the_response_has_the_same_status_fields_and_order() {
        let mut r = Reply::new(Body::full(bytes::Bytes::from_static(b"hello")));
        r.set_status(StatusCode::PARTIAL_CONTENT);
        r.headers_mut().append_content_range(0..5, 9);
        r.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        assert_eq!(text(r.headers().get(&header::CONTENT_RANGE)), b"bytes 0-4/9");
        let resp = r.into_response();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        let got: Vec<_> = resp.headers().iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(got, [("content-range", "bytes 0-4/9"), ("accept-ranges", "bytes")]);
        assert_eq!(resp.body().len(), 5);
    }
}
