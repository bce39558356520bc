//! Integration tests of fwrepo-fetch: range planning laws, TUF refresh over a transport, a
//! hostile peer in memory, and the engine over real HTTP on loopback.

mod hostile;
mod http;
mod plan;
mod refresh;
mod support;
