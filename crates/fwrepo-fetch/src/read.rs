//! Bounded body reads: every body is read against the length it must have, stopping at the
//! first byte past it, with a timeout on each wait for more bytes.

use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::transport::Body;

/// The next piece of `body`, or a timeout after `idle` without one.
pub(crate) async fn next_piece(body: &mut Body, path: &str, idle: Duration) -> Result<Option<Bytes>> {
    match tokio::time::timeout(idle, body.chunk()).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout { path: path.to_owned(), after: idle }),
    }
}

/// Reads a body of at most `max` bytes (metadata whose length is capped but not known).
pub(crate) async fn read_at_most(body: &mut Body, max: u64, path: &str, idle: Duration) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(piece) = next_piece(body, path, idle).await? {
        if out.len() as u64 + piece.len() as u64 > max {
            return Err(Error::TooLong { path: path.to_owned(), max });
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// Reads a body of exactly `len` bytes: short is [`Error::Truncated`], long is
/// [`Error::TooLong`] as soon as the first extra byte arrives.
#[cfg(test)]
pub(crate) async fn read_exact(body: &mut Body, len: u64, path: &str, idle: Duration) -> Result<Vec<u8>> {
    let out = read_at_most(body, len, path, idle).await?;
    if (out.len() as u64) < len {
        return Err(Error::Truncated { path: path.to_owned(), got: out.len() as u64, expected: len });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Fault, MemoryTransport};
    use crate::transport::{Request, Transport};

    async fn body(t: &MemoryTransport) -> Body {
        t.send(Request::get("/f")).await.unwrap().body
    }

    #[tokio::test]
    async fn reads_stop_at_the_bound_and_refuse_short_bodies() {
        let t = MemoryTransport::new();
        t.insert("/f", vec![7u8; 40_000]);
        let idle = Duration::from_secs(5);
        assert_eq!(read_exact(&mut body(&t).await, 40_000, "/f", idle).await.unwrap().len(), 40_000);
        assert!(matches!(
            read_exact(&mut body(&t).await, 39_999, "/f", idle).await,
            Err(Error::TooLong { max: 39_999, .. })
        ));
        assert!(matches!(
            read_exact(&mut body(&t).await, 40_001, "/f", idle).await,
            Err(Error::Truncated { got: 40_000, expected: 40_001, .. })
        ));
        // An endless body is cut off at the bound, not read to its end.
        let before = t.wire().stats().body_bytes;
        assert!(read_at_most(&mut body(&t).await, 100, "/f", idle).await.is_err());
        assert!(t.wire().stats().body_bytes - before <= 16 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let t = MemoryTransport::new();
        t.insert("/f", vec![7u8; 40_000]);
        t.fault("/f", Fault::Stall { after: 20_000 }, None);
        let r = read_exact(&mut body(&t).await, 40_000, "/f", Duration::from_secs(3)).await;
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
}
