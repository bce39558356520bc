//! Version ordering: a table of pairs, and the laws of a total order checked on random input.

use std::cmp::Ordering::{self, Equal, Greater, Less};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use fwrepo_version::{Error, MAX_VERSION_LEN, Version};
use proptest::prelude::*;

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn ordering_table() {
    let table: &[(&str, Ordering, &str)] = &[
        ("1.40", Less, "1.100"),
        ("1.9", Less, "1.10"),
        ("1.10", Greater, "1.9"),
        ("2.10", Less, "2.10a"),
        ("2.10a", Less, "2.10b"),
        ("2.10 (A)", Equal, "2.10a"),
        ("2.10A", Equal, "2.10a"),
        ("1.01", Equal, "1.1"),
        ("0.0", Equal, "00.000"),
        ("1.0", Less, "1.0.0"),
        ("1.0a", Less, "1.0.1"),
        ("1.0-1", Equal, "1.0.1"),
        ("2014.02.0", Less, "2014.06.0"),
        ("2013.09.0", Less, "2014.02.0"),
        ("2014.02.10", Greater, "2014.02.9"),
        ("4.6.2.0", Greater, "4.6.1.99"),
        ("p70", Less, "p89"),
        ("I31 02/10/2014", Less, "I31 06/01/2015"),
        // Numbers longer than any machine integer still compare by value.
        ("1.123456789012345678901234567890", Greater, "1.99999999999999999999999999999"),
        ("v2", Greater, "v1.999"),
    ];
    for &(a, want, b) in table {
        assert_eq!(v(a).cmp(&v(b)), want, "{a:?} vs {b:?}");
        assert_eq!(v(b).cmp(&v(a)), want.reverse(), "{b:?} vs {a:?}");
        assert_eq!(v(a) == v(b), want == Equal, "{a:?} == {b:?}");
    }
}

#[test]
fn spelling_is_kept_for_display_and_json() {
    let x = v("2.10 (A)");
    assert_eq!(x.to_string(), "2.10 (A)");
    assert_eq!(serde_json::to_string(&x).unwrap(), "\"2.10 (A)\"");
    let back: Version = serde_json::from_str("\"2.10 (A)\"").unwrap();
    assert_eq!(back.as_str(), "2.10 (A)");
}

#[test]
fn malformed_versions_are_rejected() {
    for bad in ["", " 1.0", "1.0 ", "...", "1.0\n", "1.0\u{e9}", "\u{0}"] {
        assert!(matches!(Version::new(bad), Err(Error::Invalid { .. })), "{bad:?}");
    }
    assert!(Version::new("1".repeat(MAX_VERSION_LEN)).is_ok());
    assert!(Version::new("1".repeat(MAX_VERSION_LEN + 1)).is_err());
    assert!(serde_json::from_str::<Version>("\"\"").is_err());
}

fn hash_of(x: &Version) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// Version-like strings from a small alphabet, so that random pairs often share prefixes and
/// equal segments (and leading zeros, case and separators vary).
fn version_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof!["0{0,2}[0-9]{1,3}", "[abAB]{1,2}",], 1..5)
        .prop_flat_map(|parts| {
            let n = parts.len();
            (Just(parts), prop::collection::vec(prop_oneof![Just(""), Just("."), Just("-"), Just(" ")], n))
        })
        .prop_map(|(parts, seps)| {
            let mut s = String::new();
            for (i, (p, sep)) in parts.iter().zip(seps).enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                s.push_str(p);
            }
            s
        })
}

proptest! {
    #[test]
    fn order_is_total_antisymmetric_and_consistent_with_eq(a in version_string(), b in version_string()) {
        let (a, b) = (v(&a), v(&b));
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a == b, a.cmp(&b) == Equal);
        prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp(&b)));
        if a == b {
            prop_assert_eq!(hash_of(&a), hash_of(&b));
        }
        prop_assert_eq!(a.cmp(&a), Equal);
    }

    #[test]
    fn order_is_transitive(a in version_string(), b in version_string(), c in version_string()) {
        let mut xs = [v(&a), v(&b), v(&c)];
        xs.sort();
        prop_assert!(xs[0] <= xs[1] && xs[1] <= xs[2] && xs[0] <= xs[2]);
        // Transitivity of both strict and non-strict steps, on every orientation of the triple.
        let [x, y, z] = [v(&a), v(&b), v(&c)];
        if x <= y && y <= z { prop_assert!(x <= z); }
        if x < y && y < z { prop_assert!(x < z); }
        if x == y && y == z { prop_assert!(x == z); }
    }

    #[test]
    fn dotted_numbers_order_like_integer_lists(a in prop::collection::vec(0u64..100_000, 1..5),
                                               b in prop::collection::vec(0u64..100_000, 1..5)) {
        let text = |xs: &[u64]| xs.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        prop_assert_eq!(v(&text(&a)).cmp(&v(&text(&b))), a.cmp(&b));
    }

    #[test]
    fn display_round_trips(a in version_string()) {
        let x = v(&a);
        prop_assert_eq!(x.to_string(), a.clone());
        let back: Version = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        prop_assert_eq!(back.as_str(), a.as_str());
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
        if let Ok(x) = Version::new(s.clone()) {
            prop_assert_eq!(x.cmp(&x), Equal);
        }
    }
}
