//! Integration tests of the server, run against a real listener on 127.0.0.1:0.

mod abuse;
mod auth;
mod config;
mod deltas;
mod downloads;
mod range_table;
mod refresh;
mod routes;
mod sendfile;
mod server;
mod support;
mod tls;
