//! Chunk-pair deltas: the wire form of `POST /v1/blobs/<id>/deltas`.
//!
//! A request names, per entry, a chunk of the blob (the target) and optionally chunks the
//! caller already holds (the bases, at most [`MAX_BASES`] of them and [`MAX_BASE_BYTES`] in
//! all). The reply carries one frame per entry, in request order:
//!
//! ```text
//! frame = encoding (1 byte) | payload length (u32, little-endian) | payload
//! ```
//!
//! - [`Encoding::Raw`]: the payload is the target chunk itself.
//! - [`Encoding::Zstd`]: one zstd frame of the target chunk, compressed alone.
//! - [`Encoding::ZstdWithBase`]: one zstd frame of the target chunk, compressed with the
//!   concatenation of the bases, in the order the entry names them, as its prefix (zstd's
//!   single-use raw-content dictionary).
//!
//! The encoder picks the smallest of the three forms. The decoder is bounded: it never
//! produces (or allocates room for) more than the chunk length the signed chunk index gives,
//! and its window is capped, so a frame that claims a huge size or a huge window is an error,
//! not an allocation. Whatever the decoder returns is only a candidate: the caller checks it
//! against the target chunk's BLAKE3 id, exactly as it checks a chunk fetched as a range.

use serde::{Deserialize, Serialize};
use zstd::zstd_safe::{self, CParameter, DParameter};

use crate::{ChunkId, Error};

/// Most entries one request may carry.
pub const MAX_ENTRIES: usize = 1024;

/// Bytes of a frame header: the encoding byte and the payload length.
pub const FRAME_HEADER_LEN: usize = 5;

/// The zstd level deltas are made with unless a caller says otherwise.
pub const DEFAULT_LEVEL: i32 = 19;

/// Most bases one entry may name.
pub const MAX_BASES: usize = 8;

/// Most bytes the bases of one entry may hold together: the prefix a frame is made against.
pub const MAX_BASE_BYTES: usize = 1 << 20;

/// Window log for frames made against bases: the prefix (at most [`MAX_BASE_BYTES`]) and the
/// target must both fit, so 2 MiB covers targets up to 1 MiB.
const WINDOW_LOG: u32 = 21;

/// The largest window the decoder accepts (4 MiB). Frames asking for more are refused.
const WINDOW_LOG_MAX: u32 = 22;

/// The body of a delta request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaRequest {
    pub entries: Vec<DeltaEntry>,
}

/// One requested chunk: the target chunk of the blob and the chunks the caller holds to
/// encode it against (none: compressed alone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaEntry {
    pub target: ChunkId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<ChunkId>,
}

/// The identity of a list of bases, order included: the key precomputed and cached deltas
/// are stored under beside their target. The empty list (no base) has a key too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BasesKey(pub crate::Digest);

impl BasesKey {
    pub fn of(bases: &[ChunkId]) -> BasesKey {
        let mut h = blake3::Hasher::new_derive_key("fwrepo chunk-delta bases v1");
        for b in bases {
            h.update(b.as_bytes());
        }
        BasesKey(crate::Digest(*h.finalize().as_bytes()))
    }
}

/// How one frame's payload encodes its target chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    Raw = 0,
    Zstd = 1,
    ZstdWithBase = 2,
}

impl Encoding {
    pub fn from_byte(b: u8) -> Result<Encoding, Error> {
        match b {
            0 => Ok(Encoding::Raw),
            1 => Ok(Encoding::Zstd),
            2 => Ok(Encoding::ZstdWithBase),
            other => Err(Error::Delta { reason: format!("unknown frame encoding {other}") }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Zstd => "zstd",
            Encoding::ZstdWithBase => "zstd+base",
        }
    }
}

/// Encodes `target` in the smallest of: zstd against `prefix` (the concatenated bases, when
/// given), zstd alone, raw. A prefix that does not help (unrelated bytes) makes the frame a
/// few bytes larger than the target compressed alone, so both are tried.
pub fn encode(target: &[u8], prefix: Option<&[u8]>, level: i32) -> Result<(Encoding, Vec<u8>), Error> {
    let mut best = (Encoding::Raw, None::<Vec<u8>>);
    let mut best_len = target.len();
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        let c = compress(target, Some(p), level)?;
        if c.len() < best_len {
            best_len = c.len();
            best = (Encoding::ZstdWithBase, Some(c));
        }
    }
    // Alone wins ties: it decodes without reading any base.
    let alone = compress(target, None, level)?;
    if alone.len() <= best_len && alone.len() < target.len() {
        best = (Encoding::Zstd, Some(alone));
    }
    match best {
        (enc, Some(payload)) => Ok((enc, payload)),
        (_, None) => Ok((Encoding::Raw, target.to_vec())),
    }
}

fn compress(target: &[u8], base: Option<&[u8]>, level: i32) -> Result<Vec<u8>, Error> {
    let zerr =
        |what: &str, code: usize| Error::Delta { reason: format!("{what}: {}", zstd_safe::get_error_name(code)) };
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(|c| zerr("compression level", c))?;
    cctx.set_parameter(CParameter::ChecksumFlag(false)).map_err(|c| zerr("checksum flag", c))?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true)).map_err(|c| zerr("content size flag", c))?;
    if let Some(base) = base {
        cctx.set_parameter(CParameter::WindowLog(WINDOW_LOG)).map_err(|c| zerr("window log", c))?;
        cctx.ref_prefix(base).map_err(|c| zerr("prefix", c))?;
    }
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(|c| zerr("compress", c))?;
    Ok(out)
}

/// Decodes one frame's payload into the target chunk, which must be exactly `expected_len`
/// bytes. `base` must be given for [`Encoding::ZstdWithBase`] and only then.
pub fn decode(encoding: Encoding, payload: &[u8], base: Option<&[u8]>, expected_len: usize) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::Delta { reason };
    match encoding {
        Encoding::Raw => {
            if payload.len() != expected_len {
                return Err(bad(format!("raw frame of {} bytes for a {expected_len}-byte chunk", payload.len())));
            }
            Ok(payload.to_vec())
        }
        Encoding::Zstd | Encoding::ZstdWithBase => {
            let base = match (encoding, base) {
                (Encoding::ZstdWithBase, None) => return Err(bad("frame encoded against a base no one named".into())),
                (Encoding::Zstd, Some(_)) | (Encoding::Zstd, None) => None,
                (_, b) => b,
            };
            let zerr = |what: &str, code: usize| bad(format!("{what}: {}", zstd_safe::get_error_name(code)));
            let mut dctx = zstd_safe::DCtx::create();
            dctx.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX)).map_err(|c| zerr("window limit", c))?;
            if let Some(base) = base {
                dctx.ref_prefix(base).map_err(|c| zerr("prefix", c))?;
            }
            // Room for exactly the signed length: a frame that decodes to more fails here
            // ("destination buffer too small") instead of growing the buffer.
            let mut out: Vec<u8> = Vec::with_capacity(expected_len);
            let n = dctx.decompress(&mut out, payload).map_err(|c| zerr("decode", c))?;
            if n != expected_len {
                return Err(bad(format!("frame decodes to {n} bytes for a {expected_len}-byte chunk")));
            }
            Ok(out)
        }
    }
}

/// Appends one frame to a reply body.
pub fn write_frame(out: &mut Vec<u8>, encoding: Encoding, payload: &[u8]) {
    out.push(encoding as u8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads a frame header: the encoding and the payload length. `max_payload` bounds the
/// length a caller will read (a raw frame is never longer than its chunk, and a zstd frame of
/// a chunk never longer than zstd's bound for it).
pub fn parse_frame_header(header: &[u8; FRAME_HEADER_LEN], max_payload: usize) -> Result<(Encoding, usize), Error> {
    let encoding = Encoding::from_byte(header[0])?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > max_payload {
        return Err(Error::Delta {
            reason: format!("frame claims {len} bytes, more than the {max_payload} a chunk can need"),
        });
    }
    Ok((encoding, len))
}

/// The longest payload a frame for a chunk of `chunk_len` bytes can honestly have.
pub fn max_payload(chunk_len: usize) -> usize {
    zstd_safe::compress_bound(chunk_len).max(chunk_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn patched_chunk_against_its_base_is_small_and_round_trips() {
        let base = sample(1, 64 << 10);
        let mut target = base.clone();
        target[1000..1016].copy_from_slice(b"version 2.0.1-rc");
        let (enc, payload) = encode(&target, Some(&base), DEFAULT_LEVEL).unwrap();
        assert_eq!(enc, Encoding::ZstdWithBase);
        assert!(payload.len() < 200, "{} bytes", payload.len());
        assert_eq!(decode(enc, &payload, Some(&base), target.len()).unwrap(), target);
    }

    #[test]
    fn incompressible_chunk_without_base_goes_raw() {
        let target = sample(2, 8192);
        let (enc, payload) = encode(&target, None, DEFAULT_LEVEL).unwrap();
        assert_eq!(enc, Encoding::Raw);
        assert_eq!(payload, target);
    }

    #[test]
    fn compressible_chunk_without_base_is_zstd() {
        let target = vec![7u8; 50_000];
        let (enc, payload) = encode(&target, None, 3).unwrap();
        assert_eq!(enc, Encoding::Zstd);
        assert_eq!(decode(enc, &payload, None, target.len()).unwrap(), target);
    }

    #[test]
    fn frame_decoding_to_more_than_the_signed_length_is_refused() {
        let target = vec![0u8; 1 << 20];
        let (enc, payload) = encode(&target, None, 3).unwrap();
        assert!(payload.len() < 1000);
        assert!(decode(enc, &payload, None, 4096).is_err());
        assert!(decode(enc, &payload, None, (1 << 20) + 1).is_err());
    }

    #[test]
    fn truncated_frame_is_refused() {
        let base = sample(3, 30_000);
        let mut target = base.clone();
        target.extend_from_slice(&sample(4, 500));
        let (enc, payload) = encode(&target, Some(&base), 3).unwrap();
        assert!(decode(enc, &payload[..payload.len() - 3], Some(&base), target.len()).is_err());
    }

    #[test]
    fn frame_against_a_different_base_does_not_decode_to_the_target() {
        let base = sample(5, 30_000);
        let mut target = base.clone();
        target[10] ^= 1;
        let (enc, payload) = encode(&target, Some(&base), 3).unwrap();
        let other = sample(6, 30_000);
        if let Ok(bytes) = decode(enc, &payload, Some(&other), target.len()) {
            assert_ne!(bytes, target);
        }
    }

    #[test]
    fn based_frame_without_a_base_and_raw_of_wrong_length_are_refused() {
        assert!(decode(Encoding::ZstdWithBase, b"anything", None, 8).is_err());
        assert!(decode(Encoding::Raw, b"1234567", None, 8).is_err());
    }

    #[test]
    fn frame_header_bounds_and_encodings() {
        let mut body = Vec::new();
        write_frame(&mut body, Encoding::Zstd, b"abc");
        let header: [u8; FRAME_HEADER_LEN] = body[..FRAME_HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_frame_header(&header, 3).unwrap(), (Encoding::Zstd, 3));
        assert!(parse_frame_header(&header, 2).is_err());
        let mut bad = header;
        bad[0] = 9;
        assert!(parse_frame_header(&bad, 10).is_err());
    }

    #[test]
    fn request_json_names_bases_only_when_given() {
        let t = crate::Digest::of(b"t");
        let req = DeltaRequest { entries: vec![DeltaEntry { target: t, bases: vec![] }] };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, format!("{{\"entries\":[{{\"target\":\"{}\"}}]}}", t.to_hex()));
        assert!(serde_json::from_str::<DeltaRequest>(r#"{"entries":[],"extra":1}"#).is_err());
        let b = crate::Digest::of(b"b");
        let req = DeltaRequest { entries: vec![DeltaEntry { target: t, bases: vec![b] }] };
        let back: DeltaRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn unhelpful_prefix_costs_nothing_over_the_chunk_alone() {
        let target: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8 ^ (i / 997) as u8).collect();
        let unrelated = sample(7, 40_000);
        let (enc, with) = encode(&target, Some(&unrelated), 3).unwrap();
        let (alone_enc, alone) = encode(&target, None, 3).unwrap();
        assert_eq!(alone_enc, Encoding::Zstd);
        assert!(with.len() <= alone.len(), "{} > {}", with.len(), alone.len());
        let base = (enc == Encoding::ZstdWithBase).then_some(unrelated.as_slice());
        assert_eq!(decode(enc, &with, base, target.len()).unwrap(), target);
    }

    #[test]
    fn chunk_cut_across_a_removal_decodes_against_both_halves() {
        // Seed chunks x and z; the target is x's head followed by z's tail (what lies between
        // was removed). Against x alone half the target is new; against x|z almost nothing is.
        let (x, z) = (sample(8, 40_000), sample(9, 40_000));
        let mut target = x[..20_000].to_vec();
        target.extend_from_slice(&z[20_000..]);
        let prefix = [x.as_slice(), z.as_slice()].concat();
        let (enc, both) = encode(&target, Some(&prefix), 3).unwrap();
        let (_, one) = encode(&target, Some(&x), 3).unwrap();
        assert_eq!(enc, Encoding::ZstdWithBase);
        assert!(both.len() < 200 && one.len() > 19_000, "{} and {}", both.len(), one.len());
        assert_eq!(decode(enc, &both, Some(&prefix), target.len()).unwrap(), target);
    }

    #[test]
    fn bases_key_depends_on_every_base_and_their_order() {
        let (a, b) = (crate::Digest::of(b"a"), crate::Digest::of(b"b"));
        assert_ne!(BasesKey::of(&[a, b]), BasesKey::of(&[b, a]));
        assert_ne!(BasesKey::of(&[a]), BasesKey::of(&[a, a]));
        assert_ne!(BasesKey::of(&[a]).0, a);
        assert_ne!(BasesKey::of(&[]), BasesKey::of(&[a]));
        assert_eq!(BasesKey::of(&[a, b]), BasesKey::of(&[a, b]));
    }
}
