//! Integration tests of fwrepo-fetch: range planning laws, TUF refresh over a transport, a
//! hostile peer in memory, chunk-pair deltas against an in-memory delta endpoint, and the engine over real HTTP on loopback.

mod deltas;
mod hostile;
mod http;
mod plan;
mod refresh;
mod responder;
mod support;
