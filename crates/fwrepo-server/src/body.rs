//! The response body: a sequence of `Bytes` handed to hyper as they are — slices of the mapped
//! packs interleaved with small framing buffers — so no payload byte is copied.
//!
//! A part may also carry the pack-file extent its bytes came from ([`Part::Extent`]): hyper
//! sends the mapped slice, the plain HTTP/1.1 connection path (`crate::http1`) sends the
//! extent with `sendfile`. Both are the same verified bytes.
//!
//! The body counts what it hands out into the metrics and, for gated downloads, writes the
//! audit record when it is dropped: after the last frame, or early when the client went away,
//! in which case the record shows the bytes actually handed to the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fwrepo_store::{Extent, Extents};
use http_body::{Frame, SizeHint};
use smallvec::SmallVec;

use crate::audit::AuditRecord;
use crate::server::InFlight;
use crate::state::ServerState;

/// One piece of a body.
pub(crate) enum Part {
    Bytes(Bytes),
    /// Blob bytes from a pack file.
    Extent(Extent),
}

impl Part {
    pub(crate) fn bytes(&self) -> &Bytes {
        match self {
            Part::Bytes(b) => b,
            Part::Extent(e) => &e.bytes,
        }
    }
}

/// The parts of a body. One is kept inline: a single range, a whole blob stored in one go or
/// a small document is a body that allocates nothing.
pub(crate) type Parts = SmallVec<[Part; 1]>;

/// A response body of known length.
pub struct Body {
    parts: Parts,
    /// The first part not yet handed out.
    next: usize,
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
        Body::from_parts(smallvec::smallvec![Part::Bytes(bytes)])
    }

    /// A body of these chunks, in order.
    pub fn from_chunks(chunks: Vec<Bytes>) -> Body {
        Body::from_parts(chunks.into_iter().map(Part::Bytes).collect())
    }

    /// A body of these blob extents, in order.
    pub fn from_extents(extents: Extents) -> Body {
        Body::from_parts(extents.into_iter().map(Part::Extent).collect())
    }

    fn from_parts(parts: Parts) -> Body {
        let remaining = parts.iter().map(|c| c.bytes().len() as u64).sum();
        Body { parts, next: 0, remaining, sent: 0, tracker: None, in_flight: None }
    }

    /// The parts not yet sent, for a connection that writes them itself; it reports what it
    /// wrote with [`Body::sent`], so metrics and the audit record count the bytes handed over.
    pub(crate) fn take_parts(&mut self) -> Parts {
        let mut parts = std::mem::take(&mut self.parts);
        parts.drain(..std::mem::take(&mut self.next));
        parts
    }

    /// Counts `n` bytes of the parts taken as handed to the connection.
    pub(crate) fn sent(&mut self, n: u64) {
        self.remaining = self.remaining.saturating_sub(n);
        self.sent += n;
    }

    /// Counts sent bytes into `state`'s metrics and, with `audit`, logs the download on drop.
    pub(crate) fn track(&mut self, state: &Arc<ServerState>) {
        if self.tracker.is_none() {
            self.tracker = Some(Tracker { state: Arc::clone(state), audit: None });
        }
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
        let this = &mut *self;
        while let Some(part) = this.parts.get_mut(this.next) {
            this.next += 1;
            let c = match std::mem::replace(part, Part::Bytes(Bytes::new())) {
                Part::Bytes(b) => b,
                Part::Extent(e) => e.bytes,
            };
            if c.is_empty() {
                continue;
            }
            let n = c.len() as u64;
            this.remaining -= n;
            this.sent += n;
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        Poll::Ready(None)
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
