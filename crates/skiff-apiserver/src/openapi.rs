//! `/openapi/v2` and `/openapi/v3[/...]`, as kube-openapi's handlers serve
//! them: `/openapi/v2` in JSON or gnostic protobuf by the `Accept` header
//! (what client-go's `OpenAPISchema()` asks for, and kubectl's client-side
//! validation reads), `406` for anything else; the v3 documents in JSON.
//! Each answer carries an `ETag`, and a request whose `If-None-Match` names
//! it gets `304 Not Modified`. Documents are built and encoded once.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use skiff_protobuf::openapi_v2;

use crate::request_info;
use crate::response::{self, Body};

/// What `/openapi/v2` can answer with: `(type, subtype)` as an `Accept`
/// clause names it, and the `Content-Type` of the answer, in kube-openapi's
/// order of preference among equally acceptable types.
const V2_FORMATS: &[(&str, &str, V2Format)] = &[
    ("application", "json", V2Format::Json),
    (
        "application",
        "com.github.proto-openapi.spec.v2@v1.0+protobuf",
        V2Format::Protobuf,
    ),
    (
        "application",
        "com.github.proto-openapi.spec.v2.v1.0+protobuf",
        V2Format::Protobuf,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Format {
    Json,
    Protobuf,
}

/// Serves `/openapi/{path}`.
pub fn serve(path: &str, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
    match path.trim_end_matches('/') {
        "v2" => v2(headers),
        "v3" => v3(skiff_api::openapi::v3_root(), query, headers),
        rest => match rest
            .strip_prefix("v3/")
            .and_then(skiff_api::openapi::v3_document)
        {
            Some(doc) => v3(doc, query, headers),
            None => response::not_found_path(),
        },
    }
}

/// The `/openapi/v2` document in gnostic protobuf, encoded once. `None` if
/// encoding failed (a defect the unit tests catch; JSON is still served).
fn v2_protobuf() -> Option<&'static Bytes> {
    static PROTO: OnceLock<Option<Bytes>> = OnceLock::new();
    PROTO
        .get_or_init(|| {
            let doc = skiff_api::openapi::v2_document();
            let encoded = serde_json::from_slice(doc.json())
                .map_err(|e| e.to_string())
                .and_then(|value| openapi_v2::encode(&value).map_err(|e| e.to_string()));
            match encoded {
                Ok(bytes) => Some(Bytes::from(bytes)),
                Err(err) => {
                    tracing::error!(%err, "cannot encode /openapi/v2 as protobuf");
                    None
                }
            }
        })
        .as_ref()
}

/// Builds and encodes every document (hundreds of ms), so that the first
/// client does not wait.
pub fn warm_up() {
    let _ = skiff_api::openapi::v3_root();
    let _ = v2_protobuf();
}

fn v2(headers: &HeaderMap) -> Response<Body> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let doc = skiff_api::openapi::v2_document();
    let (body, content_type) = match choose_v2(accept) {
        Some(V2Format::Json) => (Bytes::from_static(doc.json()), "application/json"),
        Some(V2Format::Protobuf) => match v2_protobuf() {
            Some(bytes) => (bytes.clone(), openapi_v2::MEDIA_TYPE),
            None => return status_only(StatusCode::SERVICE_UNAVAILABLE),
        },
        None => return status_only(StatusCode::NOT_ACCEPTABLE),
    };
    // One ETag for both encodings of the same document, as upstream
    // (`Vary: Accept` tells caches they differ).
    let mut resp = cached(body, content_type, doc.hash(), headers);
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn v3(
    doc: &'static skiff_api::openapi::Document,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let mut resp = cached(
        Bytes::from_static(doc.json()),
        "application/json",
        doc.hash(),
        headers,
    );
    // A request carrying the document's current `hash` may cache it for
    // good, as upstream allows; others must revalidate.
    let immutable = request_info::query_value(query, "hash").as_deref() == Some(doc.hash());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, immutable, max-age=31536000"
        } else {
            "no-cache, private"
        }),
    );
    resp
}

/// A `200` with the body, or a `304` without it when `If-None-Match` names
/// the ETag (weak comparison, or `*`), as Go's `http.ServeContent`.
fn cached(
    body: Bytes,
    content_type: &'static str,
    hash: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let etag = format!("\"{hash}\"");
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag);
    let mut resp = if not_modified {
        status_only(StatusCode::NOT_MODIFIED)
    } else {
        let mut resp = Response::new(response::full(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, value);
    }
    resp
}

fn status_only(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(response::full(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

/// One `Accept` clause: type, subtype and quality.
#[derive(Debug)]
struct Clause<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f32,
}

/// Parses an `Accept` header as goautoneg does: clauses sorted by quality,
/// then concrete types before wildcards (stable otherwise).
fn parse_accept(accept: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = accept
        .split(',')
        .filter_map(|part| {
            let mut params = part.split(';');
            let media = params.next()?.trim();
            let (kind, subtype) = media.split_once('/').unwrap_or((media, "*"));
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(Clause {
                kind: kind.trim(),
                subtype: subtype.trim(),
                q,
            })
        })
        .filter(|c| !c.kind.is_empty() && c.q > 0.0)
        .collect();
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| (a.kind == "*").cmp(&(b.kind == "*")))
            .then_with(|| (a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
}

/// The format to answer an `Accept` header with: the first clause (by
/// preference) that a format matches.
fn choose_v2(accept: &str) -> Option<V2Format> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    parse_accept(accept).iter().find_map(|clause| {
        V2_FORMATS
            .iter()
            .find(|(kind, subtype, _)| {
                (clause.kind == "*" || clause.kind.eq_ignore_ascii_case(kind))
                    && (clause.subtype == "*" || clause.subtype.eq_ignore_ascii_case(subtype))
            })
            .map(|(_, _, format)| *format)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_format_as_kube_openapi() {
        use V2Format::{Json, Protobuf};
        for (accept, want) in [
            (
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                Some(Protobuf),
            ),
            (
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                Some(Protobuf),
            ),
            ("application/json", Some(Json)),
            ("*/*", Some(Json)),
            ("application/*", Some(Json)),
            ("", Some(Json)),
            (
                "application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                Some(Protobuf),
            ),
            (
                "*/*;q=0.9, application/com.github.proto-openapi.spec.v2.v1.0+protobuf;q=0.9",
                Some(Protobuf),
            ),
            ("application/json;q=0, text/html", None),
            ("application/yaml", None),
            ("text/plain", None),
        ] {
            assert_eq!(choose_v2(accept), want, "{accept:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn v2_answers_by_accept_with_one_etag_and_304() {
        let json = serve("v2", None, &headers(&[("accept", "application/json")]));
        assert_eq!(json.status(), StatusCode::OK);
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(json.headers()[header::VARY], "Accept");
        let etag = json.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2);

        let proto = serve(
            "v2",
            None,
            &headers(&[("accept", openapi_v2::MEDIA_TYPE_DEPRECATED)]),
        );
        assert_eq!(proto.status(), StatusCode::OK);
        assert_eq!(
            proto.headers()[header::CONTENT_TYPE],
            openapi_v2::MEDIA_TYPE
        );
        assert_eq!(proto.headers()[header::ETAG].to_str().unwrap(), etag);

        let refused = serve("v2", None, &headers(&[("accept", "text/html")]));
        assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);

        let mut h = headers(&[("accept", openapi_v2::MEDIA_TYPE)]);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        let again = serve("v2", None, &h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
        let stale = serve(
            "v2",
            None,
            &headers(&[("accept", "application/json"), ("if-none-match", "\"0\"")]),
        );
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn v2_protobuf_decodes_to_the_json_document() {
        let proto = v2_protobuf().expect("encoded");
        let decoded = openapi_v2::decode(proto).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(skiff_api::openapi::v2_document().json()).unwrap();
        assert_eq!(decoded["swagger"], "2.0");
        assert_eq!(
            decoded["definitions"]["io.k8s.api.core.v1.Pod"],
            json["definitions"]["io.k8s.api.core.v1.Pod"]
        );
        assert_eq!(
            decoded["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"],
            json["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]
        );
    }

    #[test]
    fn v3_revalidates_by_etag() {
        let doc = skiff_api::openapi::v3_document("apis/apps/v1").unwrap();
        let etag = format!("\"{}\"", doc.hash());
        let h = headers(&[]);
        let resp = serve("v3/apis/apps/v1", None, &h);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache, private");
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        assert_eq!(
            serve("v3/apis/apps/v1", None, &h).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("v3/apis/nope/v1", None, &h).status(),
            StatusCode::NOT_FOUND
        );
    }
}
