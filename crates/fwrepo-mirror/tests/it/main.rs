//! Integration tests of the mirror against an in-memory upstream: one binary, a module per
//! concern.

mod gc;
mod hostile;
mod token;
