//! An in-memory transport for tests: serves a map of path → bytes like a small HTTP server
//! (single `Range`, `If-None-Match`, 404), and can be told to misbehave on chosen paths.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fwrepo_chunk::Digest;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::error::Result;
use crate::transport::{Body, BodySource, Method, Request, Response, Transport, WireCounter};

/// Pieces a body is streamed in, so readers see bodies split at arbitrary places.
const PIECE: usize = 16 * 1024;

/// A way to misbehave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Flip all bits of the byte at this offset of the body sent.
    FlipByte { offset: u64 },
    /// End the body (cleanly) after this many bytes.
    Truncate { keep: u64 },
    /// Send this many body bytes, then nothing, forever.
    Stall { after: u64 },
    /// Answer with this status and an empty body.
    Status(u16),
    /// Answer a `Range` request with 200 and the whole file.
    IgnoreRange,
    /// Send this many body bytes, then fail as a reset connection would.
    DropAfter { bytes: u64 },
    /// Serve these bytes instead of the stored file.
    Replace(Bytes),
}

#[derive(Clone, Debug)]
struct Rule {
    path: String,
    fault: Fault,
    /// Requests it still applies to; `None` for all.
    remaining: Option<u32>,
}

/// A request the transport received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    pub range: Option<(u64, u64)>,
    pub if_none_match: Option<String>,
    pub bearer: Option<String>,
    pub json: Option<Bytes>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Bytes>,
    rules: Vec<Rule>,
    log: Vec<Logged>,
}

/// The in-memory peer. Clones share files, faults and the log.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    state: Arc<Mutex<State>>,
    wire: WireCounter,
}

impl MemoryTransport {
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `bytes` at `path` (GET, or the answer to a POST).
    pub fn insert(&self, path: impl Into<String>, bytes: impl Into<Bytes>) {
        self.state().files.insert(path.into(), bytes.into());
    }

    /// The bytes served at `path`, faults aside.
    pub fn file(&self, path: &str) -> Option<Bytes> {
        self.state().files.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.state().files.remove(path);
    }

    /// Misbehaves on requests for `path` (exactly, or every path under it when it ends in
    /// `/`): the next `times` requests, or all of them when `None`. Every rule that applies
    /// to a request is used (say, `Replace` with `IgnoreRange`); of the faults that change
    /// how a body is sent, the first added wins.
    pub fn fault(&self, path: impl Into<String>, fault: Fault, times: Option<u32>) {
        self.state().rules.push(Rule { path: path.into(), fault, remaining: times });
    }

    pub fn clear_faults(&self) {
        self.state().rules.clear();
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    fn answer(&self, req: &Request) -> (StatusCode, HeaderMap, Bytes, Option<Fault>) {
        let (status, headers, body, faults) = self.answer_all(req);
        let body_fault = faults.into_iter().find(|f| {
            matches!(f, Fault::FlipByte { .. } | Fault::Truncate { .. } | Fault::Stall { .. } | Fault::DropAfter { .. })
        });
        (status, headers, body, body_fault)
    }

    fn answer_all(&self, req: &Request) -> (StatusCode, HeaderMap, Bytes, Vec<Fault>) {
        let mut st = self.state();
        st.log.push(Logged {
            method: req.method,
            path: req.path.clone(),
            range: req.range,
            if_none_match: req.if_none_match.clone(),
            bearer: req.bearer.as_deref().map(str::to_owned),
            json: req.json.clone(),
        });
        let mut faults = Vec::new();
        for rule in st.rules.iter_mut() {
            let applies = rule.path == req.path || (rule.path.ends_with('/') && req.path.starts_with(&rule.path));
            if applies && rule.remaining != Some(0) {
                if let Some(n) = &mut rule.remaining {
                    *n -= 1;
                }
                faults.push(rule.fault.clone());
            }
        }
        let mut headers = HeaderMap::new();
        if let Some(code) = faults.iter().find_map(|f| if let Fault::Status(c) = f { Some(*c) } else { None }) {
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                Bytes::new(),
                faults,
            );
        }
        let replaced = faults.iter().find_map(|f| if let Fault::Replace(b) = f { Some(b.clone()) } else { None });
        let Some(file) = replaced.or_else(|| st.files.get(&req.path).cloned()) else {
            return (StatusCode::NOT_FOUND, headers, Bytes::new(), faults);
        };
        let ignore_range = faults.contains(&Fault::IgnoreRange);
        let etag = format!("\"{}\"", Digest::of(&file).to_hex());
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        if req.method == Method::Get && req.if_none_match.as_deref() == Some(etag.as_str()) {
            return (StatusCode::NOT_MODIFIED, headers, Bytes::new(), faults);
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let len = file.len() as u64;
        match req.range {
            Some((start, end)) if !ignore_range && req.method == Method::Get => {
                if start >= len || end <= start {
                    headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{len}")).unwrap());
                    return (StatusCode::RANGE_NOT_SATISFIABLE, headers, Bytes::new(), faults);
                }
                let end = end.min(len);
                let cr = format!("bytes {start}-{}/{len}", end - 1);
                headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
                (StatusCode::PARTIAL_CONTENT, headers, file.slice(start as usize..end as usize), faults)
            }
            _ => (StatusCode::OK, headers, file, faults),
        }
    }
}

impl Transport for MemoryTransport {
    fn send(&self, req: Request) -> impl Future<Output = Result<Response>> + Send {
        let (status, mut headers, mut body, fault) = self.answer(&req);
        self.wire.add_request();
        let mut stall_at = None;
        let mut drop_at = None;
        match fault {
            Some(Fault::FlipByte { offset }) if (offset as usize) < body.len() => {
                let mut b = body.to_vec();
                b[offset as usize] ^= 0xff;
                body = Bytes::from(b);
            }
            Some(Fault::Truncate { keep }) => body.truncate(keep as usize),
            Some(Fault::Stall { after }) => stall_at = Some(after as usize),
            Some(Fault::DropAfter { bytes }) => drop_at = Some(bytes as usize),
            _ => {}
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        self.wire.add_head(status, &headers);
        let source = Pieces { body, pos: 0, stall_at, drop_at, path: req.path };
        let wire = self.wire.clone();
        async move { Ok(Response { status, headers, body: Body::new(Box::new(source), wire) }) }
    }

    fn wire(&self) -> &WireCounter {
        &self.wire
    }
}

/// A body served in pieces, possibly stalling or failing part-way.
struct Pieces {
    body: Bytes,
    pos: usize,
    stall_at: Option<usize>,
    drop_at: Option<usize>,
    path: String,
}

impl BodySource for Pieces {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>> {
        Box::pin(async move {
            let limit = [self.stall_at, self.drop_at, Some(self.body.len())].into_iter().flatten().min().unwrap();
            let limit = limit.min(self.body.len());
            if self.pos >= limit {
                if self.stall_at.is_some_and(|s| s <= self.pos) {
                    std::future::pending::<()>().await;
                }
                if self.drop_at.is_some_and(|d| d <= self.pos) {
                    return Err(crate::Error::Transport {
                        path: self.path.clone(),
                        reason: "connection reset by peer".into(),
                    });
                }
                return Ok(None);
            }
            let end = (self.pos + PIECE).min(limit);
            let piece = self.body.slice(self.pos..end);
            self.pos = end;
            Ok(Some(piece))
        })
    }
}
