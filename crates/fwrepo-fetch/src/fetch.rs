//! The engine: a [`Fetcher`] sends requests through one [`Transport`] (one peer) and fetches
//! the chunks a caller lacks as coalesced byte ranges, several in flight, verifying every
//! chunk against its id before a [`ChunkSink`] sees it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt, stream};
use fwrepo_chunk::{ChunkIndex, Digest};
use fwrepo_tuf::TargetInfo;
use http::{StatusCode, header};

use crate::error::{BoxError, Error, Result};
use crate::plan::{self, CostModel, Estimator, PlannedRange};
use crate::read::{next_piece, read_at_most};
use crate::retry::RetryPolicy;
use crate::transport::{Body, Request, Response, Transport};

/// Where a peer serves what the engine fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// Prefix of metadata file names: `/metadata/`.
    pub metadata: String,
    pub blobs: BlobRoutes,
}

/// Where a peer serves blobs and their chunk indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobRoutes {
    /// `fwrepo serve` (origin or mirror): blobs by BLAKE3 id at `<prefix><id>`, chunk indexes
    /// at `<prefix><id>/chunks`. The prefix is `/v1/blobs/`.
    ById(String),
    /// Any plain HTTP server hosting a `fwrepo export`: a target's bytes at its
    /// consistent-snapshot name `<targets>DIR/<sha256>.NAME`, a chunk index at
    /// `<chunks>` + [`ChunkIndex::export_path`] of its signed id.
    Export { targets: String, chunks: String },
}

impl Default for Routes {
    fn default() -> Self {
        Routes { metadata: "/metadata/".into(), blobs: BlobRoutes::ById("/v1/blobs/".into()) }
    }
}

/// Percent-encodes what may not stand bare in a URL path (a target name may hold spaces, `#`,
/// `?` or `%`); `/` stays, since it separates the directories of a target path.
const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');

impl Routes {
    /// The routes of a static export whose root is the peer's base URL (`metadata/`,
    /// `targets/` and `chunks/` directly below it).
    pub fn export() -> Routes {
        Routes {
            metadata: "/metadata/".into(),
            blobs: BlobRoutes::Export { targets: "/targets/".into(), chunks: "/".into() },
        }
    }

    pub fn metadata(&self, name: &str) -> String {
        format!("{}{name}", self.metadata)
    }

    /// The path of `target`'s bytes, whose signed `custom.blake3` is `blob`. A static export
    /// names them by the signed SHA-256, so a target without one has no path there.
    pub fn blob(&self, target: &TargetInfo, blob: &Digest) -> Result<String> {
        match &self.blobs {
            BlobRoutes::ById(prefix) => Ok(format!("{prefix}{blob}")),
            BlobRoutes::Export { targets, .. } => {
                let sha = target.file.sha256().ok_or_else(|| Error::TargetCustom {
                    target: target.path.to_string(),
                    reason: "signed metadata has no sha256 to name the file of a static export".into(),
                })?;
                let name = fwrepo_tuf::layout::target_file(&target.path, &sha);
                Ok(format!("{targets}{}", percent_encoding::utf8_percent_encode(&name, PATH_SEGMENT)))
            }
        }
    }

    /// The path of the chunk index with signed id `index` of blob `blob`.
    pub fn chunk_index(&self, blob: &Digest, index: &Digest) -> String {
        match &self.blobs {
            BlobRoutes::ById(prefix) => format!("{prefix}{blob}/chunks"),
            BlobRoutes::Export { chunks, .. } => format!("{chunks}{}", ChunkIndex::export_path(index)),
        }
    }
    /// Where chunk-pair deltas of `blob` are asked for (`POST`); a static export has no
    /// such endpoint.
    pub fn deltas(&self, blob: &Digest) -> Option<String> {
        match &self.blobs {
            BlobRoutes::ById(prefix) => Some(format!("{prefix}{blob}/deltas")),
            BlobRoutes::Export { .. } => None,
        }
    }
}

/// Settings of a [`Fetcher`].
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Range requests in flight at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Longest wait for a response head.
    pub request_timeout: Duration,
    /// Longest wait for the next body bytes.
    pub idle_timeout: Duration,
    /// The first estimate of the peer's costs; measurements refine it.
    pub cost: CostModel,
    /// Smallest chunk the repository cuts (all but a blob's last chunk are at least this
    /// long): bounds a chunk-index download before it is hashed. The FastCDC minimum (64) is
    /// always safe; the repository's `min_size` is tighter.
    pub min_chunk: u32,
    pub routes: Routes,
    /// Ask for chunk-pair deltas ([`Fetcher::fetch_deltas`]) where the peer has the
    /// endpoint; `false` fetches byte ranges only.
    pub deltas: bool,
    /// Most target-chunk bytes one delta request names (the server refuses more than
    /// [`crate::deltas::MAX_BATCH_BYTES`]).
    pub delta_batch_bytes: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 4,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            cost: CostModel::default(),
            min_chunk: 64,
            routes: Routes::default(),
            deltas: true,
            delta_batch_bytes: crate::deltas::MAX_BATCH_BYTES,
        }
    }
}

/// A target from verified metadata with its chunk index, checked against the signed
/// `custom.chunk_index` id and the signed length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteBlob {
    pub target: TargetInfo,
    /// Signed `custom.blake3`: the blob's id.
    pub blob: Digest,
    /// Signed `custom.chunk_index`.
    pub chunk_index_id: Digest,
    pub index: ChunkIndex,
}

impl RemoteBlob {
    pub fn len(&self) -> u64 {
        self.index.blob_len
    }

    pub fn is_empty(&self) -> bool {
        self.index.blob_len == 0
    }
}

/// Where a fetched chunk goes: blob `blob` (an index into the slice given to
/// [`Fetcher::fetch_chunks`]) at byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    pub blob: usize,
    pub offset: u64,
}

/// A chunk whose bytes hashed to its id. Only the engine makes these, after the check.
#[derive(Debug)]
pub struct VerifiedChunk {
    id: Digest,
    bytes: Bytes,
    placements: Arc<[Placement]>,
}

impl VerifiedChunk {
    pub fn id(&self) -> &Digest {
        &self.id
    }
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Every place the chunk occurs among the blobs fetched (it was fetched once for all).
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }
}

/// What receives verified chunks: the mirror's store, or fwget's output files. Called from
/// the fetching task; each chunk arrives once.
pub trait ChunkSink: Sync {
    fn put(&self, chunk: &VerifiedChunk) -> std::result::Result<(), BoxError>;
}

/// What one [`Fetcher::fetch_chunks`] did for one blob (what fwget reports per file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobStats {
    /// Requests for this blob's bytes, retries included.
    pub requests: u64,
    /// Their response heads ([`crate::transport::head_len`]).
    pub head_bytes: u64,
    /// Their body bytes.
    pub body_bytes: u64,
    /// Of those, bytes of chunk-pair delta replies (frames).
    pub delta_bytes: u64,
    /// Chunks fetched from this blob (a chunk shared with an earlier blob counts there).
    pub chunks_fetched: u64,
    pub chunk_bytes_fetched: u64,
}

/// What one [`Fetcher::fetch_chunks`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Verified chunks handed to the sink.
    pub chunks_fetched: u64,
    /// Their bytes.
    pub chunk_bytes_fetched: u64,
    /// Body bytes of the range answers (chunks plus filled gaps) and delta replies.
    pub body_bytes: u64,
    /// Of those, bytes of chunk-pair delta replies (frames).
    pub delta_bytes: u64,
    /// Range (or whole-blob) and delta requests sent, retries included.
    pub requests: u64,
    /// Retries after transient errors.
    pub retries: u64,
    /// The peer answered a `Range` request with the whole blob (200).
    pub ranges_ignored: bool,
    /// The peer has no delta endpoint: ranges were fetched instead.
    pub deltas_unsupported: bool,
    /// Per blob, in the order given.
    pub blobs: Vec<BlobStats>,
}

/// The fetch engine for one peer.
pub struct Fetcher<T> {
    transport: T,
    opts: FetchOptions,
    bearer: Mutex<Option<Arc<str>>>,
    estimator: Estimator,
    /// Set once the peer answered a `Range` with 200: later blobs are fetched whole.
    ranges_ignored: AtomicBool,
    /// Set once the peer answered a `Range` with the 206 asked for.
    ranges_confirmed: AtomicBool,
    pub(crate) retries: AtomicU64,
    pub(crate) deltas: crate::deltas::PeerDeltas,
}

/// Shared state of one `fetch_chunks` / `fetch_deltas` call.
pub(crate) struct Job<'a, S: ?Sized> {
    pub(crate) blobs: &'a [RemoteBlob],
    /// Per blob, per chunk: fetched from this blob (not held, and not fetched from an earlier
    /// position).
    pub(crate) assigned: Vec<Vec<bool>>,
    offsets: Vec<Vec<u64>>,
    placements: HashMap<Digest, Arc<[Placement]>>,
    /// Chunks claimed for the sink: a chunk is claimed once, just before it is handed over.
    delivered: Mutex<HashSet<Digest>>,
    /// Blobs read whole already (after a 200 to a Range).
    whole_done: Vec<AtomicBool>,
    sink: &'a S,
    report: Mutex<FetchReport>,
}

impl<'a, S: ?Sized> Job<'a, S> {
    /// Assigns each chunk `have` says the caller lacks to its first position among `blobs`.
    pub(crate) fn new(blobs: &'a [RemoteBlob], have: impl Fn(&Digest) -> bool, sink: &'a S) -> Job<'a, S> {
        let mut first: HashMap<Digest, Vec<Placement>> = HashMap::new();
        let mut assigned = Vec::with_capacity(blobs.len());
        let mut offsets = Vec::with_capacity(blobs.len());
        for (b, blob) in blobs.iter().enumerate() {
            let mut flags = vec![false; blob.index.chunks.len()];
            let mut offs = Vec::with_capacity(blob.index.chunks.len());
            for (i, (offset, (id, _))) in blob.index.offsets().enumerate() {
                offs.push(offset);
                if have(id) {
                    continue;
                }
                let places = first.entry(*id).or_default();
                flags[i] = places.is_empty();
                places.push(Placement { blob: b, offset });
            }
            assigned.push(flags);
            offsets.push(offs);
        }
        Job {
            blobs,
            assigned,
            offsets,
            placements: first.into_iter().map(|(id, p)| (id, Arc::from(p))).collect(),
            delivered: Mutex::new(HashSet::new()),
            whole_done: blobs.iter().map(|_| AtomicBool::new(false)).collect(),
            sink,
            report: Mutex::new(FetchReport {
                blobs: vec![BlobStats::default(); blobs.len()],
                ..FetchReport::default()
            }),
        }
    }
    pub(crate) fn report(&self) -> std::sync::MutexGuard<'_, FetchReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn is_delivered(&self, id: &Digest) -> bool {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }
    pub(crate) fn chunk_len(&self, b: usize, i: usize) -> u64 {
        u64::from(self.blobs[b].index.chunks[i].1)
    }
    /// Whether chunk `i` of blob `b` is still to be fetched from that blob.
    pub(crate) fn pending(&self, b: usize, i: usize) -> bool {
        self.assigned[b][i] && !self.is_delivered(&self.blobs[b].index.chunks[i].0)
    }
}

impl<T: Transport> Fetcher<T> {
    pub fn new(transport: T, opts: FetchOptions) -> Fetcher<T> {
        let estimator = Estimator::new(opts.cost);
        Fetcher {
            transport,
            opts,
            bearer: Mutex::new(None),
            estimator,
            ranges_ignored: AtomicBool::new(false),
            ranges_confirmed: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            deltas: crate::deltas::PeerDeltas::default(),
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// The token sent with gated requests (chunk indexes, blobs); `None` for none.
    pub fn set_bearer(&self, token: Option<&str>) {
        *self.bearer.lock().unwrap_or_else(|e| e.into_inner()) = token.map(Arc::from);
    }

    pub(crate) fn bearer(&self) -> Option<Arc<str>> {
        self.bearer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current estimate of the peer's round trip and bandwidth.
    pub fn cost_model(&self) -> CostModel {
        self.estimator.current()
    }

    /// Whether the peer has answered a `Range` request with the whole file.
    pub fn ranges_ignored(&self) -> bool {
        self.ranges_ignored.load(Ordering::Relaxed)
    }

    /// Retries made so far, over every call.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends `req`, waiting at most the request timeout for the response head.
    pub(crate) async fn send(&self, req: Request) -> Result<(Response, Duration)> {
        let path = req.path.clone();
        let t0 = Instant::now();
        match tokio::time::timeout(self.opts.request_timeout, self.transport.send(req)).await {
            Ok(r) => Ok((r?, t0.elapsed())),
            Err(_) => Err(Error::Timeout { path, after: self.opts.request_timeout }),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry policy gives up.
    pub(crate) async fn with_retries<R, F, Fut>(&self, mut attempt: F) -> Result<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Ok(r) => return Ok(r),
                Err(e) if self.opts.retry.should_retry(&e, n) => {
                    tracing::debug!(error = %e, attempt = n, "retrying");
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.opts.retry.delay(n)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GETs `path` (with the bearer token when `gated`), reading at most `max` body bytes.
    /// Any status but 200 is [`Error::Status`]; transient failures are retried.
    pub async fn get_bounded(&self, path: &str, max: u64, gated: bool) -> Result<Vec<u8>> {
        self.with_retries(|| async {
            let mut req = Request::get(path);
            if gated {
                req.bearer = self.bearer();
            }
            let (mut resp, _) = self.send(req).await?;
            if resp.status != StatusCode::OK {
                return Err(Error::Status { path: path.to_owned(), status: resp.status.as_u16() });
            }
            read_at_most(&mut resp.body, max, path, self.opts.idle_timeout).await
        })
        .await
    }

    /// POSTs `json` to `path` (with the bearer token, if set) and returns the status and at
    /// most `max` bytes of the answer, whatever the status; 5xx and transport failures are
    /// retried first.
    pub async fn post_json(&self, path: &str, json: &serde_json::Value, max: u64) -> Result<(StatusCode, Vec<u8>)> {
        let body = Bytes::from(serde_json::to_vec(json).expect("JSON values serialize"));
        self.with_retries(|| async {
            let mut req = Request::post_json(path, body.clone());
            req.bearer = self.bearer();
            let (mut resp, _) = self.send(req).await?;
            let bytes = read_at_most(&mut resp.body, max, path, self.opts.idle_timeout).await?;
            if resp.status.is_server_error() {
                return Err(Error::Status { path: path.to_owned(), status: resp.status.as_u16() });
            }
            Ok((resp.status, bytes))
        })
        .await
    }

    /// Fetches `target`'s chunk index and checks it: it must hash to the signed
    /// `custom.chunk_index`, parse, and describe exactly the signed length. The download is
    /// capped at the longest index a blob of that length can have.
    pub async fn remote_blob(&self, target: &TargetInfo) -> Result<RemoteBlob> {
        let name = target.path.to_string();
        let id = |field: &str| -> Result<Digest> {
            let value = target.file.custom.as_ref().and_then(|c| c.get(field)).and_then(|v| v.as_str());
            let value = value.ok_or_else(|| Error::TargetCustom {
                target: name.clone(),
                reason: format!("signed metadata has no custom.{field}"),
            })?;
            value
                .parse()
                .map_err(|e| Error::TargetCustom { target: name.clone(), reason: format!("custom.{field}: {e}") })
        };
        let (blob, chunk_index_id) = (id("blake3")?, id("chunk_index")?);
        let max = ChunkIndex::max_encoded_len(target.file.length, self.opts.min_chunk);
        // Checked now, so a blob accepted here always has a path to its bytes.
        self.opts.routes.blob(target, &blob)?;
        let bytes = self.get_bounded(&self.opts.routes.chunk_index(&blob, &chunk_index_id), max, true).await?;
        let got = Digest::of(&bytes);
        if got != chunk_index_id {
            return Err(Error::ChunkIndexMismatch { target: name, expected: chunk_index_id, got });
        }
        let index = ChunkIndex::parse(&bytes).map_err(|source| Error::ChunkIndex { target: name.clone(), source })?;
        if index.blob_len != target.file.length {
            return Err(Error::ChunkIndexLength {
                target: name,
                index_len: index.blob_len,
                signed_len: target.file.length,
            });
        }
        Ok(RemoteBlob { target: target.clone(), blob, chunk_index_id, index })
    }

    /// Fetches every chunk of `blobs` that `have` says the caller lacks, and hands each to
    /// `sink` once it has hashed to its id. A chunk that occurs several times (in one blob
    /// or across blobs) is fetched once and handed over with all its placements.
    ///
    /// Ranges are planned per blob with the current cost estimate (adjacent missing chunks
    /// in one range, gaps filled when cheaper than a request) and fetched up to
    /// `concurrency` at a time. Transient failures are retried from the first chunk not yet
    /// handed over. A wrong chunk ends the call with [`Error::ChunkMismatch`]; chunks handed
    /// over before stay valid, so a caller can resume from another peer.
    pub async fn fetch_chunks<S: ChunkSink + ?Sized>(
        &self,
        blobs: &[RemoteBlob],
        have: impl Fn(&Digest) -> bool,
        sink: &S,
    ) -> Result<FetchReport> {
        let job = Job::new(blobs, have, sink);
        self.run_ranges(&job).await?;
        let report = job.report().clone();
        Ok(report)
    }

    /// Fetches every chunk of `job` still pending as planned ranges.
    pub(crate) async fn run_ranges<S: ChunkSink + ?Sized>(&self, job: &Job<'_, S>) -> Result<()> {
        let blobs = job.blobs;
        // Planned lazily, as the previous blob's ranges are taken, so each blob is planned
        // with what the earlier requests measured.
        let mut ranges = Box::pin(
            stream::iter(0..blobs.len())
                .flat_map(|b| stream::iter(self.plan_blob(job, b).into_iter().map(move |r| (b, r)))),
        );
        // Until the peer has answered one Range with 206, one request at a time: a peer that
        // ignores Range then costs one whole-blob read, not one per range in flight.
        while !self.ranges_confirmed.load(Ordering::Relaxed) && !self.ranges_ignored() {
            let Some((b, r)) = ranges.next().await else { break };
            self.fetch_range(job, b, r).await?;
        }
        ranges.map(Ok).try_for_each_concurrent(self.opts.concurrency.max(1), |(b, r)| self.fetch_range(job, b, r)).await
    }

    fn plan_blob<S: ?Sized>(&self, job: &Job<'_, S>, b: usize) -> Vec<PlannedRange> {
        let needed: Vec<bool> = (0..job.assigned[b].len()).map(|i| job.pending(b, i)).collect();
        self.plan_needed(job, b, &needed)
    }

    /// The ranges for the chunks of blob `b` marked in `needed`.
    pub(crate) fn plan_needed<S: ?Sized>(&self, job: &Job<'_, S>, b: usize, needed: &[bool]) -> Vec<PlannedRange> {
        if !needed.iter().any(|&n| n) {
            return Vec::new();
        }
        if self.ranges_ignored() {
            let n = needed.len();
            return vec![PlannedRange { start: 0, end: job.blobs[b].len(), chunks: 0..n }];
        }
        plan::coalesce(&job.blobs[b].index, needed, &self.estimator.current())
    }

    /// Records one request's timing for range planning.
    pub(crate) fn observe(&self, head_after: Duration, body_bytes: u64, body_time: Duration) {
        self.estimator.observe(head_after, body_bytes, body_time);
    }

    /// One planned range, retried from its first chunk not yet handed over.
    pub(crate) async fn fetch_range<S: ChunkSink + ?Sized>(
        &self,
        job: &Job<'_, S>,
        b: usize,
        range: PlannedRange,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if job.whole_done[b].load(Ordering::Relaxed) {
                return Ok(());
            }
            let pending = |i: &usize| job.pending(b, *i);
            let Some(first) = range.chunks.clone().find(pending) else { return Ok(()) };
            let last = range.chunks.clone().rev().find(pending).expect("first exists");
            let chunks = first..last + 1;
            match self.fetch_once(job, b, chunks).await {
                Ok(()) => return Ok(()),
                Err(e) if self.opts.retry.should_retry(&e, attempt) => {
                    tracing::debug!(error = %e, attempt, "retrying range");
                    job.report().retries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.opts.retry.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request for chunks `chunks` of blob `b`.
    async fn fetch_once<S: ChunkSink + ?Sized>(&self, job: &Job<'_, S>, b: usize, chunks: Range<usize>) -> Result<()> {
        let blob = &job.blobs[b];
        let path = self.opts.routes.blob(&blob.target, &blob.blob)?;
        let start = job.offsets[b][chunks.start];
        let end = job.offsets[b][chunks.end - 1] + job.chunk_len(b, chunks.end - 1);
        // A peer known to ignore Range is asked for the whole blob, read once.
        let whole = self.ranges_ignored();
        let mut req = Request::get(&path);
        req.bearer = self.bearer();
        if !whole {
            req = req.with_range(start, end);
        }
        job.report().requests += 1;
        job.report().blobs[b].requests += 1;
        let (mut resp, head_after) = self.send(req).await?;
        job.report().blobs[b].head_bytes += crate::transport::head_len(resp.status, &resp.headers);
        let t_body = Instant::now();
        let read = match resp.status {
            StatusCode::PARTIAL_CONTENT if !whole => {
                let want = format!("bytes {start}-{}/{}", end - 1, blob.len());
                let got = resp.headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
                if got != Some(want.as_str()) {
                    return Err(Error::BadRange { path, start, end, content_range: got.map(str::to_owned) });
                }
                self.ranges_confirmed.store(true, Ordering::Relaxed);
                self.read_chunks(job, b, &mut resp.body, &path, chunks, end - start).await?
            }
            StatusCode::OK => {
                if !whole && !self.ranges_ignored.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path, "the peer ignores Range requests; reading whole blobs");
                }
                job.report().ranges_ignored = true;
                let n = self.read_chunks(job, b, &mut resp.body, &path, 0..blob.index.chunks.len(), blob.len()).await?;
                job.whole_done[b].store(true, Ordering::Relaxed);
                n
            }
            status => return Err(Error::Status { path, status: status.as_u16() }),
        };
        self.estimator.observe(head_after, read, t_body.elapsed());
        Ok(())
    }

    /// Reads a body that must hold exactly chunks `chunks` of blob `b` (`len` bytes),
    /// verifying and handing over each chunk assigned to this blob as soon as it is complete.
    async fn read_chunks<S: ChunkSink + ?Sized>(
        &self,
        job: &Job<'_, S>,
        b: usize,
        body: &mut Body,
        path: &str,
        chunks: Range<usize>,
        len: u64,
    ) -> Result<u64> {
        let mut buf = BytesMut::new();
        let mut next = chunks.start;
        let mut got = 0u64;
        while let Some(piece) = next_piece(body, path, self.opts.idle_timeout).await? {
            got += piece.len() as u64;
            if got > len {
                return Err(Error::TooLong { path: path.to_owned(), max: len });
            }
            let mut r = job.report();
            r.body_bytes += piece.len() as u64;
            r.blobs[b].body_bytes += piece.len() as u64;
            drop(r);
            buf.extend_from_slice(&piece);
            while next < chunks.end && buf.len() as u64 >= job.chunk_len(b, next) {
                let bytes = buf.split_to(job.chunk_len(b, next) as usize).freeze();
                self.accept(job, b, next, bytes, path)?;
                next += 1;
            }
        }
        if got < len {
            return Err(Error::Truncated { path: path.to_owned(), got, expected: len });
        }
        Ok(got)
    }

    /// Hands chunk `i` of blob `b` to the sink if it is still to be fetched and `bytes` hash
    /// to its id; a chunk is claimed before it is handed over, so it is handed over once even
    /// when two requests carry it.
    pub(crate) fn accept<S: ChunkSink + ?Sized>(
        &self,
        job: &Job<'_, S>,
        b: usize,
        i: usize,
        bytes: Bytes,
        path: &str,
    ) -> Result<()> {
        if !job.assigned[b][i] {
            return Ok(()); // a filled gap, or a chunk held or fetched elsewhere
        }
        let id = job.blobs[b].index.chunks[i].0;
        if job.is_delivered(&id) {
            return Ok(());
        }
        if Digest::of(&bytes) != id {
            return Err(Error::ChunkMismatch { path: path.to_owned(), chunk: id, offset: job.offsets[b][i] });
        }
        if !job.delivered.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            return Ok(());
        }
        let len = bytes.len() as u64;
        let chunk = VerifiedChunk { id, bytes, placements: Arc::clone(&job.placements[&id]) };
        job.sink.put(&chunk).map_err(|source| Error::Sink { chunk: id, source })?;
        let mut r = job.report();
        r.chunks_fetched += 1;
        r.chunk_bytes_fetched += len;
        r.blobs[b].chunks_fetched += 1;
        r.blobs[b].chunk_bytes_fetched += len;
        Ok(())
    }
}
