use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::json;

use super::*;

fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn lex_all(s: &str) -> Vec<Token> {
    let mut l = Lexer {
        s: s.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        let (t, _) = l.lex();
        if t == Token::EndOfString {
            return out;
        }
        out.push(t);
    }
}

#[test]
fn lexer_tokens_as_upstream() {
    use Token::*;
    for (s, t) in [
        ("", EndOfString),
        (",", Comma),
        ("notin", NotIn),
        ("in", In),
        ("=", Equals),
        ("==", DoubleEquals),
        (">", GreaterThan),
        ("<", LessThan),
        ("!", DoesNotExist),
        ("!=", NotEquals),
        ("(", OpenPar),
        (")", ClosedPar),
        ("~", Identifier),
        ("||", Identifier),
    ] {
        let mut l = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let (tok, lit) = l.lex();
        assert_eq!(tok, t, "{s:?}");
        assert_eq!(lit, s);
    }
    assert_eq!(
        lex_all("== != (), = notin"),
        [
            DoubleEquals,
            NotEquals,
            OpenPar,
            ClosedPar,
            Comma,
            Equals,
            NotIn
        ]
    );
    assert_eq!(
        lex_all("key in ( value1, value2 )"),
        [
            Identifier, In, OpenPar, Identifier, Comma, Identifier, ClosedPar
        ]
    );
    assert_eq!(lex_all("key>2"), [Identifier, GreaterThan, Identifier]);
    assert_eq!(lex_all("a=(b"), [Identifier, Equals, OpenPar, Identifier]);
}

#[test]
fn good_strings_round_trip() {
    for s in [
        "x=a,y=b,z=c",
        "",
        "x!=a,y=b",
        "x=",
        "x= ",
        "x=,z= ",
        "x= ,z= ",
        "!x",
        "x>1",
        "x>1,z<5",
    ] {
        let sel = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(sel.to_string(), s.replace(' ', ""), "{s}");
    }
    assert_eq!(
        parse("x=a,a=x").unwrap().to_string(),
        parse("a=x,x=a").unwrap().to_string()
    );
    assert_eq!(
        parse("x notin (abc,,def),bar,z in (),w")
            .unwrap()
            .to_string(),
        "bar,w,x notin (,abc,def),z in ()"
    );
    assert_eq!(
        parse("a in (x,y,notin, z,in)").unwrap().to_string(),
        "a in (in,notin,x,y,z)"
    );
    assert_eq!(parse("\rx").unwrap().to_string(), "x");
    assert_eq!(parse("x notin (, a)").unwrap().to_string(), "x notin (,a)");
    assert_eq!(parse("x in (abc,)").unwrap().to_string(), "x in (,abc)");
    assert_eq!(parse("x==y").unwrap().to_string(), "x==y");
    assert_eq!(
        parse("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)")
            .unwrap()
            .to_string(),
        "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)"
    );
    assert!(parse("").unwrap().is_empty());
    assert!(!parse("a").unwrap().is_empty());
}

#[test]
fn bad_strings_with_upstream_messages() {
    let name_part = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    let ops = "in, notin, =, ==, !=, gt, lt";
    let cases: Vec<(&str, String)> = vec![
        (
            "x=a||y=b",
            format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {value_msg}"),
        ),
        ("x==a==b", "found '==', expected: ',' or 'end of string'".into()),
        ("!x=a", "found '=', expected: ',' or 'end of string'".into()),
        (
            "x<a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".into(),
        ),
        ("x,,y", "found ',', expected: identifier after ','".into()),
        (",x,y", "found ',', expected: !, identifier, or 'end of string'".into()),
        ("x nott in (y)", format!("unable to parse requirement: found 'nott', expected: {ops}")),
        ("a in (xyz),", "found '', expected: identifier after ','".into()),
        ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'".into()),
        ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'".into()),
        ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier".into()),
        ("a (", format!("unable to parse requirement: found '(', expected: {ops}")),
        ("(", "found '(', expected: !, identifier, or 'end of string'".into()),
        ("a in x", "unable to parse requirement: found 'x' expected: '('".into()),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'".into()),
        ("a in (x,=", "unable to parse requirement: found '=', expected: ',', or identifier".into()),
        ("a=(", "unable to parse requirement: found '(', expected: identifier".into()),
        ("!", "unable to parse requirement: found '', expected: identifier".into()),
        ("!=", "found '!=', expected: !, identifier, or 'end of string'".into()),
        (
            "A@=b",
            format!("unable to parse requirement: <nil>: Invalid value: \"A@\": {name_part}"),
        ),
        (
            "app=-bad",
            format!("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": {value_msg}"),
        ),
        (
            "app in (-x,-y)",
            format!("unable to parse requirement: [values[0][app]: Invalid value: \"-x\": {value_msg}, values[1][app]: Invalid value: \"-y\": {value_msg}]"),
        ),
        (
            "a/b/c",
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input).unwrap_err().0, want, "input {input:?}");
    }
    let long = "v".repeat(64);
    assert_eq!(
        parse(&format!("k={long}")).unwrap_err().0,
        format!(
            "unable to parse requirement: values[0][k]: Invalid value: \"{long}\": must be no more than 63 characters"
        )
    );
}

#[test]
fn matching_as_upstream() {
    let yes: &[(&str, &[(&str, &str)])] = &[
        ("", &[("x", "y")]),
        ("x=y", &[("x", "y")]),
        ("x=y,z=w", &[("x", "y"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "a")]),
        ("notin=in", &[("notin", "in")]),
        ("x", &[("x", "z")]),
        ("!x", &[("y", "z")]),
        ("x>1", &[("x", "2")]),
        ("x<1", &[("x", "0")]),
        ("x in (a,b)", &[("x", "b")]),
        ("x notin (a,b)", &[("x", "c")]),
        ("x notin (a,b)", &[]),
        ("x!=a", &[]),
        ("x=", &[("x", "")]),
        ("x in ()", &[("x", "")]),
    ];
    let no: &[(&str, &[(&str, &str)])] = &[
        ("x=z", &[]),
        ("x=y", &[("x", "z")]),
        ("x=y,z=w", &[("x", "w"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "w")]),
        ("x", &[("y", "z")]),
        ("!x", &[("x", "z")]),
        ("x>1", &[("x", "0")]),
        ("x<1", &[("x", "2")]),
        ("x>1", &[("x", "v2")]),
        ("x>1", &[]),
        ("x in (a,b)", &[]),
        ("x=", &[]),
    ];
    for (sel, labels) in yes {
        assert!(
            parse(sel).unwrap().matches(&set(labels)),
            "{sel} should match {labels:?}"
        );
    }
    for (sel, labels) in no {
        assert!(
            !parse(sel).unwrap().matches(&set(labels)),
            "{sel} should not match {labels:?}"
        );
    }
    let hm: HashMap<String, String> = set(&[("a", "1")]).into_iter().collect();
    assert!(parse("a=1").unwrap().matches(&hm));
    assert!(!Selector::nothing().matches(&hm));
    assert!(Selector::everything().matches(&hm));
}

#[test]
fn matching_objects() {
    let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "n": 3}}});
    assert!(parse("app=web").unwrap().matches_object(&pod));
    assert!(!parse("app=db").unwrap().matches_object(&pod));
    assert!(
        !parse("n").unwrap().matches_object(&pod),
        "non-string labels are absent"
    );
    assert!(
        parse("!tier")
            .unwrap()
            .matches_object(&json!({"metadata": {}}))
    );
    assert!(parse("").unwrap().matches_object(&json!(null)));
}

#[test]
fn exact_match() {
    let sel = parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
    assert_eq!(sel.requires_exact_match("a"), Some("1"));
    assert_eq!(sel.requires_exact_match("b"), Some("2"));
    assert_eq!(sel.requires_exact_match("c"), None);
    assert_eq!(sel.requires_exact_match("d"), None);
    assert_eq!(sel.requires_exact_match("e"), None);
}

#[test]
fn requirement_constructor() {
    assert!(Requirement::new("x", Operator::In, vec!["a".into()]).is_ok());
    let err = |k: &str, op, v: Vec<&str>| {
        Requirement::new(k, op, v.into_iter().map(String::from).collect())
            .unwrap_err()
            .aggregate_message()
            .unwrap()
    };
    assert_eq!(
        err("x", Operator::In, vec![]),
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        err("x", Operator::Equals, vec!["a", "b"]),
        "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value"
    );
    assert_eq!(
        err("x", Operator::Exists, vec!["a"]),
        "values: Invalid value: []string{\"a\"}: values set must be empty for exists and does not exist"
    );
    assert!(
        err("x", Operator::GreaterThan, vec!["1", "2"]).contains("exactly one value is required")
    );
    assert!(err("", Operator::Exists, vec![]).starts_with(
        "key: Invalid value: \"\": name part must be non-empty; name part must consist"
    ));
}

#[test]
fn label_selector_conversion() {
    assert_eq!(from_label_selector(None).unwrap(), Selector::nothing());
    assert!(
        from_label_selector(Some(&LabelSelector::default()))
            .unwrap()
            .is_empty()
    );
    let ls = LabelSelector {
        match_labels: Some(set(&[("app", "web"), ("tier", "fe")])),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into(), "dev".into()]),
            },
            LabelSelectorRequirement {
                key: "canary".into(),
                operator: "DoesNotExist".into(),
                values: None,
            },
        ]),
    };
    let sel = from_label_selector(Some(&ls)).unwrap();
    assert_eq!(sel.to_string(), "app=web,!canary,env in (dev,prod),tier=fe");
    assert!(sel.matches(&set(&[("app", "web"), ("tier", "fe"), ("env", "dev")])));
    assert!(!sel.matches(&set(&[("app", "web"), ("tier", "fe"), ("env", "qa")])));
    let bad_op = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "Equals".into(),
            values: None,
        }]),
        ..LabelSelector::default()
    };
    assert_eq!(
        from_label_selector(Some(&bad_op)).unwrap_err().0,
        "\"Equals\" is not a valid label selector operator"
    );
    let empty_in = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "a".into(),
            operator: "In".into(),
            values: Some(vec![]),
        }]),
        ..LabelSelector::default()
    };
    assert_eq!(
        from_label_selector(Some(&empty_in)).unwrap_err().0,
        "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
    );
    assert_eq!(
        from_map(&set(&[("b", "2"), ("a", "1")])).to_string(),
        "a=1,b=2"
    );
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "\u{0}",
        "a\u{0}b",
        "a \u{0}b",
        "é=ü",
        "((((",
        "))))",
        "!!!!",
        "a in ((",
        "a notin (,,,,)",
        "==!=<>",
        "a>99999999999999999999",
        "日本=語",
        "a=b,",
        "   ",
        "\t\n\r",
        "a in (b,c",
    ];
    for s in inputs {
        let _ = parse(s);
    }
    assert_eq!(
        parse("a\u{0}b").unwrap_err().0,
        format!(
            "unable to parse requirement: found 'b', expected: {}",
            BINARY_OPERATORS
        )
    );
    assert_eq!(parse("a \u{0}b").unwrap().to_string(), "a");
    assert!(parse("   ").unwrap().is_empty());
    // Upstream's identifier-list loop swallows commas in pairs: an even number
    // of bare commas ends on ')' in the wrong state.
    assert_eq!(
        parse("a notin (,,,,)").unwrap_err().0,
        "unable to parse requirement: found ')', expected: ',', or identifier"
    );
    assert_eq!(parse("a notin (,,,)").unwrap().to_string(), "a notin ()");
    let big = parse("a>99999999999999999999");
    assert!(big.is_err());
}
