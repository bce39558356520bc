//! Integration tests of fwrepo-catalog (version ordering is tested in fwrepo-version): staging and its atomicity, queries
//! over a three-release fixture, update plans, persistence and read-only instances.

mod persistence;
mod plan;
mod queries;
mod staging;
mod support;
