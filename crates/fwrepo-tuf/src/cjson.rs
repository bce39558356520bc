//! OLPC canonical JSON, the byte form every TUF signature covers.
//!
//! This is the encoding securesystemslib (python-tuf) signs: objects with keys sorted by code
//! point, no whitespace, integers only, and strings whose only escapes are `\"` and `\\` — every
//! other character, control characters included, is written as its raw UTF-8 bytes.
//!
//! The `olpc-cjson` crate was checked and not used: it sorts object keys by their *encoded*
//! bytes, closing quote included, so `"a"` sorts after `"a b"` (0x22 > 0x20), while
//! securesystemslib sorts `a` first; it also NFC-normalizes string content, which
//! securesystemslib does not. Either difference makes a signature over such a document fail
//! to verify on the other side, hence this small encoder over `serde_json::Value`.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Encodes any serializable value as canonical JSON.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(|e| Error::CanonicalJson { what: e.to_string() })?;
    encode(&value)
}

/// Encodes a JSON value as canonical JSON; floats are refused.
pub fn encode(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Integers only: a float has no single canonical spelling.
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(Error::CanonicalJson { what: format!("the non-integer number {n}") });
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order when another crate in the
            // build turns on its `preserve_order` feature. `str` ordering is byte ordering,
            // which for UTF-8 equals code point ordering, which is what Python's sort uses.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, v)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::encode;

    #[test]
    fn prefix_key_sorts_first() {
        // The case olpc-cjson gets wrong (see the module comment).
        let v = json!({"a b": 1, "a": 2, "a!": 3});
        assert_eq!(encode(&v).unwrap(), br#"{"a":2,"a b":1,"a!":3}"#);
    }
}
