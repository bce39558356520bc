//! The response body: a sequence of `Bytes` handed to hyper as they are — slices of the mapped
//! packs interleaved with small framing buffers — so no payload byte is copied.
//!
//! The body counts what it hands out into the metrics and, for gated downloads, writes the
//! audit record when it is dropped: after the last frame, or early when the client went away,
//! in which case the record shows the bytes actually handed to the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::audit::AuditRecord;
use crate::server::InFlight;
use crate::state::ServerState;

/// A response body of known length.
pub struct Body {
    chunks: std::vec::IntoIter<Bytes>,
    remaining: u64,
    sent: u64,
    tracker: Option<Tracker>,
    /// Keeps the connection's request count up until the body is dropped.
    in_flight: Option<InFlight>,
}

/// Where the body reports what it sent.
struct Tracker {
    state: Arc<ServerState>,
    audit: Option<AuditRecord>,
}

impl Body {
    pub fn empty() -> Body {
        Body::from_chunks(Vec::new())
    }

    pub fn full(bytes: Bytes) -> Body {
        Body::from_chunks(vec![bytes])
    }

    /// A body of these chunks, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Body {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Body { chunks: chunks.into_iter(), remaining, sent: 0, tracker: None, in_flight: None }
    }

    /// Counts sent bytes into `state`'s metrics and, with `audit`, logs the download on drop.
    pub(crate) fn tracked(mut self, state: Arc<ServerState>) -> Body {
        if self.tracker.is_none() {
            self.tracker = Some(Tracker { state, audit: None });
        }
        self
    }

    /// Counts this response's request as in progress on its connection until dropped.
    pub(crate) fn with_in_flight(mut self, guard: InFlight) -> Body {
        self.in_flight = Some(guard);
        self
    }

    pub(crate) fn set_audit(&mut self, state: &Arc<ServerState>, audit: AuditRecord) {
        match &mut self.tracker {
            Some(t) => t.audit = Some(audit),
            None => self.tracker = Some(Tracker { state: Arc::clone(state), audit: Some(audit) }),
        }
    }

    /// Bytes still to be sent.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        loop {
            match self.chunks.next() {
                None => return Poll::Ready(None),
                Some(c) if c.is_empty() => continue,
                Some(c) => {
                    let n = c.len() as u64;
                    self.remaining -= n;
                    self.sent += n;
                    return Poll::Ready(Some(Ok(Frame::data(c))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(t) = self.tracker.take() {
            t.state.metrics().add_bytes_sent(self.sent);
            if let Some(mut record) = t.audit {
                record.bytes = self.sent;
                t.state.audit(&record);
            }
        }
    }
}
