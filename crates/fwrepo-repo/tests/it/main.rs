//! Integration tests of fwrepo-repo: publish, refresh, rotation, generic files, export, and
//! that every refused operation leaves metadata and catalog exactly as they were.

mod publish;
