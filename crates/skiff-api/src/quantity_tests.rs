//! Table-driven tests of quantities against upstream's `quantity_test.go` facts.

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn canonical_forms_match_upstream() {
    let cases = [
        ("0", "0"),
        ("0m", "0"),
        ("-0", "0"),
        ("1000m", "1"),
        ("0.5", "500m"),
        ("0.1", "100m"),
        ("100m", "100m"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("2000Mi", "2000Mi"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        ("1000", "1k"),
        ("1k", "1k"),
        ("1000k", "1M"),
        ("1.5", "1500m"),
        ("1.0", "1"),
        ("01", "01"),
        ("5Ki", "5Ki"),
        ("1024", "1024"),
        ("1023Ki", "1023Ki"),
        ("1025Ki", "1025Ki"),
        ("0.5Ki", "512"),
        ("0.1Ki", "102400m"),
        ("100Mi", "100Mi"),
        ("128974848", "128974848"),
        ("129e6", "129e6"),
        ("123Mi", "123Mi"),
        ("1n", "1n"),
        ("0.1n", "1n"),
        ("1.5n", "2n"),
        ("-1.5n", "-2n"),
        ("0.0000000001", "1n"),
        ("1u", "1u"),
        ("1500u", "1500u"),
        ("1500000u", "1500m"),
        ("-100m", "-100m"),
        ("-1000m", "-1"),
        ("12e-1", "1200e-3"),
        ("10e3", "10e3"),
        ("100M", "100M"),
        ("1E", "1E"),
        ("7Ei", "7Ei"),
        ("8Ei", "9223372036854775807"),
        ("16Ei", "9223372036854775807"),
        (".5", "500m"),
        ("1.", "1."),
        (".", "0"),
        ("  1000m ", "1"),
        ("007", "007"),
        ("+1", "+1"),
        // quantity_test.go: TestQuantityParseEmit and TestQuantityParse.
        ("1Mi", "1Mi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        ("-.001Ki", "-1024m"),
        ("-.000000000001Ki", "-2n"),
        ("3.001n", "4n"),
        ("1.1E-9", "2e-9"),
        ("0.00000012345", "124n"),
        ("9Ei", "9223372036854775807"),
        ("9223372036854775807Ki", "9223372036854775807"),
        ("100.035Ki", "102435840m"),
        ("0.5Mi", "512Ki"),
        ("1.G", "1.G"),
        ("100.035k", "100.035k"),
        ("1.3E+6", "1300e3"),
        ("0.5e-2", "5e-3"),
        ("12E", "12E"),
    ];
    for (input, want) in cases {
        let q = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(q.to_string(), want, "{input}");
    }
}

#[test]
fn malformed_quantities_give_upstream_errors() {
    let re = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
    for (input, want) in [
        ("", re),
        ("abc", re),
        ("1Gb", re),
        ("1KiB", re),
        ("1 Gi", re),
        ("1kk", "unable to parse quantity's suffix"),
        ("1e", "unable to parse quantity's suffix"),
        ("1Mi1", "unable to parse quantity's suffix"),
    ] {
        let err = Quantity::parse(input).unwrap_err();
        assert_eq!(err.to_string(), want, "{input:?}");
    }
}

#[test]
fn comparison_and_values() {
    let q = |s: &str| Quantity::parse(s).unwrap();
    assert_eq!(q("1"), q("1000m"));
    assert!(q("500m") < q("1"));
    assert!(q("1Gi") > q("1G"));
    assert!(q("-1") < q("0"));
    assert!(q("-2") < q("-1"));
    assert!(q("1e100") > q("8Ei"));
    assert_eq!(q("1.5").milli_value(), 1500);
    assert_eq!(q("1.5").value(), 2);
    assert_eq!(q("100m").value(), 1);
    assert_eq!(q("1Ki").value(), 1024);
    assert_eq!(q("1n").milli_value(), 1);
    assert_eq!(q("1e100").value(), i64::MAX);
    assert!(q("0").is_zero() && !q("0").is_negative());
    assert!(q("-1m").is_negative());
    let sum = q("500m").checked_add(&q("1")).unwrap();
    assert_eq!(sum.to_string(), "1500m");
    assert_eq!(Quantity::from_milli(2500).to_string(), "2500m");
    assert_eq!(Quantity::from_int(3).to_string(), "3");
}

#[test]
fn magnitudes_compare_digit_by_digit_at_the_same_leading_position() {
    let q = |s: &str| Quantity::parse(s).unwrap();
    // Same leading digit position, different lengths and exponents.
    assert!(q("1.25") > q("1.2"));
    assert!(q("125m") < q("1.3"));
    assert_eq!(q("12e3").cmp(&q("12000")), std::cmp::Ordering::Equal);
    assert!(q("9.99") < q("10"));
    assert!(q("-1.25") < q("-1.2"));
    // Mantissas of 30-odd digits, padded past u128 on one side.
    let long = "12345678901234567890123456789012345678";
    assert!(q(long) > q("1.2e37"));
    assert!(q(long) < q("1.3e37"));
    assert!(q(&format!("{long}.5")) > q(long));
    // 5 padded to 39 digits is past u128: compared as text.
    let wide = "100000000000000000000000000000000000001";
    assert!(q(wide) < q("5e38"));
    assert!(q("5e38") > q(wide));
    // A whole number against the binary-suffix range checks.
    assert!(Quantity::parse("8Ei").is_ok_and(|v| v > q("9e18")));
}

#[test]
fn round_up_to_milli_like_set_defaults_resource_list() {
    let q = |s: &str| Quantity::parse(s).unwrap();
    assert_eq!(q("1n").round_up(-3).to_string(), "1m");
    assert_eq!(q("-1n").round_up(-3).to_string(), "-1m");
    assert_eq!(q("1500u").round_up(-3).to_string(), "2m");
    assert_eq!(q("100m").round_up(-3).to_string(), "100m");
    assert_eq!(q("1Gi").round_up(-3).to_string(), "1Gi");
    let mut obj = serde_json::json!({"r": {"cpu": "1n", "memory": "1Gi"}});
    round_up_milli_at(&mut obj, &[&["r", "{}"]]);
    assert_eq!(obj["r"]["cpu"], "1m");
    assert_eq!(obj["r"]["memory"], "1Gi");
}

#[test]
fn walker_canonicalises_nested_paths() {
    let mut obj = serde_json::json!({
        "spec": {"limits": [
            {"max": {"cpu": "1000m", "memory": 1024}},
            {"max": {"cpu": 0.5}}
        ]},
        "status": {"capacity": {"storage": "1024Mi"}}
    });
    canonicalize_at(
        &mut obj,
        &[
            &["spec", "limits", "*", "max", "{}"],
            &["status", "capacity", "{}"],
            &["spec", "missing", "{}"],
        ],
    )
    .unwrap();
    assert_eq!(obj["spec"]["limits"][0]["max"]["cpu"], "1");
    assert_eq!(obj["spec"]["limits"][0]["max"]["memory"], "1024");
    assert_eq!(obj["spec"]["limits"][1]["max"]["cpu"], "500m");
    assert_eq!(obj["status"]["capacity"]["storage"], "1Gi");
    let mut nulls = serde_json::json!({"a": {"x": null}, "b": null});
    canonicalize_at(&mut nulls, &[&["a", "{}"], &["b"]]).unwrap();
    assert_eq!(nulls, serde_json::json!({"a": {"x": "0"}, "b": null}));
    let mut bad = serde_json::json!({"a": {"x": "1Gb"}});
    let err = canonicalize_at(&mut bad, &[&["a", "{}"]]).unwrap_err();
    assert!(err.starts_with("quantities must match"), "{err}");
}

#[test]
fn whole_numbers_take_the_short_path_to_the_same_value() {
    let inputs = [
        "0",
        "7",
        "007",
        "500m",
        "250u",
        "3n",
        "128Mi",
        "1Ki",
        "999999999999999999Ei",
        "2k",
        "1e3",
        "5E-9",
        "12e300",
        "-4Gi",
        "100",
    ];
    for s in inputs {
        let digits = s.trim_start_matches('-');
        let parts = split(s).unwrap();
        let (base, exp, _) = interpret(parts.suffix).unwrap();
        let fast = parts.whole(base, exp);
        assert!(fast.is_some(), "{s} takes the short path");
        let (m, scale) = fast.unwrap();
        let (slow_m, slow_scale) = parts.rounded(base, exp).unwrap();
        let slow_m = slow_m.unwrap();
        // Equal values, whatever the scale each path chose.
        let norm = |m: i128, e: i64| normalise(m, i32::try_from(e).unwrap());
        assert_eq!(norm(m, scale), norm(slow_m, slow_scale), "{s} ({digits})");
    }
    for s in ["1.5", "1e-12", "1234567890123456789", "0.5Ki"] {
        let parts = split(s).unwrap();
        let (base, exp, _) = interpret(parts.suffix).unwrap();
        assert_eq!(
            parts.whole(base, exp),
            None,
            "{s} needs rounding or big digits"
        );
    }
}
