//! The data dir's `fwrepo.json`: format version and the chunker parameters fixed at `init`
//! ([`ChunkerParams`] itself is fwrepo-chunk's).

use std::path::Path;

use fwrepo_chunk::ChunkerParams;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

pub const FORMAT: &str = "fwrepo-store";
pub const FORMAT_VERSION: u32 = 1;
pub const CONFIG_FILE: &str = "fwrepo.json";

/// The contents of `fwrepo.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Always [`FORMAT`]; anything else is not our data dir.
    pub format: String,
    /// The on-disk format version; a newer one is refused rather than misread.
    pub version: u32,
    /// Always "fastcdc-2020".
    pub chunker: String,
    pub chunk_sizes: ChunkerParams,
    /// A pack is closed once it reaches this many bytes.
    pub pack_max_size: u64,
}

impl StoreConfig {
    pub fn new(chunk_sizes: ChunkerParams, pack_max_size: u64) -> StoreConfig {
        StoreConfig {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            chunker: "fastcdc-2020".into(),
            chunk_sizes,
            pack_max_size,
        }
    }

    pub fn validate(&self, dir: &Path) -> Result<()> {
        let bad = |reason: String| Error::Config { path: dir.join(CONFIG_FILE), reason };
        if self.chunker != "fastcdc-2020" {
            return Err(bad(format!("unknown chunker {:?}", self.chunker)));
        }
        self.chunk_sizes.validate().map_err(|e| bad(e.to_string()))?;
        if self.pack_max_size < 1 << 20 || self.pack_max_size > 1 << 40 {
            return Err(bad(format!("pack_max_size {} outside 1 MiB..=1 TiB", self.pack_max_size)));
        }
        Ok(())
    }

    /// Reads and checks `DIR/fwrepo.json`.
    pub fn load(dir: &Path) -> Result<StoreConfig> {
        let path = dir.join(CONFIG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotADataDir { path: dir.to_owned() });
            }
            Err(e) => return Err(e).at(&path),
        };
        // Look at format and version before the rest, so a newer layout is reported as such and
        // not as a field we do not know.
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
        }
        let head: Head =
            serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: path.clone(), reason: e.to_string() })?;
        let (found, version) = (head.format.unwrap_or_default(), head.version.unwrap_or(0));
        if found != FORMAT || version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                path: dir.to_owned(),
                found,
                version,
                expected: FORMAT,
                supported: FORMAT_VERSION,
            });
        }
        let config: StoreConfig =
            serde_json::from_slice(&bytes).map_err(|e| Error::Config { path: path.clone(), reason: e.to_string() })?;
        config.validate(dir)?;
        Ok(config)
    }

    /// Writes `DIR/fwrepo.json` durably (temp file, fsync, rename, fsync dir).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("config serializes");
        bytes.push(b'\n');
        fsutil::write_atomic(&dir.join(CONFIG_FILE), &bytes)
    }
}
