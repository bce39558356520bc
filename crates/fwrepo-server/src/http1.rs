//! Plain-TCP HTTP/1.1 connections served by a small loop of fwrepo's own, so blob bytes go out
//! with `sendfile(2)` from the pack files instead of being copied out of the mapping into the
//! socket (hyper writes buffers; it has no way to send a file).
//!
//! The loop handles only the common case and hands everything else to hyper:
//!
//! * a request head is parsed with `httparse` (the parser hyper uses); it must be `GET` or
//!   `HEAD`, HTTP/1.1, with no body (`Content-Length` other than 0, `Transfer-Encoding`),
//!   no `Expect` and no upgrade. Anything else — HTTP/2 with prior knowledge, `POST`, a head
//!   that does not parse or outgrows `max_header_bytes` — goes to hyper together with every
//!   byte read so far ([`End::Handoff`]), and hyper serves the connection from then on, with
//!   all of its own checks and answers (400, 431, …).
//! * the request goes through the same service code as hyper's
//!   ([`crate::service::respond_now`], the part of `respond` that never waits: a `GET` or
//!   `HEAD` reads no body): same routes, gate, audit record and metrics. The response head is
//!   written before the first wait for the socket, so the connection's task keeps only the
//!   body across it. The handlers read the head's fields where
//!   they stand in the read buffer ([`crate::service::Fields::Raw`]): no header map is built
//!   and no field copied. The response head is written by
//!   [`write_head`], then the body: byte parts with one `sendmsg` (the head goes in the same
//!   call), extents with `sendfile` (one per run of a pack: a range of a blob stored in one go
//!   is one call). The extents are those the store verified when it handed out the
//!   same bytes as slices ([`fwrepo_store::Store::read_extents`]), so "no wrong bytes are ever
//!   served" holds here as on the mapping path.
//! * the socket is non-blocking and every wait is on tokio's readiness (`readable`,
//!   `writable`), so a client that stops reading parks its task, never a runtime thread. A
//!   read that leaves room in the buffer counts as having emptied the socket ([`read_some`]),
//!   so waiting for the next request costs no `recv` that fails with `EAGAIN`.
//!
//! The read and head buffers are lent per request ([`Buffers`]): an idle keep-alive
//! connection holds none, and the next request on the thread reuses the pair given back last,
//! still in the core's caches.
//!
//! Timeouts are those of the hyper path: the next request head must start within
//! `request_idle_timeout_s` (and `idle_timeout_s`) of the last response, and be complete
//! within `header_read_timeout_s` of its first byte; a response whose socket takes no byte for
//! `idle_timeout_s` is cut. On shutdown the loop finishes the response in progress and closes.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode, header};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Body, Part};
use crate::reply::Reply;
use crate::service::{Fields, RawField, RequestHead, respond_now};
use crate::state::ServerState;

/// Most header fields a request handled here may have; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Most byte parts written by one `sendmsg`.
const MAX_IOVECS: usize = 16;
/// How much the read buffer grows by when a head needs more room.
const READ_CHUNK: usize = 4096;
/// Room for a response head the head buffer starts with.
const HEAD_ROOM: usize = 512;
/// Most spare buffer pairs a thread keeps.
const SPARES: usize = 32;
/// A read buffer a long head grew past this is freed rather than kept as a spare.
const SPARE_MAX: usize = 4 * READ_CHUNK;

/// The timeouts and limits the loop applies, the same settings hyper's path uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle: Duration,
    pub request_idle: Duration,
}

/// How a connection left the loop.
pub(crate) enum End {
    /// Closed (by either side, a timeout, an error or shutdown).
    Closed,
    /// Hyper takes over; these bytes were read from the socket and not yet handled.
    Handoff(Bytes),
}

/// What one request head is.
enum Head {
    /// Handled here.
    Ours(Ours),
    /// Needs hyper.
    Theirs,
    /// Not complete yet.
    Partial,
}

/// A head handled here: its length in the buffer, what it asks and where its path is; its
/// fields are in the [`RawField`]s `parse` was given.
#[derive(Clone, Copy, Debug)]
struct Ours {
    len: usize,
    is_head: bool,
    close: bool,
    /// The target's path (without the query): offset and length.
    path: (u32, u32),
    fields: usize,
}

/// Serves requests on `stream` until it closes or needs hyper.
pub(crate) async fn serve(
    stream: &TcpStream,
    state: &Arc<ServerState>,
    peer: SocketAddr,
    limits: &Limits,
    stop: &watch::Receiver<bool>,
) -> End {
    let mut bufs = Buffers::none();
    let mut fields = [RawField::default(); MAX_HEADERS];
    let mut last_end = Instant::now();
    let mut stopping = *stop.borrow();
    // One wait for shutdown for the connection's life, polled by every wait for a request: a
    // wait made afresh each time (`changed()`) links a waiter into the watch's list and
    // unlinks it again per request, each under the list's lock.
    let mut rx = stop.clone();
    let stopped = async move {
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::pin!(stopped);
    // One timer for the connection, moved to each wait's deadline: moving a registered timer
    // later is an atomic store, where a timer per wait is an insert into tokio's wheel and a
    // removal from it per request.
    let timer = tokio::time::sleep_until(last_end + limits.request_idle.min(limits.idle));
    tokio::pin!(timer);
    loop {
        // When the next head started arriving, once it is known to need more than one read
        // (a head read whole needs no deadline of its own, nor a clock read).
        let mut head_start = None;
        let ours = loop {
            if !bufs.pending().is_empty() {
                match parse(bufs.pending(), limits.max_header_bytes, &mut fields) {
                    Head::Ours(ours) => break ours,
                    Head::Theirs => return End::Handoff(Bytes::copy_from_slice(bufs.pending())),
                    Head::Partial => {
                        head_start.get_or_insert_with(Instant::now);
                    }
                }
            } else if stopping {
                return End::Closed;
            }
            let deadline = match head_start {
                None => last_end + limits.request_idle.min(limits.idle),
                Some(t) => (t + limits.header_read_timeout).min(last_end.max(t) + limits.idle),
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                () = &mut stopped, if !stopping && head_start.is_none() => {
                    stopping = true;
                    continue;
                }
                ready = stream.readable() => if ready.is_err() {
                    return End::Closed;
                },
                () = &mut timer => {
                    tracing::debug!(partial = head_start.is_some(), "closing a connection with no request in time");
                    if head_start.is_none() {
                        state.metrics().connection_closed_no_request();
                    }
                    return End::Closed;
                }
            }
            bufs.hold();
            match read_some(stream, &mut bufs) {
                Ok(0) => return End::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return End::Closed,
            }
        };

        let method = if ours.is_head { Method::HEAD } else { Method::GET };
        let time = SystemTime::now();
        // The request is answered without a wait, and the response head written, before the
        // first wait for the socket: of all that, only the body is kept in the task.
        let (keep, mut body) = {
            // The handlers read the head where it stands in the buffer.
            let raw = &bufs.pending()[..ours.len];
            let (at, n) = (ours.path.0 as usize, ours.path.1 as usize);
            let path = std::str::from_utf8(&raw[at..at + n]).unwrap_or_default();
            let req = RequestHead {
                method: &method,
                http1: true,
                path,
                fields: Fields::Raw { head: raw, fields: &fields[..ours.fields] },
                time,
            };
            let resp = respond_now(state, &req, peer.ip());
            let keep = !ours.close
                && !stopping
                && !*stop.borrow()
                && resp.headers().get(&header::CONNECTION).is_none_or(|v| !v.bytes().eq_ignore_ascii_case(b"close"));
            write_head(&mut bufs.head, &resp, ours.is_head, keep, time);
            (keep, resp.into_body())
        };
        bufs.consume(ours.len);
        let sent = send(stream, &bufs.head, &mut body, limits.idle).await;
        // Dropping the body writes the audit record with the bytes handed over.
        drop(body);
        if let Err(e) = sent {
            tracing::debug!(error = %e, "response not sent in full");
            return End::Closed;
        }
        if !keep {
            return End::Closed;
        }
        bufs.release();
        last_end = Instant::now();
    }
}

/// A connection's read and head buffers, held only while it has a request in hand.
///
/// An idle keep-alive connection holds none: when its next request comes, it takes the pair
/// its thread gave back last, still in the core's caches, and gives it back once the response
/// is sent and no byte of a further request is in it. With a pair per connection, each would
/// be cold on every request once there are many connections (1,000 connections: 4.5 MB of
/// buffers, each touched once per request). A pair holding bytes of a request stays with its
/// connection.
struct Buffers {
    /// Bytes read; those before `start` are handled.
    read: Vec<u8>,
    start: usize,
    head: Vec<u8>,
}

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Buffers {
    fn none() -> Buffers {
        Buffers { read: Vec::new(), start: 0, head: Vec::new() }
    }

    /// The bytes read and not handled yet.
    fn pending(&self) -> &[u8] {
        &self.read[self.start..]
    }

    /// Marks the first `n` pending bytes handled.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.read.len() {
            self.read.clear();
            self.start = 0;
        }
    }

    /// Takes a spare pair of this thread's (or a new one) unless it holds one.
    fn hold(&mut self) {
        if self.read.capacity() == 0 {
            *self = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| Buffers {
                read: Vec::with_capacity(READ_CHUNK),
                start: 0,
                head: Vec::with_capacity(HEAD_ROOM),
            });
        }
    }

    /// Gives the pair back to this thread's spares, unless it holds bytes of a request, or a
    /// long head grew it, or the thread has enough spares (then it is freed).
    fn release(&mut self) {
        if !self.read.is_empty() || self.read.capacity() == 0 || self.read.capacity() > SPARE_MAX {
            return;
        }
        let pair = std::mem::replace(self, Buffers::none());
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARES {
                s.push(pair);
            }
        });
    }

    /// Room for at least `READ_CHUNK` more bytes after what is pending, moving the pending
    /// bytes to the front first.
    fn make_room(&mut self) {
        if self.read.capacity() - self.read.len() < READ_CHUNK {
            self.read.drain(..self.start);
            self.start = 0;
            self.read.reserve(READ_CHUNK);
        }
    }
}

/// Reads what the socket holds into `bufs` (with at least `READ_CHUNK` bytes of room); `Ok(0)`
/// is the end of the stream.
///
/// A read that leaves room in `buf` has emptied the socket's receive queue, so the stream's
/// read readiness is cleared with it, as an `EAGAIN` would clear it: the next wait for a
/// request then parks until the kernel reports new bytes, instead of returning at once and
/// costing a `recv` that fails with `EAGAIN` (under many connections the next request has
/// usually not arrived when a response is sent). Clearing inside the same `try_io` is what
/// keeps this from losing a wake-up: tokio clears only the readiness it saw before the
/// `recv`, and bytes that arrive after the `recv` are a new readiness event.
fn read_some(stream: &TcpStream, bufs: &mut Buffers) -> io::Result<usize> {
    bufs.make_room();
    let buf = &mut bufs.read;
    let mut got = 0;
    let r = stream.try_io(Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: `spare` is `room` writable bytes owned by `buf`; recv writes at most that.
        let n = unsafe { libc::recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), room, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        got = n as usize;
        // SAFETY: recv initialized the first `got` spare bytes.
        unsafe { buf.set_len(buf.len() + got) };
        if got > 0 && got < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        Err(e) => Err(e),
        Ok(()) => Ok(got),
    }
}

/// Parses the head at the start of `buf`, its fields' places into `fields`.
fn parse(buf: &[u8], max_header_bytes: usize, fields: &mut [RawField; MAX_HEADERS]) -> Head {
    // Only GET and HEAD are handled here; checking the first byte sends HTTP/2's preface
    // (`PRI * HTTP/2.0`) and every other method to hyper without parsing.
    if !matches!(buf[0], b'G' | b'H') {
        return Head::Theirs;
    }
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) if n <= max_header_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() < max_header_bytes => return Head::Partial,
        // Too large, malformed, or more fields than we take: hyper answers those.
        _ => return Head::Theirs,
    };
    let is_head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Head::Theirs,
    };
    if req.version != Some(1) {
        return Head::Theirs;
    }
    let base = buf.as_ptr() as usize;
    // Heads are at most `max_header_bytes`, which the config keeps at 1 MiB or less.
    let offset = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    let target = req.path.unwrap_or("").as_bytes();
    let Some(path_len) = origin_path(target) else { return Head::Theirs };
    let path = (offset(target).0, path_len as u32);
    let mut close = false;
    for (slot, h) in fields.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        let value = h.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.trim_ascii() != b"0" {
                return Head::Theirs;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Head::Theirs;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Theirs;
                }
            }
        }
        *slot = RawField { name: offset(name), value: offset(value) };
    }
    Head::Ours(Ours { len, is_head, close, path, fields: req.headers.len() })
}

/// The length of the path of `target` when it is an origin-form target (`/path?query`) of
/// ASCII that `http`'s URI parser takes as it stands; `None` for anything else (absolute
/// form, `*`, a fragment, bytes that parser refuses or would have to check as UTF-8), which
/// goes to hyper. `http` takes in a path the visible ASCII but `#`, `<`, `>` and `` ` ``, and
/// in a query the visible ASCII but `#`, `<`, `>` and `"`.
fn origin_path(target: &[u8]) -> Option<usize> {
    if target.first() != Some(&b'/') || target.len() >= usize::from(u16::MAX) {
        return None;
    }
    let outside = |b: u8| !(0x21..=0x7e).contains(&b) | (b == b'#') | (b == b'<') | (b == b'>');
    let in_path = |b: u8| outside(b) | (b == b'`');
    // A download's target has no query: one vectorized pass finds no `?` and nothing the
    // path refuses, and that is the whole check.
    if !crate::scan::any_byte(target, |b| in_path(b) | (b == b'?')) {
        return Some(target.len());
    }
    let path = target.iter().position(|&b| b == b'?').unwrap_or(target.len());
    let refused = crate::scan::any_byte(&target[..path], in_path)
        || crate::scan::any_byte(&target[path..], |b| outside(b) | (b == b'"'));
    (!refused).then_some(path)
}

/// The status line and header fields of a reply into `out`, as hyper writes them: `date`
/// (of `time`, the request's) added, `content-length` from the body when the handler set
/// none, `connection: close` when the connection ends after this response.
fn write_head(out: &mut Vec<u8>, reply: &Reply, is_head: bool, keep: bool, time: SystemTime) {
    let (status, body) = (reply.status(), reply.body());
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Like hyper, an empty body's length goes last (hyper writes it itself for such bodies).
    let length_last = !is_head && body.is_empty();
    let (mut has_date, mut has_length) = (false, false);
    for (name, value) in reply.headers().iter() {
        if name == header::CONTENT_LENGTH {
            has_length = true;
            if length_last {
                continue;
            }
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        value.put(out);
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        http_date(out, time);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !is_head && !bodiless && (length_last || !has_length) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `time` as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted once a second
/// per thread.
fn http_date(out: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            let text = chrono::DateTime::from_timestamp(now as i64, 0)
                .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
                .unwrap_or_default();
            if text.len() == 29 {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = now;
            } else {
                out.extend_from_slice(text.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&c.1);
    });
}

/// Sends `head`, then the parts of `body`, counting body bytes into it as they are taken.
/// Runs of byte parts go with `sendmsg` (the head with the first run), extents with
/// `sendfile`; every wait for the socket is bounded by `idle`.
async fn send(stream: &TcpStream, head: &[u8], body: &mut Body, idle: Duration) -> io::Result<()> {
    let parts = body.take_parts();
    let parts = parts.as_slice();
    let mut head = head;
    let mut i = 0;
    loop {
        let run = parts[i..].iter().take_while(|p| matches!(p, Part::Bytes(_))).count();
        let j = i + run;
        if !head.is_empty() || run > 0 {
            let n = send_bytes(stream, head, &parts[i..j], idle).await?;
            body.sent(n);
            head = &[];
        }
        let Some(Part::Extent(e)) = parts.get(j) else { return Ok(()) };
        send_extent(stream, e, body, idle).await?;
        i = j + 1;
    }
}

/// Waits until `stream` may take bytes, at most `idle`.
async fn writable(stream: &TcpStream, idle: Duration) -> io::Result<()> {
    match tokio::time::timeout(idle, stream.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client took no bytes within the idle timeout")),
    }
}

/// Writes `head` and then `parts` (all `Part::Bytes`) in full; returns the body bytes written.
/// No `MSG_MORE` when extents follow: holding the head back for the file's bytes cost more
/// kernel time per response than the segment it saves (docs/BENCHMARKS.md, 2026-12-03).
async fn send_bytes(stream: &TcpStream, head: &[u8], parts: &[Part], idle: Duration) -> io::Result<u64> {
    let total = head.len() + parts.iter().map(|p| p.bytes().len()).sum::<usize>();
    let mut done = 0usize;
    let flags = libc::MSG_NOSIGNAL;
    while done < total {
        // The slices still to go, from `done` on, at most MAX_IOVECS of them.
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        let mut skip = done;
        for s in std::iter::once(head).chain(parts.iter().map(|p| p.bytes().as_ref())) {
            if n == MAX_IOVECS {
                break;
            }
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            iov[n] = IoSlice::new(&s[skip..]);
            skip = 0;
            n += 1;
        }
        let r = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: `msg` points at `n` live IoSlices (layout-compatible with iovec) for the
            // duration of the call; the socket is this stream's.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = n as _;
            let r = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, flags) };
            if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
        });
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => done += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, idle).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total.saturating_sub(head.len()) as u64)
}

/// Sends one pack-file extent with `sendfile`, counting its bytes into `body` as they go.
async fn send_extent(stream: &TcpStream, e: &fwrepo_store::Extent, body: &mut Body, idle: Duration) -> io::Result<()> {
    let end = e.offset + e.bytes.len() as u64;
    let mut off = e.offset as libc::off_t;
    while (off as u64) < end {
        let want = (end - off as u64).min(1 << 30) as usize;
        let r = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the call (the stream and the extent's
            // file are borrowed); `off` is a valid off_t the kernel advances.
            let r = unsafe { libc::sendfile(stream.as_raw_fd(), e.file.as_raw_fd(), &mut off, want) };
            if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
        });
        match r {
            // The pack file ends before the extent: the index and the file disagree.
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pack file shorter than its extent")),
            Ok(n) => body.sent(n as u64),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, idle).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> (Head, [RawField; MAX_HEADERS]) {
        let mut fields = [RawField::default(); MAX_HEADERS];
        let head = parse(raw, 16 * 1024, &mut fields);
        (head, fields)
    }

    #[test]
    fn a_get_is_ours_and_pipelined_bytes_stay() {
        let raw = b"GET /v1/blobs/ab?x=1 HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\nIf-Match: \"a\"\r\nif-match: \"b\"\r\n\r\nGET /";
        let (head, fields) = parsed(raw);
        let Head::Ours(ours) = head else { panic!("not ours") };
        assert!(!ours.close && !ours.is_head);
        assert_eq!(&raw[ours.len..], b"GET /", "the next request's bytes are not part of the head");
        let (at, n) = (ours.path.0 as usize, ours.path.1 as usize);
        assert_eq!(&raw[at..at + n], b"/v1/blobs/ab");
        let f = Fields::Raw { head: &raw[..ours.len], fields: &fields[..ours.fields] };
        assert_eq!(f.get(&header::RANGE), Some(&b"bytes=0-9"[..]));
        assert_eq!(f.get_str(&header::HOST), Some("a"));
        assert_eq!(f.get(&header::AUTHORIZATION), None);
        let mut seen = Vec::new();
        assert_eq!(
            f.any(&header::IF_MATCH, |v| {
                seen.push(v.to_vec());
                v == b"\"b\""
            }),
            (true, true)
        );
        assert_eq!(seen, [b"\"a\"".to_vec(), b"\"b\"".to_vec()], "every field of the name, in order");
        assert_eq!(f.any(&header::IF_NONE_MATCH, |_| true), (false, false));
    }

    #[test]
    fn raw_fields_answer_as_a_header_map_does() {
        let raw =
            b"GET / HTTP/1.1\r\nAuthorization: Bearer t\xc3\xa9\r\nX-A: 1\r\nx-a: 2\r\nRange:  bytes=1-2 \r\n\r\n";
        let (head, fields) = parsed(raw);
        let Head::Ours(ours) = head else { panic!("not ours") };
        let raw_fields = Fields::Raw { head: &raw[..ours.len], fields: &fields[..ours.fields] };
        let mut map = http::HeaderMap::new();
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut hs);
        req.parse(raw).unwrap();
        for h in req.headers.iter() {
            map.append(
                http::HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(h.value).unwrap(),
            );
        }
        let map_fields = Fields::Map(&map);
        let x_a = http::HeaderName::from_static("x-a");
        for name in [header::AUTHORIZATION, header::RANGE, x_a.clone(), header::IF_MATCH] {
            assert_eq!(raw_fields.get(&name), map_fields.get(&name), "{name}");
            assert_eq!(raw_fields.get_str(&name), map_fields.get_str(&name), "{name}");
            assert_eq!(raw_fields.any(&name, |v| v == b"2"), map_fields.any(&name, |v| v == b"2"), "{name}");
        }
        // Not visible ASCII: no string, as `HeaderValue::to_str` gives none.
        assert_eq!(raw_fields.get_str(&header::AUTHORIZATION), None);
        assert_eq!(raw_fields.any(&x_a, |v| v == b"2"), (true, true));
    }

    #[test]
    fn the_path_is_what_http_makes_of_the_target_or_hyper_takes_it() {
        let mut ours = 0;
        for b in 0..=255u8 {
            let long = |at: usize| {
                let mut t = b"/v1/blobs/0123456789abcdef0123456789abcdef".to_vec();
                t[at] = b;
                t
            };
            let targets = [
                vec![b'/', b'a', b, b'c'],
                vec![b'/', b'a', b'?', b'q', b, b'z'],
                vec![b'/', b],
                long(1),
                long(16),
                long(33),
                long(41),
            ];
            for target in targets {
                let Some(len) = origin_path(&target) else { continue };
                ours += 1;
                let uri = http::Uri::try_from(target.as_slice()).unwrap_or_else(|e| {
                    panic!("{:?} taken here, refused by http: {e}", String::from_utf8_lossy(&target))
                });
                assert_eq!(uri.path().as_bytes(), &target[..len], "{:?}", String::from_utf8_lossy(&target));
            }
        }
        assert!(ours > 600, "most visible ASCII is taken here ({ours})");
        for target in [&b"*"[..], b"http://h/x", b"/a#b", b"/a<b", b"/a`b", b"/a?\"", b"/\xc3\xa9", b""] {
            assert_eq!(origin_path(target), None, "{:?}", String::from_utf8_lossy(target));
        }
        assert_eq!(origin_path(b"/a\"b?x`y?z"), Some(4));
    }

    #[test]
    fn everything_unusual_goes_to_hyper_with_its_bytes() {
        for raw in [
            &b"POST /v1/tokens HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
        ] {
            let (head, _) = parsed(raw);
            assert!(matches!(head, Head::Theirs), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn an_oversized_head_goes_to_hyper() {
        let mut raw = b"GET / HTTP/1.1\r\nx-pad: ".to_vec();
        raw.resize(20_000, b'a');
        assert!(matches!(parsed(&raw).0, Head::Theirs));
        assert!(matches!(parsed(&raw[..1000]).0, Head::Partial));
    }

    #[test]
    fn connection_close_is_noticed() {
        let (head, _) = parsed(b"HEAD / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(head, Head::Ours(Ours { close: true, is_head: true, .. })));
    }

    /// How many spare pairs this thread holds.
    fn spares() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn buffers_are_held_only_with_a_request_in_hand_and_reused() {
        // A thread of its own, so its spares are this test's alone.
        std::thread::spawn(|| {
            let mut a = Buffers::none();
            assert_eq!(a.read.capacity(), 0, "a new connection holds nothing");
            a.hold();
            let base = a.read.as_ptr();
            a.read.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nGET /");
            a.consume(18);
            a.release();
            assert_eq!(a.pending(), b"GET /", "a pair holding a request's bytes stays");
            assert_eq!(spares(), 0);
            a.consume(5);
            assert!(a.read.is_empty() && a.start == 0, "all handled: the buffer starts over");
            a.release();
            assert_eq!((a.read.capacity(), spares()), (0, 1), "an idle connection holds nothing");

            let mut b = Buffers::none();
            b.hold();
            assert_eq!(spares(), 0);
            b.make_room();
            assert_eq!(b.read.as_ptr(), base, "the next request takes the pair given back");
            assert!(b.pending().is_empty() && b.head.is_empty());

            // Pending bytes move to the front when the room after them runs out.
            b.read.resize(READ_CHUNK, b'a');
            b.read[READ_CHUNK - 3..].copy_from_slice(b"xyz");
            b.consume(READ_CHUNK - 3);
            b.make_room();
            assert_eq!((b.pending(), b.start), (&b"xyz"[..], 0));
            assert!(b.read.capacity() - b.read.len() >= READ_CHUNK);

            // A buffer a long head grew is freed, not kept.
            b.read.reserve(SPARE_MAX * 4);
            b.consume(3);
            b.release();
            assert_eq!(spares(), 0, "a grown buffer is not kept");

            // At most SPARES are kept.
            let mut held: Vec<Buffers> = (0..SPARES + 5)
                .map(|_| {
                    let mut c = Buffers::none();
                    c.hold();
                    c
                })
                .collect();
            for c in &mut held {
                c.release();
            }
            assert_eq!(spares(), SPARES);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn dates_are_formatted_as_http_wants() {
        let at = |s| std::time::UNIX_EPOCH + Duration::from_secs(s);
        let mut out = Vec::new();
        // The second time from the thread's cache, then a new second.
        http_date(&mut out, at(784_111_777));
        http_date(&mut out, at(784_111_777));
        http_date(&mut out, at(784_111_778));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMTSun, 06 Nov 1994 08:49:37 GMTSun, 06 Nov 1994 08:49:38 GMT"
        );
    }
}
