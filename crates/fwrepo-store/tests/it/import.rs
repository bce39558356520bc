//! Importing a blob chunk by chunk, as a mirror does: verified chunks, durable before the blob,
//! the blob visible only when every fact matches.

use fwrepo_store::{Digest, Error, ExpectedBlob};
use sha2::{Digest as _, Sha256};

use crate::{image, new_store, read_all};

/// A blob ingested into a source store: its chunk index, its chunk bytes, what signed metadata
/// would say about it, and its bytes.
type Source = (fwrepo_store::ChunkIndex, Vec<(Digest, Vec<u8>)>, ExpectedBlob, Vec<u8>);

/// A blob ingested into a source store (see [`Source`]).
fn source(seed: u64, len: usize) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let data = image(seed, len);
    let report = store.ingest_reader(&data[..], "src").unwrap();
    let index = store.chunk_index(&report.blob).unwrap();
    let mut pos = 0usize;
    let chunks = index
        .chunks
        .iter()
        .map(|(id, l)| {
            let c = data[pos..pos + *l as usize].to_vec();
            pos += *l as usize;
            (*id, c)
        })
        .collect();
    let expect = ExpectedBlob { blob: report.blob, len: report.len, sha256: Sha256::digest(&data).into() };
    (index, chunks, expect, data)
}

#[test]
fn imported_blob_reads_back_and_needs_no_rechunking() {
    let (index, chunks, expect, data) = source(1, 300_000);
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let ids: Vec<Digest> = index.chunks.iter().map(|(id, _)| *id).collect();
    let missing = store.missing_chunks(&ids).unwrap();
    assert_eq!(missing.len(), ids.iter().collect::<std::collections::HashSet<_>>().len());
    let r = store.put_chunks(chunks.iter().map(|(id, c)| (*id, &c[..]))).unwrap();
    assert_eq!(r.stored + r.already, chunks.len());
    assert!(store.missing_chunks(&ids).unwrap().is_empty());
    assert!(!store.contains(&expect.blob).unwrap(), "chunks alone do not make a blob visible");
    let info = store.assemble_blob(&index, &expect).unwrap();
    assert_eq!(info.blob, expect.blob);
    assert_eq!(info.chunk_index, index.id());
    assert_eq!(read_all(&store, &expect.blob), data);
    // Idempotent.
    assert_eq!(store.assemble_blob(&index, &expect).unwrap(), info);
}

#[test]
fn chunk_with_a_flipped_byte_is_refused_and_nothing_is_stored() {
    let (index, mut chunks, _, _) = source(2, 100_000);
    chunks[1].1[7] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    let err = store.put_chunks(chunks.iter().map(|(id, c)| (*id, &c[..]))).unwrap_err();
    assert!(matches!(err, Error::ChunkMismatch { chunk, .. } if chunk == chunks[1].0), "{err}");
    let ids: Vec<Digest> = index.chunks.iter().map(|(id, _)| *id).collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(store.missing_chunks(&ids).unwrap().len(), distinct.len(), "not even the good chunks were stored");
}

#[test]
fn blob_with_a_missing_chunk_is_not_made_visible() {
    let (index, chunks, expect, _) = source(3, 200_000);
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.put_chunks(chunks.iter().skip(1).map(|(id, c)| (*id, &c[..]))).unwrap();
    let err = store.assemble_blob(&index, &expect).unwrap_err();
    assert!(matches!(err, Error::MissingChunk { .. }), "{err}");
    assert!(!store.contains(&expect.blob).unwrap());
}

#[test]
fn blob_whose_signed_sha256_differs_is_not_made_visible() {
    let (index, chunks, mut expect, _) = source(4, 150_000);
    expect.sha256[0] ^= 0xff;
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.put_chunks(chunks.iter().map(|(id, c)| (*id, &c[..]))).unwrap();
    let err = store.assemble_blob(&index, &expect).unwrap_err();
    assert!(matches!(err, Error::BlobMismatch { .. }), "{err}");
    assert!(!store.contains(&expect.blob).unwrap());
}

#[test]
fn chunk_index_of_another_blob_is_not_assembled_under_this_id() {
    let (index_a, chunks_a, _, _) = source(5, 120_000);
    let (_, _, expect_b, _) = source(6, 120_000);
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path());
    store.put_chunks(chunks_a.iter().map(|(id, c)| (*id, &c[..]))).unwrap();
    let lie = ExpectedBlob { len: index_a.blob_len, ..expect_b };
    let err = store.assemble_blob(&index_a, &lie).unwrap_err();
    assert!(matches!(err, Error::BlobMismatch { .. }), "{err}");
    assert!(!store.contains(&expect_b.blob).unwrap());
}

#[test]
fn chunks_survive_a_reopen_before_the_blob_is_assembled() {
    let (index, chunks, expect, data) = source(7, 250_000);
    let dir = tempfile::tempdir().unwrap();
    let half = chunks.len() / 2;
    {
        let store = new_store(dir.path());
        store.put_chunks(chunks[..half].iter().map(|(id, c)| (*id, &c[..]))).unwrap();
    }
    let store = fwrepo_store::Store::open(&dir.path().join("data")).unwrap();
    let ids: Vec<Digest> = index.chunks.iter().map(|(id, _)| *id).collect();
    let missing = store.missing_chunks(&ids).unwrap();
    let stored_before: std::collections::HashSet<_> = chunks[..half].iter().map(|(id, _)| *id).collect();
    assert!(missing.iter().all(|m| !stored_before.contains(m)), "a resumed import refetches nothing stored");
    let rest: Vec<_> = chunks.iter().filter(|(id, _)| missing.contains(id)).collect();
    store.put_chunks(rest.iter().map(|(id, c)| (*id, &c[..]))).unwrap();
    store.assemble_blob(&index, &expect).unwrap();
    assert_eq!(read_all(&store, &expect.blob), data);
}
