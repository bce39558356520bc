//! Chunk reads by id and the precomputed chunk-pair deltas of `fwrepo publish`.
//!
//! Column family `store.deltas`: key `target id (32 bytes) | bases key (32 bytes)` (the
//! [`BasesKey`] of the list of bases, in order) → format marker, then the frame encoding byte
//! and the payload (`fwrepo_chunk::delta`). `fwrepo publish` writes the deltas from each
//! component's previous version to its new one, so the server answers the common update
//! without compressing anything. A record is only a cache: the server still checks that the
//! target is a chunk of the requested blob and that the caller may see every base, and the
//! client checks the decoded chunk against its id. `gc` deletes the records of the targets it
//! removes; records of a removed base are never served (the server no longer counts that
//! base as one the caller may see). Records of the first layout (`base | target`, marker 1)
//! are never looked up; `gc` removes each once the chunk its key starts with (its base, in
//! that layout) is gone.

use bytes::Bytes;
use fwrepo_chunk::delta::{BasesKey, Encoding};
use fwrepo_db::{WriteBatch, decode, encode};

use crate::error::{Error, Result};
use crate::index::{CF_CHUNKS, ChunkLoc};
use crate::{ChunkId, Digest, Store};

/// Target chunk → bases → encoded target.
pub const CF_DELTAS: &str = "store.deltas";

const DELTA_V2: u8 = 2;

/// One delta to store: the bases' key, the target, its encoding and payload.
pub type StoredDelta = (BasesKey, ChunkId, Encoding, Vec<u8>);

fn delta_key(bases: &BasesKey, target: &ChunkId) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(target.as_bytes());
    k[32..].copy_from_slice(bases.0.as_bytes());
    k
}

/// The target a `store.deltas` key names (`gc` keeps the records of live targets only).
pub(crate) fn delta_target(key: &[u8]) -> Option<ChunkId> {
    if key.len() == 64 { Digest::from_slice(&key[..32]) } else { None }
}

impl Store {
    /// The bytes of chunk `id`, hashed against the id on every read (a delta request reads a
    /// base once per computation, far rarer than range reads), or `None` when the store does
    /// not hold it.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        match self.read_chunk_once(id) {
            // Garbage collection moved the chunk since this reader caught up.
            Err(Error::MissingPack { .. }) => {
                self.db.catch_up()?;
                self.drop_stale_maps()?;
                self.read_chunk_once(id)
            }
            other => other,
        }
    }

    fn read_chunk_once(&self, id: &ChunkId) -> Result<Option<Bytes>> {
        let cf = self.db.require_cf(CF_CHUNKS)?;
        let Some(value) = self.db.get(cf, id.as_bytes())? else { return Ok(None) };
        let loc = ChunkLoc::decode(id, &value)?;
        let bytes = self.packs.slice(loc.pack, loc.offset, loc.len)?;
        if Digest::of(&bytes) != *id {
            return Err(Error::CorruptChunk { chunk: *id, pack: loc.pack, offset: loc.offset });
        }
        Ok(Some(bytes))
    }

    /// The prefix a delta against `bases` is made with: their bytes, concatenated in order,
    /// into `out` (cleared first). `false`, with `out` empty, when the store no longer holds
    /// one of them (gc took it since the caller looked).
    pub fn read_bases(&self, bases: &[ChunkId], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        for b in bases {
            match self.read_chunk(b)? {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => {
                    out.clear();
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The precomputed delta of `target` against `bases`, if publish stored one. A data dir
    /// from before deltas (a reader that lacks the family) simply has none.
    pub fn precomputed_delta(&self, bases: &BasesKey, target: &ChunkId) -> Result<Option<(Encoding, Bytes)>> {
        let Some(cf) = self.db.cf(CF_DELTAS) else { return Ok(None) };
        let Some(value) = self.db.get(cf, &delta_key(bases, target))? else { return Ok(None) };
        let body = decode(CF_DELTAS, DELTA_V2, &value)?;
        let corrupt =
            |reason: String| Error::CorruptRecord { what: format!("delta of {target} (bases {})", bases.0), reason };
        let (&enc, payload) = body.split_first().ok_or_else(|| corrupt("no encoding byte".into()))?;
        let enc = Encoding::from_byte(enc).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((enc, Bytes::copy_from_slice(payload))))
    }

    /// Whether a delta of `target` against `bases` is stored.
    pub fn has_precomputed_delta(&self, bases: &BasesKey, target: &ChunkId) -> Result<bool> {
        let Some(cf) = self.db.cf(CF_DELTAS) else { return Ok(false) };
        Ok(self.db.get(cf, &delta_key(bases, target))?.is_some())
    }

    /// Stores deltas `(bases, target, encoding, payload)` in one durable batch (writer only).
    pub fn put_deltas(&self, deltas: &[StoredDelta]) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { op: "put_deltas" });
        }
        if deltas.is_empty() {
            return Ok(());
        }
        let cf = self.db.require_cf(CF_DELTAS)?;
        let mut batch = WriteBatch::default();
        let mut body = Vec::new();
        for (bases, target, enc, payload) in deltas {
            body.clear();
            body.push(*enc as u8);
            body.extend_from_slice(payload);
            batch.put_cf(cf, delta_key(bases, target), encode(DELTA_V2, &body));
        }
        self.db.write(batch, true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InitOptions, Store};

    #[test]
    fn chunks_read_by_id_and_deltas_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), &InitOptions::default()).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = fwrepo_synth::firmware_image(&mut fwrepo_synth::Rng::new(3), 200_000);
        let r = store.ingest_reader(std::io::Cursor::new(data.clone()), "x").unwrap();
        let index = store.chunk_index(&r.blob).unwrap();
        let (first, len) = index.chunks[0];
        assert_eq!(&store.read_chunk(&first).unwrap().unwrap()[..], &data[..len as usize]);
        assert!(store.read_chunk(&Digest::of(b"absent")).unwrap().is_none());
        // Bases read as one prefix, in order; one the store lacks leaves nothing.
        let (second, len2) = index.chunks[1];
        let mut prefix = vec![9u8; 3];
        assert!(store.read_bases(&[second, first], &mut prefix).unwrap());
        let (l1, l2) = (len as usize, len2 as usize);
        assert_eq!(prefix, [&data[l1..l1 + l2], &data[..l1]].concat());
        assert!(!store.read_bases(&[first, Digest::of(b"absent")], &mut prefix).unwrap());
        assert!(prefix.is_empty());

        let (b, target) = (Digest::of(b"b"), Digest::of(b"t"));
        let base = BasesKey::of(&[b]);
        assert!(store.precomputed_delta(&base, &target).unwrap().is_none());
        store.put_deltas(&[(base, target, Encoding::ZstdWithBase, vec![1, 2, 3])]).unwrap();
        let (enc, payload) = store.precomputed_delta(&base, &target).unwrap().unwrap();
        assert_eq!((enc, &payload[..]), (Encoding::ZstdWithBase, &[1u8, 2, 3][..]));
        assert!(store.has_precomputed_delta(&base, &target).unwrap());
        assert!(!store.has_precomputed_delta(&BasesKey::of(&[target]), &b).unwrap());
        assert!(!store.has_precomputed_delta(&BasesKey::of(&[b, b]), &target).unwrap());
    }

    #[test]
    fn delta_record_with_an_unknown_encoding_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), &InitOptions::default()).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (base, target) = (BasesKey::of(&[Digest::of(b"b")]), Digest::of(b"t"));
        let cf = store.db.require_cf(CF_DELTAS).unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, delta_key(&base, &target), encode(DELTA_V2, &[9, 1, 2]));
        store.db.write(batch, true).unwrap();
        assert!(store.precomputed_delta(&base, &target).is_err());
    }
}
