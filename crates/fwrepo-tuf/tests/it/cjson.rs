//! Canonical JSON byte for byte on inputs where encoders tend to differ from securesystemslib.

use fwrepo_tuf::cjson::{encode, to_canonical};
use serde_json::{Value, json};

fn enc(v: Value) -> Vec<u8> {
    encode(&v).unwrap()
}

#[test]
fn nested_objects_sorted_compact() {
    let v = json!({"b": 1, "a": {"d": [1, -2, "x", true, false, null], "c": null}, "": {}});
    assert_eq!(enc(v), br#"{"":{},"a":{"c":null,"d":[1,-2,"x",true,false,null]},"b":1}"#);
}

#[test]
fn only_quote_and_backslash_are_escaped() {
    let v = json!("a\"b\\c/d");
    assert_eq!(enc(v), b"\"a\\\"b\\\\c/d\"");
}

#[test]
fn control_characters_are_raw_bytes() {
    let v = json!("\n\t\u{1}\u{7f}");
    assert_eq!(enc(v), b"\"\n\t\x01\x7f\"");
}

#[test]
fn unicode_is_raw_utf8_and_not_normalized() {
    // e + COMBINING ACUTE stays decomposed: securesystemslib signs the string as given.
    let v = json!({"k": "é e\u{301} 😀"});
    let mut want = b"{\"k\":\"".to_vec();
    want.extend_from_slice("é".as_bytes());
    want.extend_from_slice(b" e\xcc\x81 \xf0\x9f\x98\x80\"}");
    assert_eq!(enc(v), want);
}

#[test]
fn keys_sort_by_code_point() {
    let v = json!({"é": 1, "~": 2, "a": 3, "Z": 4, "\u{10000}": 5, "\u{ffff}": 6});
    let want = "{\"Z\":4,\"a\":3,\"~\":2,\"é\":1,\"\u{ffff}\":6,\"\u{10000}\":5}";
    assert_eq!(enc(v), want.as_bytes());
}

#[test]
fn prefix_keys_sort_before_longer_keys() {
    // A key that is a prefix of another sorts first, even when the next character is below `"`.
    let v = json!({"fw/a b": 1, "fw/a": 2, "fw/a!": 3, "fw/a\u{1}": 4});
    assert_eq!(enc(v), "{\"fw/a\":2,\"fw/a\u{1}\":4,\"fw/a b\":1,\"fw/a!\":3}".as_bytes());
}

#[test]
fn integers_at_the_extremes() {
    let v = json!([0, -1, i64::MIN, i64::MAX, u64::MAX]);
    assert_eq!(enc(v), b"[0,-1,-9223372036854775808,9223372036854775807,18446744073709551615]");
}

#[test]
fn floats_are_refused() {
    for text in ["1.0", "1e3", "[0.5]", "{\"a\":-2.5}", "18446744073709551616"] {
        let v: Value = serde_json::from_str(text).unwrap();
        assert!(encode(&v).is_err(), "{text} encoded");
    }
    assert!(to_canonical(&1.5f64).is_err());
}

#[test]
fn empty_containers_and_strings() {
    assert_eq!(enc(json!([{}, [], ""])), br#"[{},[],""]"#);
}
