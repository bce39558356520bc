//! The fwrepo HTTP server: public signed metadata, token-gated range downloads from the
//! store's mapped packs, the catalog API, token issuance, health and metrics.
//!
//! The binary builds a [`ServerConfig`] and a [`ServerState`] and calls [`serve`] with a
//! future that completes on SIGTERM/SIGINT:
//!
//! ```no_run
//! # async fn run(
//! #     store: std::sync::Arc<fwrepo_store::Store>,
//! #     verifier: fwrepo_entitle::Verifier,
//! #     stop: tokio::sync::oneshot::Receiver<()>,
//! # ) -> Result<(), fwrepo_server::Error> {
//! use std::sync::Arc;
//! use fwrepo_server::{DirMetadata, ServerConfig, ServerState, serve};
//! let config = ServerConfig::default();
//! let metadata = Arc::new(DirMetadata::new("repo/metadata")?);
//! let state = Arc::new(ServerState::new(&config, store, metadata, verifier)?);
//! // `stop` fires on SIGTERM/SIGINT in the binary.
//! serve(config, state, async { let _ = stop.await; }).await
//! # }
//! ```
//!
//! | route | access |
//! |---|---|
//! | `GET/HEAD /metadata/<name>.json` | public, never 403 |
//! | `GET/HEAD /targets/<dir>/<sha256>.<name>`, `/v1/blobs/<blake3>` | bearer token, `Range` |
//! | `GET/HEAD /v1/blobs/<blake3>/chunks` | bearer token |
//! | `POST /v1/blobs/<blake3>/deltas` | bearer token (blob and every base), bounded pool, 503 when full |
//! | `GET /v1/catalog/models`, `/v1/catalog/models/<model>`, `/v1/catalog/releases/<id>` | public |
//! | `POST /v1/catalog/plan` | public |
//! | `POST /v1/tokens` | public, rate limited per client and credential (origin role only) |
//! | `GET /healthz`, `/readyz`, `/metrics` | public |
//!
//! Module map: [`range`] (pure RFC 9110 range logic), `service` (routing, handlers, the
//! download gate), `error` (the one error → response mapping), `server` (listener,
//! connections, timeouts, shutdown), `http1` (plain HTTP/1.1 with `sendfile`), `tls`
//! (certificate and key loading, ALPN), `body` (zero-copy body), `limit` (token rate limits,
//! client keys), [`metrics`], `audit`, `deltas` (chunk-pair deltas: the gate on blob and
//! bases, the bounded pool and cache).

mod audit;
mod body;
mod config;
mod deltas;
mod error;
mod http1;
mod limit;
pub mod metrics;
mod mirror;
pub mod range;
mod reply;
mod scan;
mod server;
mod service;
mod state;
mod tls;

pub use audit::{AuditLog, AuditPath, AuditRecord};
pub use body::Body;
pub use config::{DeltaConfig, ON_DEMAND_LEVEL, ServerConfig, TokenConfig, TokenRequire};
pub use error::Error;
pub use mirror::MirrorStatus;
pub use server::{Bound, bind, serve};
pub use state::{DirMetadata, MetadataSource, ServerState, column_families};
