//! `Digest`: a BLAKE3-256 id of a chunk or a blob, validated at the boundary.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A BLAKE3-256 digest. Chunk ids and blob ids are both digests of the bytes they name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// The id of a whole blob: BLAKE3 of its bytes.
pub type BlobId = Digest;
/// The id of a chunk: BLAKE3 of its bytes.
pub type ChunkId = Digest;

impl Digest {
    pub const LEN: usize = 32;

    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a digest from exactly 32 bytes (an index key).
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }

    pub fn to_hex(&self) -> String {
        String::from_utf8(self.hex_bytes().to_vec()).expect("hex digits are ASCII")
    }

    /// The canonical hex of the digest as bytes, without a `String` of its own (the server
    /// writes ids into audit records on every request).
    ///
    /// Digits by arithmetic on all 32 high and low nibbles at once, then interleaved, which
    /// compiles to vector code (`hex::encode_to_slice` spent 16 instructions a byte here).
    pub fn hex_bytes(&self) -> [u8; 2 * Digest::LEN] {
        let digit = |n: u8| n + b'0' + u8::from(n > 9) * (b'a' - b'0' - 10);
        let hi: [u8; Digest::LEN] = std::array::from_fn(|i| digit(self.0[i] >> 4));
        let lo: [u8; Digest::LEN] = std::array::from_fn(|i| digit(self.0[i] & 0x0f));
        let mut buf = [0u8; 2 * Digest::LEN];
        for i in 0..Digest::LEN {
            buf[2 * i] = hi[i];
            buf[2 * i + 1] = lo[i];
        }
        buf
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Accepts exactly 64 lowercase hex digits: one spelling per id, so ids compare as strings.
    /// One pass, no allocation unless the input is malformed (blob ids in request paths are
    /// parsed on every request).
    fn from_str(s: &str) -> Result<Self, Error> {
        /// Each byte's value as a hex digit; 0x80 marks a byte that is not one.
        const NIBBLE: [u8; 256] = {
            let mut t = [0x80u8; 256];
            let mut c = 0;
            while c < 10 {
                t[b'0' as usize + c] = c as u8;
                c += 1;
            }
            let mut c = 0;
            while c < 6 {
                t[b'a' as usize + c] = 10 + c as u8;
                c += 1;
            }
            t
        };
        let bytes = s.as_bytes();
        if bytes.len() == 2 * Digest::LEN {
            // Every pair is looked up, with no branch per digit; one check at the end.
            let mut out = [0u8; Digest::LEN];
            let mut bad = 0u8;
            for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
                bad |= hi | lo;
                *o = (hi << 4) | (lo & 0x0f);
            }
            if bad & 0x80 == 0 {
                return Ok(Digest(out));
            }
        }
        Err(Error::MalformedId { input: s.chars().take(80).collect() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_hex() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        for bad in ["", "00", &d.to_hex().to_uppercase(), &format!("{}0", d.to_hex()), &"g".repeat(64)] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be rejected");
        }
        // Every byte position and the characters next to the hex ranges.
        let id = Digest(std::array::from_fn(|i| (i * 37 + 5) as u8)).to_hex();
        assert_eq!(id.parse::<Digest>().unwrap().to_hex(), id);
        assert!("0".repeat(64).parse::<Digest>().is_ok() && "f".repeat(64).parse::<Digest>().is_ok());
        for bad in [id[..63].to_owned(), format!("{}é", &id[..62]), format!("{}/x", &id[..62])] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be rejected");
        }
        for (i, c) in [b'/', b'@', b'`', b'G', b'g', b':', b' '].into_iter().enumerate() {
            let mut v = id.clone().into_bytes();
            v[i * 9] = c;
            let bad = String::from_utf8(v).unwrap();
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} should be rejected");
        }
        // Every byte value, first and last digit: only 0-9 and a-f parse, to their value.
        for b in 0..=255u8 {
            for at in [0, 63] {
                let mut v = id.clone().into_bytes();
                v[at] = b;
                let Ok(text) = String::from_utf8(v) else { continue };
                let want = (b as char).to_digit(16).filter(|_| !b.is_ascii_uppercase());
                match (text.parse::<Digest>(), want) {
                    (Ok(d), Some(n)) => assert_eq!(d.to_hex().as_bytes()[at], b, "{b:#x} at {at} ({n})"),
                    (Err(_), None) => {}
                    (got, _) => panic!("{b:#x} at {at}: {got:?}"),
                }
            }
        }
    }

    #[test]
    fn hex_bytes_are_the_same_hex_as_to_hex() {
        let d = Digest(std::array::from_fn(|i| [0x00, 0x9f, 0xa0, 0xff][i % 4]));
        assert_eq!(&d.hex_bytes()[..], hex::encode(d.0).as_bytes());
        assert_eq!(d.to_hex(), hex::encode(d.0));
        assert!(d.to_hex().ends_with("009fa0ff"));
        // Every byte value, in every position class.
        for first in (0..=255u8).step_by(32) {
            let d = Digest(std::array::from_fn(|i| first.wrapping_add(i as u8)));
            assert_eq!(&d.hex_bytes()[..], hex::encode(d.0).as_bytes());
            assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn serde_uses_the_same_canonical_hex() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.to_hex()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>(&json.to_uppercase()).is_err());
    }
}
