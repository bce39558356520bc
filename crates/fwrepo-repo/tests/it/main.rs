//! Integration tests of fwrepo-repo: publish, refresh, rotation, generic files, export, that
//! every refused operation leaves metadata and catalog exactly as they were, and tough (a
//! second, independent TUF client) reading an export.

mod publish;
mod tough_client;
