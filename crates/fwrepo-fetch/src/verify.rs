//! The final check of an assembled blob: its length and SHA-256 as the signed target says,
//! and its BLAKE3 as the signed blob id, streamed so a large blob is never held whole.

use fwrepo_chunk::Digest;
use fwrepo_tuf::TargetVerifier;

use crate::error::{Error, Result};
use crate::fetch::RemoteBlob;

/// Streams a blob's bytes through every check its signed target makes.
pub struct BlobVerifier {
    target: String,
    tuf: TargetVerifier,
    blake3: blake3::Hasher,
    expected: Digest,
}

impl BlobVerifier {
    pub fn new(blob: &RemoteBlob) -> Result<BlobVerifier> {
        let target = blob.target.path.to_string();
        let tuf = blob.target.verifier().map_err(|source| Error::Target { target: target.clone(), source })?;
        Ok(BlobVerifier { target, tuf, blake3: blake3::Hasher::new(), expected: blob.blob })
    }

    /// Feeds the next bytes; fails as soon as they pass the signed length.
    pub fn update(&mut self, bytes: &[u8]) -> Result<()> {
        self.tuf.update(bytes).map_err(|source| Error::Target { target: self.target.clone(), source })?;
        self.blake3.update(bytes);
        Ok(())
    }

    /// Checks the length, SHA-256 and BLAKE3.
    pub fn finish(self) -> Result<()> {
        let target = self.target;
        self.tuf.finish().map_err(|source| Error::Target { target: target.clone(), source })?;
        let got = Digest::from(self.blake3.finalize());
        if got != self.expected {
            return Err(Error::BlobMismatch { target, expected: self.expected, got });
        }
        Ok(())
    }
}
