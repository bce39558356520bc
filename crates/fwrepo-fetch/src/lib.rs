//! fwrepo-fetch: the fetch engine the mirror's sync and `fwget` share. No RocksDB, no files:
//! bytes come through a [`Transport`] and leave through the caller's [`ChunkSink`] and
//! [`MetadataStore`].
//!
//! - [`transport`]: the [`Transport`] trait (GET with one `Range` / `If-None-Match`, POST
//!   JSON), [`WireCounter`] (every byte received, heads and bodies);
//!   [`HttpTransport`] (reqwest, rustls, HTTP/2) and [`MemoryTransport`] (tests, with
//!   [`Fault`]s).
//! - [`Fetcher`]: one peer. [`Fetcher::refresh`] runs the TUF workflow
//!   (`fwrepo_tuf::Updater`); [`Fetcher::remote_blob`] fetches a target's chunk index and
//!   checks it against the signed `custom.chunk_index`; [`Fetcher::fetch_chunks`] fetches
//!   the chunks a caller lacks as coalesced ranges, several in flight, verified, retried;
//!   [`Fetcher::fetch_deltas`] asks for them as chunk-pair deltas against [`Bases`] the
//!   caller holds ([`deltas`]), falling back to ranges where the peer has no delta endpoint.
//! - [`plan`]: range coalescing ([`plan::coalesce`]) under a [`CostModel`] of round-trip
//!   time × bandwidth, measured as requests complete.
//! - [`BlobVerifier`]: the final length + SHA-256 + BLAKE3 check of an assembled blob.
//!
//! Every body read is bounded by the length signed metadata or the chunk index gives it,
//! every wait has a timeout, and no chunk reaches a sink before it hashed to its id.

pub mod deltas;
mod error;
mod fetch;
mod http;
mod memory;
pub mod plan;
mod read;
mod retry;
pub mod transport;
mod tuf;
mod verify;

pub use deltas::{BaseSource, Bases, NoBases};
pub use error::{BoxError, Error, Result};
pub use fetch::{
    BlobRoutes, BlobStats, ChunkSink, FetchOptions, FetchReport, Fetcher, Placement, RemoteBlob, Routes, VerifiedChunk,
};
pub use http::{HttpOptions, HttpTransport};
pub use memory::{Fault, Logged, MemoryTransport};
pub use plan::{CostModel, PlannedRange};
pub use retry::RetryPolicy;
pub use transport::{Body, BodySource, Method, Request, Response, Transport, WireCounter, WireStats};
pub use tuf::{FetchedMetadata, MetadataStore, Refresh, StoredMetadata};
pub use verify::BlobVerifier;
