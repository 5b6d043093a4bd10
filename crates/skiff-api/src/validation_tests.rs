use std::collections::BTreeMap;

use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

#[test]
fn dns1123_subdomain() {
    for ok in [
        "a",
        "ab",
        "a-b",
        "a.b",
        "0",
        "a.b.c-d",
        "1.2.3",
        &"a".repeat(253),
    ] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    for bad in ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a.", "a b", "é"] {
        assert_eq!(
            is_dns1123_subdomain(bad),
            vec![SUBDOMAIN_MSG.to_owned()],
            "{bad:?}"
        );
    }
    assert_eq!(
        is_dns1123_subdomain(&"a".repeat(254)),
        vec!["must be no more than 253 characters".to_owned()]
    );
    assert_eq!(
        is_dns1123_subdomain(&format!("{}_", "a".repeat(254))),
        vec![
            "must be no more than 253 characters".to_owned(),
            SUBDOMAIN_MSG.to_owned()
        ]
    );
}

#[test]
fn dns1123_label() {
    for ok in ["a", "0", "a-0", "abc", &"a".repeat(63)] {
        assert!(is_dns1123_label(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_dns1123_label("a.b"),
        vec!["must not contain dots".to_owned()]
    );
    for bad in ["", "A", "-a", "a-", "a_b"] {
        assert_eq!(is_dns1123_label(bad), vec![LABEL_MSG.to_owned()], "{bad:?}");
    }
    assert_eq!(
        is_dns1123_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters".to_owned()]
    );
}

#[test]
fn dns1035_label() {
    for ok in ["a", "a0", "a-b"] {
        assert!(is_dns1035_label(ok).is_empty(), "{ok}");
    }
    for bad in ["0a", "", "a-", "A", "a.b"] {
        assert_eq!(
            is_dns1035_label(bad),
            vec![DNS1035_MSG.to_owned()],
            "{bad:?}"
        );
    }
}

#[test]
fn qualified_names() {
    for ok in [
        "a",
        "A",
        "a.b_c-d",
        "example.com/MyName",
        "kubernetes.io/hostname",
        "app.kubernetes.io/name",
        &"a".repeat(63),
    ] {
        assert!(is_qualified_name(ok).is_empty(), "{ok}");
    }
    assert_eq!(is_qualified_name("A@"), vec![NAME_PART_MSG.to_owned()]);
    assert_eq!(
        is_qualified_name(""),
        vec![
            "name part must be non-empty".to_owned(),
            NAME_PART_MSG.to_owned()
        ]
    );
    assert_eq!(
        is_qualified_name("/a"),
        vec!["prefix part must be non-empty".to_owned()]
    );
    assert_eq!(
        is_qualified_name("Example.com/a"),
        vec![format!("prefix part {SUBDOMAIN_MSG}")]
    );
    assert_eq!(
        is_qualified_name(&"a".repeat(64)),
        vec!["name part must be no more than 63 characters".to_owned()]
    );
    assert_eq!(
        is_qualified_name("a/b/c"),
        vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_owned()]
    );
}

#[test]
fn label_values() {
    for ok in ["", "a", "MyValue", "my_value", "12345", "a.b-c_d"] {
        assert!(is_valid_label_value(ok).is_empty(), "{ok}");
    }
    assert_eq!(is_valid_label_value("-a"), vec![LABEL_VALUE_MSG.to_owned()]);
    assert_eq!(
        is_valid_label_value("a b"),
        vec![LABEL_VALUE_MSG.to_owned()]
    );
    assert_eq!(
        is_valid_label_value(&"a".repeat(64)),
        vec!["must be no more than 63 characters".to_owned()]
    );
}

#[test]
fn path_segment_names() {
    assert_eq!(
        is_valid_path_segment_name("."),
        vec!["may not be '.'".to_owned()]
    );
    assert_eq!(
        is_valid_path_segment_name(".."),
        vec!["may not be '..'".to_owned()]
    );
    assert_eq!(
        is_valid_path_segment_name("a/b%c"),
        vec![
            "may not contain '/'".to_owned(),
            "may not contain '%'".to_owned()
        ]
    );
    assert!(is_valid_path_segment_name("...").is_empty());
    assert!(is_valid_path_segment_name("system:admin").is_empty());
    assert!(validate_path_segment_name("..", true).is_empty());
    assert_eq!(
        validate_path_segment_name("a/", true),
        vec!["may not contain '/'".to_owned()]
    );
}

#[test]
fn generate_name_prefixes() {
    assert!(name_is_dns_subdomain("web-", true).is_empty());
    assert!(!name_is_dns_subdomain("web-", false).is_empty());
    assert!(name_is_dns_label("a-", true).is_empty());
    // Upstream drops the character before the dash as well.
    assert_eq!(mask_trailing_dash("ab-"), "aa");
    assert_eq!(mask_trailing_dash("-"), "-");
    assert!(!name_is_dns_subdomain("é-", true).is_empty());
    assert!(name_is_dns1035_label("svc-", true).is_empty());
    assert!(!validate_namespace_name("Default", false).is_empty());
}

#[test]
fn labels_and_annotations() {
    let path = Path::new("metadata").child("labels");
    let mut labels = BTreeMap::new();
    labels.insert("app".to_owned(), "web".to_owned());
    assert!(validate_labels(&labels, &path).is_empty());
    labels.insert("bad key".to_owned(), "-x".to_owned());
    let errs = validate_labels(&labels, &path);
    let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        vec![
            format!("metadata.labels: Invalid value: \"bad key\": {NAME_PART_MSG}"),
            format!("metadata.labels: Invalid value: \"-x\": {LABEL_VALUE_MSG}"),
        ]
    );

    let apath = Path::new("metadata").child("annotations");
    let mut ann = BTreeMap::new();
    ann.insert("Example.COM/Key".to_owned(), "v".to_owned());
    assert!(validate_annotations(&ann, &apath).is_empty());
    ann.insert("big".to_owned(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B));
    let errs = validate_annotations(&ann, &apath);
    assert_eq!(
        errs.aggregate_message().unwrap(),
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    let mut exact = BTreeMap::new();
    exact.insert(
        "k".to_owned(),
        "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B - 1),
    );
    assert!(validate_annotations(&exact, &apath).is_empty());
}

#[test]
fn helper_messages() {
    assert_eq!(
        regex_error("m", "f", &[]),
        "m (regex used for validation is 'f')"
    );
    assert_eq!(
        inclusive_range_error(1, 65535),
        "must be between 1 and 65535, inclusive"
    );
}
