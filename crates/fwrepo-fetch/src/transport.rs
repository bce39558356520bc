//! The transport trait the engine fetches through, its request and response types, and the
//! per-transport count of bytes received.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::error::Result;

/// One HTTP request, as the engine makes them: a GET (with at most one byte range and an
/// optional `If-None-Match`) or a POST of a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Absolute path (and query) on the peer, starting with `/`.
    pub path: String,
    /// Bytes `start..end` (end exclusive) of the resource; a single range only.
    pub range: Option<(u64, u64)>,
    /// An entity tag from an earlier answer: a 304 means unchanged.
    pub if_none_match: Option<String>,
    /// `Authorization: Bearer` token.
    pub bearer: Option<Arc<str>>,
    /// JSON body of a POST.
    pub json: Option<Bytes>,
}

/// The methods the engine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Request {
    /// A plain GET of `path`.
    pub fn get(path: impl Into<String>) -> Request {
        Request { method: Method::Get, path: path.into(), range: None, if_none_match: None, bearer: None, json: None }
    }

    /// A POST of `json` to `path`.
    pub fn post_json(path: impl Into<String>, json: Bytes) -> Request {
        Request { method: Method::Post, json: Some(json), ..Request::get(path) }
    }

    /// This request for bytes `start..end` only.
    pub fn with_range(mut self, start: u64, end: u64) -> Request {
        self.range = Some((start, end));
        self
    }

    /// The `Range` header value for [`Request::range`].
    pub fn range_header(&self) -> Option<String> {
        self.range.map(|(start, end)| format!("bytes={start}-{}", end.saturating_sub(1)))
    }
}

/// A response head and its body, still to be read.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

/// What a transport streams a body from.
pub trait BodySource: Send {
    /// The next piece of the body, `None` at its end.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>>;
}

/// A response body: pieces as they arrive, each counted into the transport's
/// [`WireCounter`] when it is read.
pub struct Body {
    source: Box<dyn BodySource>,
    wire: WireCounter,
}

impl Body {
    pub fn new(source: Box<dyn BodySource>, wire: WireCounter) -> Body {
        Body { source, wire }
    }

    /// The next piece, `None` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let piece = self.source.next().await?;
        if let Some(p) = &piece {
            self.wire.add_body(p.len() as u64);
        }
        Ok(piece)
    }
}

/// Something the engine can send requests through: real HTTP ([`crate::HttpTransport`]) or
/// a map of files in memory ([`crate::MemoryTransport`]) for tests.
pub trait Transport: Send + Sync {
    /// Sends `req` and returns the response head; the body is read through
    /// [`Response::body`]. Any status is a response, not an error; errors are for requests
    /// that got no response.
    fn send(&self, req: Request) -> impl Future<Output = Result<Response>> + Send;

    /// What this transport has received so far.
    fn wire(&self) -> &WireCounter;
}

/// The size of a response head in its HTTP/1.1 form: status line, each field as
/// `name: value\r\n`, and the blank line. (Over HTTP/2 the compressed head is smaller, so
/// counting this never undercounts.)
pub fn head_len(status: StatusCode, headers: &HeaderMap) -> u64 {
    let reason = status.canonical_reason().map_or(0, |r| r.len() + 1);
    let mut n = "HTTP/1.1 200".len() + reason + 2;
    for (name, value) in headers {
        n += name.as_str().len() + 2 + value.len() + 2;
    }
    (n + 2) as u64
}

/// Bytes received by one transport: response heads and bodies as received, and the number of
/// requests sent. Cheap to clone; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct WireCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    head: AtomicU64,
    body: AtomicU64,
    requests: AtomicU64,
}

/// A snapshot of a [`WireCounter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Status lines and header fields.
    pub head_bytes: u64,
    /// Body bytes read.
    pub body_bytes: u64,
    /// Requests sent.
    pub requests: u64,
}

impl WireStats {
    /// Every byte received: heads and bodies.
    pub fn wire_bytes(&self) -> u64 {
        self.head_bytes + self.body_bytes
    }
}

impl WireCounter {
    pub fn add_request(&self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response head ([`head_len`]).
    pub fn add_head(&self, status: StatusCode, headers: &HeaderMap) {
        self.0.head.fetch_add(head_len(status, headers), Ordering::Relaxed);
    }

    pub fn add_body(&self, n: u64) {
        self.0.body.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stats(&self) -> WireStats {
        WireStats {
            head_bytes: self.0.head.load(Ordering::Relaxed),
            body_bytes: self.0.body.load(Ordering::Relaxed),
            requests: self.0.requests.load(Ordering::Relaxed),
        }
    }
}
