//! Integration tests of fwrepo-tuf: canonical JSON, names, keys, the repository builder and the
//! client updater, with one named fixture per attack.

mod attacks;
mod cjson;
mod common;
mod delegation;
mod hashes;
mod keys;
mod names;
mod patterns;
mod roundtrip;
