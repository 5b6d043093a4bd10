#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

#[test]
fn options_decode_from_the_query() {
    let cases: &[(&str, PodLogOptions)] = &[
        ("", PodLogOptions::default()),
        (
            "container=b&follow=true&previous=1&timestamps=true&tailLines=10&limitBytes=5",
            PodLogOptions {
                container: Some("b".into()),
                follow: true,
                previous: true,
                timestamps: true,
                tail_lines: Some(10),
                limit_bytes: Some(5),
                ..Default::default()
            },
        ),
        (
            "sinceTime=2026-11-29T22%3A33%3A12%2B01%3A00&container=",
            PodLogOptions {
                since_time: Some(t("2026-11-29T22:33:12+01:00")),
                ..Default::default()
            },
        ),
    ];
    for (q, want) in cases {
        assert_eq!(&PodLogOptions::parse(Some(q)).unwrap(), want, "{q}");
    }
    for (q, msg) in [
        (
            "tailLines=ten",
            "strconv.ParseInt: parsing \"ten\": invalid syntax",
        ),
        (
            "follow=yes",
            "strconv.ParseBool: parsing \"yes\": invalid syntax",
        ),
    ] {
        match PodLogOptions::parse(Some(q)) {
            Err(ApiError::BadRequest(m)) => assert_eq!(m, msg),
            other => panic!("{q}: {other:?}"),
        }
    }
    assert!(matches!(
        PodLogOptions::parse(Some("sinceTime=yesterday")),
        Err(ApiError::BadRequest(_))
    ));
}

#[test]
fn validation_as_upstream() {
    let cases: &[(PodLogOptions, Option<&str>)] = &[
        (PodLogOptions::default(), None),
        (
            PodLogOptions {
                tail_lines: Some(0),
                since_seconds: Some(1),
                limit_bytes: Some(1),
                ..Default::default()
            },
            None,
        ),
        (
            PodLogOptions {
                tail_lines: Some(-1),
                ..Default::default()
            },
            Some(
                "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
            ),
        ),
        (
            PodLogOptions {
                limit_bytes: Some(0),
                ..Default::default()
            },
            Some(
                "PodLogOptions \"p\" is invalid: limitBytes: Invalid value: 0: must be greater than 0",
            ),
        ),
        (
            PodLogOptions {
                since_seconds: Some(0),
                ..Default::default()
            },
            Some(
                "PodLogOptions \"p\" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0",
            ),
        ),
        (
            PodLogOptions {
                since_seconds: Some(5),
                since_time: Some(t("2026-11-29T22:33:12Z")),
                ..Default::default()
            },
            Some("at most one of `sinceTime` or `sinceSeconds` may be specified"),
        ),
    ];
    for (opts, want) in cases {
        match (opts.validate("p"), want) {
            (Ok(()), None) => {}
            (Err(err), Some(want)) => {
                assert_eq!(err.code(), 422, "{opts:?}");
                let message = err.to_string();
                assert!(message.contains(want), "{message} should contain {want}");
            }
            (got, want) => panic!("{opts:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn kubelet_query_is_sorted_and_encoded() {
    let opts = PodLogOptions {
        container: Some("ignored".into()),
        follow: true,
        previous: true,
        timestamps: true,
        since_time: Some(t("2026-11-29T23:33:12.75+01:00")),
        tail_lines: Some(0),
        limit_bytes: Some(100),
        ..Default::default()
    };
    assert_eq!(
        opts.kubelet_query(),
        "follow=true&limitBytes=100&previous=true&sinceTime=2026-11-29T22%3A33%3A12Z&tailLines=0&timestamps=true"
    );
    let opts = PodLogOptions {
        since_seconds: Some(5),
        ..Default::default()
    };
    assert_eq!(opts.kubelet_query(), "sinceSeconds=5");
    assert_eq!(PodLogOptions::default().kubelet_query(), "");
}

#[test]
fn container_choice_as_upstream() {
    let pod = |containers: &[&str], init: &[&str]| {
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "i"}))
                .collect::<Vec<_>>()
        };
        json!({"spec": {"containers": list(containers), "initContainers": list(init)}})
    };
    let cases: &[(Value, Option<&str>, Result<&str, &str>)] = &[
        (pod(&["a"], &[]), None, Ok("a")),
        (pod(&["a"], &["setup"]), None, Ok("a")),
        (pod(&["a", "b"], &[]), Some("b"), Ok("b")),
        (pod(&["a"], &["setup"]), Some("setup"), Ok("setup")),
        (
            pod(&["a", "b"], &[]),
            None,
            Err("a container name must be specified for pod p, choose one of: [a b]"),
        ),
        (
            pod(&["a", "b"], &["setup"]),
            None,
            Err("a container name must be specified for pod p, choose one of: [setup a b]"),
        ),
        (
            pod(&[], &[]),
            None,
            Err("a container name must be specified for pod p"),
        ),
        (
            pod(&["a"], &[]),
            Some("x"),
            Err("container x is not valid for pod p"),
        ),
    ];
    for (pod, container, want) in cases {
        match (choose_container(pod, "p", *container), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, *want),
            (Err(ApiError::BadRequest(got)), Err(want)) => assert_eq!(got, *want),
            (got, want) => panic!("{container:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn kubelet_address_from_the_node() {
    let node = |addresses: Value, port: Value| {
        json!({"status": {"addresses": addresses,
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}})
    };
    let cases: &[(Value, Result<&str, &str>)] = &[
        (
            node(
                json!([{"type": "Hostname", "address": "n1"},
                       {"type": "InternalIP", "address": "10.0.0.5"}]),
                json!(10250),
            ),
            Ok("10.0.0.5:10250"),
        ),
        (
            node(json!([{"type": "Hostname", "address": "n1"}]), json!(12345)),
            Ok("n1:12345"),
        ),
        (
            node(
                json!([{"type": "ExternalIP", "address": "fd00::5"},
                       {"type": "Hostname", "address": "n1"}]),
                json!(0),
            ),
            Ok("[fd00::5]:10250"),
        ),
        (
            node(json!([]), json!(10250)),
            Err("no preferred addresses found; known addresses: []"),
        ),
        (
            node(
                json!([{"type": "InternalDNS", "address": "n1.local"}]),
                json!(10250),
            ),
            Err("no preferred addresses found; known addresses: [{InternalDNS n1.local}]"),
        ),
    ];
    for (node, want) in cases {
        assert_eq!(
            kubelet_host(node).as_deref(),
            want.map_err(str::to_owned).as_deref()
        );
    }
}

#[test]
fn kubelet_errors_become_statuses_as_upstream() {
    use http_body_util::BodyExt;
    let status = |resp: Response<Body>| {
        let code = resp.status();
        let bytes = futures::executor::block_on(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        (code, serde_json::from_slice::<Value>(&bytes).unwrap())
    };
    let (code, s) = status(kubelet_error(
        StatusCode::BAD_REQUEST,
        "previous terminated container \"c\" in pod \"p\" not found",
        "p",
    ));
    assert_eq!(code, 400);
    assert_eq!(s["reason"], "BadRequest");
    assert_eq!(
        s["message"],
        "previous terminated container \"c\" in pod \"p\" not found"
    );
    let (code, s) = status(kubelet_error(
        StatusCode::NOT_FOUND,
        "pod \"p\" does not exist",
        "p",
    ));
    assert_eq!(code, 404);
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(
        s["message"],
        "the server could not find the requested resource ( pods/log p)"
    );
    let (code, s) = status(kubelet_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "boom",
        "p",
    ));
    assert_eq!(code, 500);
    assert_eq!(s["message"], "Internal error occurred: boom");
    let (code, s) = status(kubelet_error(StatusCode::BAD_GATEWAY, "x", "p"));
    assert_eq!(code, 502);
    assert_eq!(s["reason"], "InternalError");
}
