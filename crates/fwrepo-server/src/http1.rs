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
//! * the request goes through the same service code as hyper's ([`crate::service::handle`]):
//!   same routes, gate, audit record and metrics. The response head is written by
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
//! Timeouts are those of the hyper path: the next request head must start within
//! `request_idle_timeout_s` (and `idle_timeout_s`) of the last response, and be complete
//! within `header_read_timeout_s` of its first byte; a response whose socket takes no byte for
//! `idle_timeout_s` is cut. On shutdown the loop finishes the response in progress and closes.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use http_body_util::Empty;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::body::{Body, Part};
use crate::service::handle;
use crate::state::ServerState;

/// Most header fields a request handled here may have; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// Most byte parts written by one `sendmsg`.
const MAX_IOVECS: usize = 16;
/// How much the read buffer grows by when a head needs more room.
const READ_CHUNK: usize = 4096;

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
// Returned by value once per request; boxing the request would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// Handled here.
    Ours { request: Request<Empty<Bytes>>, close: bool },
    /// Needs hyper.
    Theirs,
    /// Not complete yet.
    Partial,
}

/// Serves requests on `stream` until it closes or needs hyper.
pub(crate) async fn serve(
    stream: &TcpStream,
    state: &Arc<ServerState>,
    peer: SocketAddr,
    limits: &Limits,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut head = Vec::with_capacity(512);
    let mut last_end = Instant::now();
    let mut stopping = *stop.borrow();
    loop {
        // When the next head started arriving: now if pipelined bytes are waiting.
        let mut head_start = (!buf.is_empty()).then(Instant::now);
        let (request, close) = loop {
            if !buf.is_empty() {
                match parse(&mut buf, limits.max_header_bytes) {
                    Head::Ours { request, close } => break (request, close),
                    Head::Theirs => return End::Handoff(buf.freeze()),
                    Head::Partial => {}
                }
            } else if stopping {
                return End::Closed;
            }
            let deadline = match head_start {
                None => last_end + limits.request_idle.min(limits.idle),
                Some(t) => (t + limits.header_read_timeout).min(last_end.max(t) + limits.idle),
            };
            tokio::select! {
                biased;
                changed = stop.changed(), if !stopping && head_start.is_none() => {
                    stopping = changed.is_err() || *stop.borrow();
                    continue;
                }
                ready = tokio::time::timeout_at(deadline, stream.readable()) => match ready {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return End::Closed,
                    Err(_) => {
                        tracing::debug!(partial = head_start.is_some(), "closing a connection with no request in time");
                        if head_start.is_none() {
                            state.metrics().connection_closed_no_request();
                        }
                        return End::Closed;
                    }
                },
            }
            match read_some(stream, &mut buf) {
                Ok(0) => return End::Closed,
                Ok(_) => {
                    head_start.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return End::Closed,
            }
        };

        let is_head = request.method() == Method::HEAD;
        let resp = match handle(Arc::clone(state), request, peer.ip()).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let keep = !close
            && !stopping
            && !*stop.borrow()
            && resp.headers().get(header::CONNECTION).is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"close"));
        let (parts, mut body) = resp.into_parts();
        write_head(&mut head, &parts, &body, is_head, keep);
        let sent = send(stream, &head, &mut body, limits.idle).await;
        // Dropping the body writes the audit record with the bytes handed over.
        drop(body);
        if let Err(e) = sent {
            tracing::debug!(error = %e, "response not sent in full");
            return End::Closed;
        }
        if !keep {
            return End::Closed;
        }
        last_end = Instant::now();
    }
}

/// Reads what the socket holds into `buf` (at least `READ_CHUNK` bytes of room); `Ok(0)` is
/// the end of the stream.
///
/// A read that leaves room in `buf` has emptied the socket's receive queue, so the stream's
/// read readiness is cleared with it, as an `EAGAIN` would clear it: the next wait for a
/// request then parks until the kernel reports new bytes, instead of returning at once and
/// costing a `recv` that fails with `EAGAIN` (under many connections the next request has
/// usually not arrived when a response is sent). Clearing inside the same `try_io` is what
/// keeps this from losing a wake-up: tokio clears only the readiness it saw before the
/// `recv`, and bytes that arrive after the `recv` are a new readiness event.
fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
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

/// Parses the head at the start of `buf`; a complete one handled here is split off `buf`.
fn parse(buf: &mut BytesMut, max_header_bytes: usize) -> Head {
    // Only GET and HEAD are handled here; checking the first byte sends HTTP/2's preface
    // (`PRI * HTTP/2.0`) and every other method to hyper without parsing.
    if !matches!(buf[0], b'G' | b'H') {
        return Head::Theirs;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_header_bytes => n,
        Ok(httparse::Status::Partial) if buf.len() < max_header_bytes => return Head::Partial,
        // Too large, malformed, or more fields than we take: hyper answers those.
        _ => return Head::Theirs,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Head::Theirs,
    };
    if req.version != Some(1) {
        return Head::Theirs;
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let path = offset(req.path.unwrap_or("").as_bytes());
    let mut spans = [((0usize, 0usize), (0usize, 0usize)); MAX_HEADERS];
    let mut close = false;
    let count = req.headers.len();
    for (span, h) in spans.iter_mut().zip(req.headers.iter()) {
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
        *span = (offset(name), offset(value));
    }
    // From here the head is ours: its bytes become the request's, without a copy.
    let raw = buf.split_to(len).freeze();
    let slice = |(at, n): (usize, usize)| raw.slice(at..at + n);
    let built = (|| {
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = method;
        *request.version_mut() = Version::HTTP_11;
        *request.uri_mut() = Uri::from_maybe_shared(slice(path)).ok()?;
        let headers = request.headers_mut();
        headers.reserve(count);
        for &(name, value) in &spans[..count] {
            let name = HeaderName::from_bytes(&raw[name.0..name.0 + name.1]).ok()?;
            headers.append(name, HeaderValue::from_maybe_shared(slice(value)).ok()?);
        }
        Some(request)
    })();
    match built {
        Some(request) => Head::Ours { request, close },
        None => {
            // Something `http` refuses that httparse let through: put the bytes back for hyper.
            let mut back = BytesMut::with_capacity(raw.len() + buf.len());
            back.extend_from_slice(&raw);
            back.extend_from_slice(buf);
            *buf = back;
            Head::Theirs
        }
    }
}

/// The status line and header fields of `parts` into `out`, as hyper writes them: `date`
/// added, `content-length` from the body when the handler set none, `connection: close` when
/// the connection ends after this response.
fn write_head(out: &mut Vec<u8>, parts: &http::response::Parts, body: &Body, is_head: bool, keep: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Like hyper, an empty body's length goes last (hyper writes it itself for such bodies).
    let length_last = !is_head && body.is_empty();
    for (name, value) in &parts.headers {
        if length_last && name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !is_head && !bodiless && (length_last || !parts.headers.contains_key(header::CONTENT_LENGTH)) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa_u64(body.len(), &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, in `buf`.
pub(crate) fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Appends the current time as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted once
/// a second per thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
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

    fn parsed(raw: &[u8]) -> (Head, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let head = parse(&mut buf, 16 * 1024);
        (head, buf)
    }

    #[test]
    fn a_get_is_ours_and_pipelined_bytes_stay() {
        let (head, rest) = parsed(b"GET /v1/blobs/ab?x=1 HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\nGET /");
        let Head::Ours { request, close } = head else { panic!("not ours") };
        assert!(!close);
        assert_eq!(request.uri().path(), "/v1/blobs/ab");
        assert_eq!(request.headers()["range"], "bytes=0-9");
        assert_eq!(&rest[..], b"GET /");
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
            let (head, rest) = parsed(raw);
            assert!(matches!(head, Head::Theirs), "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(&rest[..], raw, "bytes kept for hyper");
        }
    }

    #[test]
    fn an_oversized_head_goes_to_hyper() {
        let mut raw = b"GET / HTTP/1.1\r\nx-pad: ".to_vec();
        raw.resize(20_000, b'a');
        let mut buf = BytesMut::from(&raw[..]);
        assert!(matches!(parse(&mut buf, 16 * 1024), Head::Theirs));
        let mut short = BytesMut::from(&raw[..1000]);
        assert!(matches!(parse(&mut short, 16 * 1024), Head::Partial));
    }

    #[test]
    fn connection_close_is_noticed() {
        let (head, _) = parsed(b"HEAD / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(head, Head::Ours { close: true, .. }));
    }

    #[test]
    fn dates_and_numbers_are_formatted_as_http_wants() {
        let mut out = Vec::new();
        http_date(&mut out);
        http_date(&mut out);
        assert_eq!(out.len(), 58);
        assert!(out.ends_with(b" GMT"), "{}", String::from_utf8_lossy(&out));
        assert_eq!(itoa_u64(0, &mut [0; 20]), b"0");
        assert_eq!(itoa_u64(u64::MAX, &mut [0; 20]), u64::MAX.to_string().as_bytes());
    }
}
