//! fwget: the update client. It trusts only the vendor's signed metadata (the `fwrepo-tuf`
//! workflow, run by `fwrepo-fetch`), learns releases, components and chunker sizes from it,
//! and downloads only the chunks of each file that its seeds (older versions, the out dir, an
//! interrupted download) do not already hold. No RocksDB: it builds in a minute.
//!
//! - [`dir`]: the client directory (config, pinned root, token, metadata, seed index).
//! - [`catalog`]: releases and plans from signed targets, with the server's ordering.
//! - [`seeds`]: the seed index; [`delta`]: assembling, verifying and renaming files.
//! - [`client`]: peers, login and renewal, refresh, offline lookups, fetch.

pub mod catalog;
pub mod client;
pub mod delta;
pub mod dir;
pub mod error;
pub mod seeds;

pub use error::{Error, Result, exit};
