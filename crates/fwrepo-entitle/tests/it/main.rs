//! Integration tests of fwrepo-entitle: token rejections, issuance policy, keys, the verified
//! token cache, CSV/JSON import, and random-input properties.

mod cache;
mod import;
mod issuance;
mod keys;
mod props;
mod support;
mod tokens;
