//! Chunk-pair deltas: missing chunks fetched as zstd frames against chunks the caller already
//! holds (`POST <blobs>/<id>/deltas`, the wire form in [`fwrepo_chunk::delta`]), each frame
//! decoded with the bounded decoder and checked against the chunk's id before a
//! [`ChunkSink`] sees it, exactly like a chunk read from a range.
//!
//! [`Fetcher::fetch_deltas`] batches the chunks of each blob (at most
//! [`fwrepo_chunk::delta::MAX_ENTRIES`] entries and [`MAX_BATCH_BYTES`] of target bytes per
//! request), several requests in flight. Whatever deltas do not deliver is fetched as planned
//! ranges afterwards, by the same range path as [`Fetcher::fetch_chunks`]:
//!
//! - a peer without the endpoint (404, 405 or 501 on the path, or a 200 that is not a delta
//!   reply: static hosts, older servers) is remembered as such and asked for ranges only;
//! - a batch the peer finds too large (413);
//! - chunks without a base once such chunks have proved incompressible (their frames cost at
//!   least the chunk bytes): ranges of them cost the server no compression and coalesce.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt, stream};
use fwrepo_chunk::Digest;
use fwrepo_chunk::delta::{self, DeltaEntry, DeltaRequest, FRAME_HEADER_LEN, MAX_ENTRIES};
use http::{StatusCode, header};

use crate::error::{Error, Result};
use crate::fetch::{ChunkSink, FetchReport, Fetcher, Job, RemoteBlob};
use crate::read::next_piece;
use crate::transport::{Request, Transport, head_len};

/// Most target-chunk bytes one delta request may name (the server answers 413 past this).
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

/// The media type of a delta reply.
pub const CONTENT_TYPE: &str = "application/vnd.fwrepo.chunk-deltas";

/// Bytes of base-less chunks to see before judging whether they compress.
const NOBASE_SAMPLE: u64 = 256 << 10;

/// Chunks a caller holds and offers as delta bases: fwget's seed files, the mirror's store.
pub trait BaseSource: Sync {
    /// The bytes of held chunk `id` as they are now, or `None` when they cannot be read. The
    /// engine hashes them and names a base only when they hash to `id` (a seed can change
    /// underneath); a target chunk whose base does not is fetched without one.
    fn read_base(&self, id: &Digest) -> Option<Bytes>;
}

/// The bases offered for one [`Fetcher::fetch_deltas`] call.
pub struct Bases<'a> {
    /// Per blob of the call, per chunk of its index: the held chunks to encode it against, in
    /// order ([`fwrepo_chunk::bases::choose_bases`]). Missing or empty entries mean no base.
    pub chosen: Vec<Vec<Vec<Digest>>>,
    pub source: &'a dyn BaseSource,
}

/// A [`BaseSource`] that holds nothing.
pub struct NoBases;

impl BaseSource for NoBases {
    fn read_base(&self, _: &Digest) -> Option<Bytes> {
        None
    }
}

impl Bases<'_> {
    /// No bases at all: every chunk asked for zstd-compressed alone.
    pub fn none() -> Bases<'static> {
        Bases { chosen: Vec::new(), source: &NoBases }
    }

    fn bases(&self, b: usize, i: usize) -> &[Digest] {
        self.chosen.get(b).and_then(|c| c.get(i)).map_or(&[], Vec::as_slice)
    }
}

/// What a [`Fetcher`] has learnt about its peer's delta endpoint.
#[derive(Debug, Default)]
pub(crate) struct PeerDeltas {
    /// The peer has no delta endpoint: ranges only from now on.
    absent: AtomicBool,
    /// The peer has answered a delta request with a delta reply.
    confirmed: AtomicBool,
    /// Base-less entries so far: chunk bytes, and frame bytes received for them.
    nobase: Mutex<(u64, u64)>,
}

impl PeerDeltas {
    fn nobase_by_ranges(&self) -> bool {
        let (chunks, frames) = *self.nobase.lock().unwrap_or_else(|e| e.into_inner());
        chunks >= NOBASE_SAMPLE && frames >= chunks
    }

    fn note_nobase(&self, chunk: u64, frame: u64) {
        let mut n = self.nobase.lock().unwrap_or_else(|e| e.into_inner());
        n.0 += chunk;
        n.1 += frame;
    }
}

/// One entry of a batch: chunk `i` of the blob and the verified bases it is asked against.
struct Entry {
    i: usize,
    id: Digest,
    len: usize,
    bases: Vec<(Digest, Bytes)>,
}

/// How a delta request ended when it did not fail.
enum Answer {
    /// Every frame read and handed over.
    Done,
    /// The peer has no delta endpoint.
    Absent,
    /// The peer refused the batch as too large: its chunks are left for ranges.
    TooLarge,
}

impl<T: Transport> Fetcher<T> {
    /// Whether the peer has shown it has no delta endpoint.
    pub fn deltas_unsupported(&self) -> bool {
        self.deltas.absent.load(Ordering::Relaxed)
            || matches!(self.options().routes.blobs, crate::BlobRoutes::Export { .. })
    }

    /// Like [`Fetcher::fetch_chunks`], but asks for the missing chunks as chunk-pair deltas
    /// against the `bases` the caller holds (or zstd-compressed alone where it holds none),
    /// then fetches whatever deltas did not deliver as ranges. Every chunk is checked
    /// against its id before the sink sees it; a frame that does not decode, or decodes to
    /// wrong bytes, ends the call like a wrong range ([`Error::BadDelta`],
    /// [`Error::ChunkMismatch`]). Without [`crate::FetchOptions::deltas`] this is
    /// [`Fetcher::fetch_chunks`].
    pub async fn fetch_deltas<S: ChunkSink + ?Sized>(
        &self,
        blobs: &[RemoteBlob],
        have: impl Fn(&Digest) -> bool,
        bases: &Bases<'_>,
        sink: &S,
    ) -> Result<FetchReport> {
        let job = Job::new(blobs, have, sink);
        if self.opts_deltas() && !self.deltas_unsupported() {
            let job = &job;
            // Planned lazily per blob, so each blob sees what earlier replies measured.
            let mut work = Box::pin(
                stream::iter(0..blobs.len())
                    .flat_map(|b| stream::iter(self.plan_deltas(job, bases, b).into_iter().map(move |w| (b, w)))),
            );
            // One request at a time until the peer has shown it has the endpoint: a peer
            // without it then costs one refused request, not one per batch in flight.
            while !self.deltas.confirmed.load(Ordering::Relaxed) && !self.deltas_unsupported() {
                let Some((b, w)) = work.next().await else { break };
                self.fetch_batch(job, bases, b, w).await?;
            }
            work.map(Ok)
                .try_for_each_concurrent(self.options().concurrency.max(1), |(b, w)| self.fetch_batch(job, bases, b, w))
                .await?;
        }
        self.run_ranges(&job).await?;
        let mut report = job.report().clone();
        report.deltas_unsupported = self.deltas_unsupported();
        Ok(report)
    }

    fn opts_deltas(&self) -> bool {
        self.options().deltas
    }

    /// The batches of blob `b`: its pending chunks in order, cut at [`MAX_ENTRIES`] entries
    /// and the batch byte limit. Base-less chunks are left for ranges once they proved not
    /// to compress.
    fn plan_deltas<S: ?Sized>(&self, job: &Job<'_, S>, bases: &Bases<'_>, b: usize) -> Vec<Vec<usize>> {
        if self.deltas_unsupported() {
            return Vec::new();
        }
        let limit = self.options().delta_batch_bytes.clamp(1, MAX_BATCH_BYTES);
        let nobase_by_ranges = self.deltas.nobase_by_ranges();
        let mut out = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut bytes = 0u64;
        for i in 0..job.assigned[b].len() {
            if !job.pending(b, i) || (nobase_by_ranges && bases.bases(b, i).is_empty()) {
                continue;
            }
            let len = job.chunk_len(b, i);
            if !cur.is_empty() && (cur.len() == MAX_ENTRIES || bytes + len > limit) {
                out.push(std::mem::take(&mut cur));
                bytes = 0;
            }
            cur.push(i);
            bytes += len;
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    /// One batch: its bases read and checked once, then the request, retried for the
    /// entries not yet handed over.
    async fn fetch_batch<S: ChunkSink + ?Sized>(
        &self,
        job: &Job<'_, S>,
        bases: &Bases<'_>,
        b: usize,
        chunks: Vec<usize>,
    ) -> Result<()> {
        if self.deltas_unsupported() {
            return Ok(());
        }
        let mut held: HashMap<Digest, Option<Bytes>> = HashMap::new();
        let entries: Vec<Entry> = chunks
            .into_iter()
            .map(|i| {
                let (id, len) = job.blobs[b].index.chunks[i];
                // A base that cannot be read, or no longer hashes to its id, is left out.
                let bases = bases
                    .bases(b, i)
                    .iter()
                    .filter_map(|&base_id| {
                        let bytes = held.entry(base_id).or_insert_with(|| {
                            let bytes = bases.source.read_base(&base_id)?;
                            if Digest::of(&bytes) != base_id {
                                tracing::warn!(chunk = %base_id, "a held chunk no longer hashes to its id; not using it as a base");
                                return None;
                            }
                            Some(bytes)
                        });
                        bytes.clone().map(|bytes| (base_id, bytes))
                    })
                    .collect();
                Entry { i, id, len: len as usize, bases }
            })
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pending: Vec<&Entry> = entries.iter().filter(|e| job.pending(b, e.i)).collect();
            if pending.is_empty() {
                return Ok(());
            }
            match self.delta_once(job, b, &pending).await {
                Ok(Answer::Done) | Ok(Answer::TooLarge) => return Ok(()),
                Ok(Answer::Absent) => {
                    if !self.deltas.absent.swap(true, Ordering::Relaxed) {
                        tracing::info!(blob = %job.blobs[b].blob, "the peer has no delta endpoint; fetching ranges");
                    }
                    return Ok(());
                }
                Err(e) if self.options().retry.should_retry(&e, attempt) => {
                    tracing::debug!(error = %e, attempt, "retrying delta batch");
                    job.report().retries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.options().retry.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One delta request for `entries` of blob `b`, its reply read frame by frame: never
    /// more than the sum of the entries' frame bounds, each frame header checked against
    /// its chunk's bound before its payload is read.
    async fn delta_once<S: ChunkSink + ?Sized>(
        &self,
        job: &Job<'_, S>,
        b: usize,
        entries: &[&Entry],
    ) -> Result<Answer> {
        let blob = &job.blobs[b];
        let Some(path) = self.options().routes.deltas(&blob.blob) else {
            return Ok(Answer::Absent);
        };
        let request = DeltaRequest {
            entries: entries
                .iter()
                .map(|e| DeltaEntry { target: e.id, bases: e.bases.iter().map(|(id, _)| *id).collect() })
                .collect(),
        };
        let json = Bytes::from(serde_json::to_vec(&request).expect("delta requests serialize"));
        let mut req = Request::post_json(&path, json);
        req.bearer = self.bearer();
        job.report().requests += 1;
        job.report().blobs[b].requests += 1;
        let (mut resp, head_after) = self.send(req).await?;
        job.report().blobs[b].head_bytes += head_len(resp.status, &resp.headers);
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => {
                return Ok(Answer::Absent);
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                tracing::debug!(path, entries = entries.len(), "delta batch refused as too large; fetching ranges");
                return Ok(Answer::TooLarge);
            }
            status => return Err(Error::Status { path, status: status.as_u16() }),
        }
        let media = resp.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if media.split(';').next().map(str::trim) != Some(CONTENT_TYPE) {
            // A static host answering a POST with some file is not a delta endpoint.
            return Ok(Answer::Absent);
        }
        let bound: u64 = entries.iter().map(|e| (FRAME_HEADER_LEN + delta::max_payload(e.len)) as u64).sum();
        let declared = resp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > bound) {
            return Err(Error::TooLong { path, max: bound });
        }
        self.deltas.confirmed.store(true, Ordering::Relaxed);
        let t_body = Instant::now();
        let mut buf = BytesMut::new();
        let mut prefix = Vec::new();
        let mut k = 0;
        let mut got = 0u64;
        while let Some(piece) = next_piece(&mut resp.body, &path, self.options().idle_timeout).await? {
            got += piece.len() as u64;
            if got > bound {
                return Err(Error::TooLong { path, max: bound });
            }
            {
                let mut r = job.report();
                let n = piece.len() as u64;
                r.body_bytes += n;
                r.delta_bytes += n;
                r.blobs[b].body_bytes += n;
                r.blobs[b].delta_bytes += n;
            }
            buf.extend_from_slice(&piece);
            while k < entries.len() && buf.len() >= FRAME_HEADER_LEN {
                let e = entries[k];
                let header: [u8; FRAME_HEADER_LEN] = buf[..FRAME_HEADER_LEN].try_into().expect("header length");
                let bad = |reason: String| Error::BadDelta { path: path.clone(), chunk: e.id, reason };
                let (encoding, len) =
                    delta::parse_frame_header(&header, delta::max_payload(e.len)).map_err(|x| bad(x.to_string()))?;
                if buf.len() < FRAME_HEADER_LEN + len {
                    break;
                }
                buf.advance(FRAME_HEADER_LEN);
                let payload = buf.split_to(len);
                // A frame made against bases names them all, in order: their concatenation.
                let base = match (encoding, e.bases.as_slice()) {
                    (delta::Encoding::ZstdWithBase, [(_, one)]) => Some(&one[..]),
                    (delta::Encoding::ZstdWithBase, [_, ..]) => {
                        prefix.clear();
                        for (_, bytes) in &e.bases {
                            prefix.extend_from_slice(bytes);
                        }
                        Some(&prefix[..])
                    }
                    _ => None,
                };
                let bytes = delta::decode(encoding, &payload, base, e.len).map_err(|x| bad(x.to_string()))?;
                if e.bases.is_empty() {
                    self.deltas.note_nobase(e.len as u64, (FRAME_HEADER_LEN + len) as u64);
                }
                self.accept(job, b, e.i, Bytes::from(bytes), &path)?;
                k += 1;
            }
            if k == entries.len() && !buf.is_empty() {
                return Err(Error::TooLong { path, max: got - buf.len() as u64 });
            }
        }
        if k < entries.len() {
            return Err(Error::FramesMissing { path, got: k, expected: entries.len() });
        }
        self.observe(head_after, got, t_body.elapsed());
        Ok(Answer::Done)
    }
}
