//! Integration tests of fwrepo-catalog: version ordering, staging and its atomicity, queries
//! over a three-release fixture, update plans, persistence and read-only instances.

mod persistence;
mod plan;
mod queries;
mod staging;
mod support;
mod version;
