//! A peer with the delta endpoint, in memory: answers `POST /v1/blobs/<id>/deltas` from the
//! blobs an [`Origin`](crate::support::Origin) published, built with the format module as the
//! server builds it, and can be told to lie in the ways a hostile server would. Every other
//! request goes to the origin's `MemoryTransport`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fwrepo_chunk::delta::{self, DeltaRequest, Encoding};
use fwrepo_chunk::{ChunkIndex, Digest};
use fwrepo_fetch::deltas::CONTENT_TYPE;
use fwrepo_fetch::{Body, BodySource, MemoryTransport, Method, Request, Response, Result, Transport, WireCounter};
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// The zstd level the responder encodes with (fast; the format does not depend on it).
const LEVEL: i32 = 3;

/// A way for the delta endpoint to lie.
#[derive(Clone, Debug)]
pub enum Hostile {
    /// The first frame encodes other bytes (the target with one byte flipped).
    WrongBytes,
    /// The body ends after this many bytes.
    Truncate { keep: usize },
    /// The last frame is left out (the body ends cleanly between frames).
    DropLastFrame,
    /// Bytes after the last frame.
    TrailingBytes,
    /// The first frame's header claims a payload of `u32::MAX` bytes.
    HugeHeader,
    /// The first frame is this zstd payload, labelled [`Encoding::Zstd`].
    ZstdPayload(Bytes),
    /// The first frame is labelled with this encoding byte, its payload unchanged.
    EncodingByte(u8),
    /// The first frame is compressed against bytes no one named and labelled as such.
    BasedWithoutBase,
    /// Answer with this status (and a JSON error body).
    Status(u16),
    /// Answer 200 with an HTML page, as a static host might.
    NotDeltas,
}

#[derive(Default)]
struct State {
    /// Every chunk of every blob registered, by id.
    chunks: HashMap<Digest, Bytes>,
    hostile: Vec<(Hostile, Option<u32>)>,
    /// Delta requests received, in order.
    log: Vec<DeltaRequest>,
}

/// The origin's transport plus the delta endpoint.
#[derive(Clone)]
pub struct DeltaPeer {
    pub inner: MemoryTransport,
    state: Arc<Mutex<State>>,
}

impl DeltaPeer {
    pub fn new(inner: MemoryTransport) -> DeltaPeer {
        DeltaPeer { inner, state: Arc::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Lies in way `h` on the next `times` delta replies (all when `None`).
    pub fn hostile(&self, h: Hostile, times: Option<u32>) {
        self.state().hostile.push((h, times));
    }

    /// Makes every chunk of `blob` (a version the origin published) known as a base.
    pub fn know(&self, blob: &[u8]) {
        let index = crate::support::index_of(blob);
        let mut st = self.state();
        let mut at = 0usize;
        for (id, len) in index.chunks {
            st.chunks.insert(id, Bytes::copy_from_slice(&blob[at..at + len as usize]));
            at += len as usize;
        }
    }

    /// Delta requests received so far.
    pub fn log(&self) -> Vec<DeltaRequest> {
        self.state().log.clone()
    }

    /// The blob's chunks, from the files the origin serves.
    fn blob_chunks(&self, blob: &str) -> Option<Vec<(Digest, Bytes)>> {
        let bytes = self.inner.file(&format!("/v1/blobs/{blob}"))?;
        let index = ChunkIndex::parse(&self.inner.file(&format!("/v1/blobs/{blob}/chunks"))?).ok()?;
        let mut out = Vec::new();
        let mut at = 0usize;
        for (id, len) in index.chunks {
            out.push((id, bytes.slice(at..at + len as usize)));
            at += len as usize;
        }
        Some(out)
    }

    /// The reply body and status for a delta request, as the server makes it.
    fn answer(&self, blob: &str, body: &[u8]) -> (StatusCode, &'static str, Vec<u8>) {
        let json = |s: &str| format!("{{\"error\":\"{s}\"}}").into_bytes();
        let Some(chunks) = self.blob_chunks(blob) else {
            return (StatusCode::NOT_FOUND, "application/json", json("not_found"));
        };
        let Ok(req) = serde_json::from_slice::<DeltaRequest>(body) else {
            return (StatusCode::BAD_REQUEST, "application/json", json("bad_request"));
        };
        let mut st = self.state();
        st.log.push(req.clone());
        // Every blob's chunks are bases (the test decides what exists by what it published).
        for (id, b) in &chunks {
            st.chunks.insert(*id, b.clone());
        }
        let mine: HashMap<Digest, Bytes> = chunks.into_iter().collect();
        let mut hostile = None;
        for (h, n) in st.hostile.iter_mut() {
            if *n != Some(0) {
                if let Some(n) = n {
                    *n -= 1;
                }
                hostile = Some(h.clone());
                break;
            }
        }
        match &hostile {
            Some(Hostile::Status(code)) => {
                return (StatusCode::from_u16(*code).unwrap(), "application/json", json("refused"));
            }
            Some(Hostile::NotDeltas) => return (StatusCode::OK, "text/html", b"<html>hello</html>".to_vec()),
            _ => {}
        }
        let mut out = Vec::new();
        let n = req.entries.len();
        for (k, e) in req.entries.iter().enumerate() {
            let Some(target) = mine.get(&e.target) else {
                return (StatusCode::BAD_REQUEST, "application/json", json("target_not_in_blob"));
            };
            // An entry naming an unknown base is answered as if it had named none.
            let known: Option<Vec<&Bytes>> = e.bases.iter().map(|b| st.chunks.get(b)).collect();
            let base: Option<Vec<u8>> =
                known.filter(|k| !k.is_empty()).map(|k| k.iter().flat_map(|b| b.iter().copied()).collect());
            let (mut enc, mut payload) = delta::encode(target, base.as_deref(), LEVEL).unwrap();
            if k == 0 {
                match &hostile {
                    Some(Hostile::WrongBytes) => {
                        let mut other = target.to_vec();
                        other[0] ^= 1;
                        (enc, payload) = delta::encode(&other, base.as_deref(), LEVEL).unwrap();
                    }
                    Some(Hostile::HugeHeader) => {
                        out.push(enc as u8);
                        out.extend_from_slice(&u32::MAX.to_le_bytes());
                        out.extend_from_slice(&payload);
                        continue;
                    }
                    Some(Hostile::ZstdPayload(p)) => (enc, payload) = (Encoding::Zstd, p.to_vec()),
                    Some(Hostile::EncodingByte(byte)) => {
                        out.push(*byte);
                        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                        out.extend_from_slice(&payload);
                        continue;
                    }
                    Some(Hostile::BasedWithoutBase) => {
                        let fake = vec![0x5au8; target.len()];
                        payload = delta::encode(target, Some(&fake), LEVEL).unwrap().1;
                        enc = Encoding::ZstdWithBase;
                    }
                    _ => {}
                }
            }
            if k + 1 == n && matches!(hostile, Some(Hostile::DropLastFrame)) {
                break;
            }
            delta::write_frame(&mut out, enc, &payload);
        }
        match hostile {
            Some(Hostile::Truncate { keep }) => out.truncate(keep),
            Some(Hostile::TrailingBytes) => out.extend_from_slice(b"more"),
            _ => {}
        }
        (StatusCode::OK, CONTENT_TYPE, out)
    }
}

impl Transport for DeltaPeer {
    async fn send(&self, req: Request) -> Result<Response> {
        let blob = req.path.strip_prefix("/v1/blobs/").and_then(|p| p.strip_suffix("/deltas"));
        let (Method::Post, Some(blob)) = (req.method, blob) else { return self.inner.send(req).await };
        let (status, media, body) = self.answer(blob, req.json.as_deref().unwrap_or_default());
        let wire = self.inner.wire().clone();
        wire.add_request();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        wire.add_head(status, &headers);
        let source = Pieces { body: Bytes::from(body), pos: 0 };
        Ok(Response { status, headers, body: Body::new(Box::new(source), wire) })
    }

    fn wire(&self) -> &WireCounter {
        self.inner.wire()
    }
}

/// A body in pieces of 7 KiB, so frames straddle pieces.
struct Pieces {
    body: Bytes,
    pos: usize,
}

impl BodySource for Pieces {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Option<Bytes>>> + Send + '_>> {
        Box::pin(async move {
            if self.pos >= self.body.len() {
                return Ok(None);
            }
            let end = (self.pos + 7 * 1024).min(self.body.len());
            let piece = self.body.slice(self.pos..end);
            self.pos = end;
            Ok(Some(piece))
        })
    }
}
