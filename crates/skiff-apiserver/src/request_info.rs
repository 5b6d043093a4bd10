//! What a request asks for, read from its method, path and query the way
//! upstream's `RequestInfoFactory` reads them: the verb (get, list, watch,
//! create, update, patch, delete, deletecollection, proxy), the API group and
//! version, namespace, resource, name and subresource. RBAC, admission,
//! metrics and the REST handlers all work from this one reading.
//!
//! Pure: no I/O.

pub use skiff_api::query::{percent_decode, query_pairs};

/// A request for something other than an API resource (`/healthz`,
/// `/version`, `/openapi/v3`, discovery roots...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonResource {
    /// Lower-case verb from the HTTP method (get, post, put, ...).
    pub verb: String,
    /// The request path.
    pub path: String,
}

/// A request for an API resource or collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection,
    /// proxy.
    pub verb: &'static str,
    /// "api" or "apis".
    pub api_prefix: &'static str,
    /// API group ("" for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace, if the path names one.
    pub namespace: Option<String>,
    /// Resource (plural), empty for a bare `/api/v1` or `/apis/g/v` path.
    pub resource: String,
    /// Subresource (status, scale, binding, ...), if any.
    pub subresource: Option<String>,
    /// Object name, if the path (or a `metadata.name=` field selector on a
    /// list or watch) names one.
    pub name: Option<String>,
    /// The path segments from the resource on, as upstream keeps them.
    pub parts: Vec<String>,
}

/// The reading of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestInfo {
    /// An API resource request.
    Resource(ResourceRequest),
    /// Anything else.
    NonResource(NonResource),
}

/// Subresources of a namespace that stay with the namespace
/// (`/api/v1/namespaces/foo/status`) rather than start a namespaced resource.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Reads a request. `path` is the URL path (not decoded further than the
/// HTTP layer did), `query` the raw query string.
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
    let non_resource = || {
        RequestInfo::NonResource(NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_owned(),
        })
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_prefix, rest) = match segments.as_slice() {
        ["api", rest @ ..] => ("api", rest),
        ["apis", rest @ ..] => ("apis", rest),
        _ => return non_resource(),
    };
    // /api/{version}/... and /apis/{group}/{version}/...: anything shorter is
    // discovery, not a resource.
    let (group, version, mut parts) = match (api_prefix, rest) {
        ("api", [version, parts @ ..]) if !version.is_empty() => ("", *version, parts),
        ("apis", [group, version, parts @ ..]) if !group.is_empty() && !version.is_empty() => {
            (*group, *version, parts)
        }
        _ => return non_resource(),
    };

    let mut verb: &'static str = match *method {
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    };
    // Legacy `/watch/` and `/proxy/` path prefixes name the verb.
    match parts.first() {
        Some(&"watch") => {
            verb = "watch";
            parts = &parts[1..];
        }
        Some(&"proxy") => {
            verb = "proxy";
            parts = &parts[1..];
        }
        _ => {}
    }

    let mut namespace = None;
    if parts.first() == Some(&"namespaces")
        && let Some(ns) = parts.get(1)
    {
        namespace = Some((*ns).to_owned());
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts = &parts[2..];
        }
    }
    let parts: Vec<String> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| (*p).to_owned())
        .collect();

    let mut info = ResourceRequest {
        verb,
        api_prefix,
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        parts,
        ..Default::default()
    };
    if let Some(resource) = info.parts.first() {
        info.resource = resource.clone();
    }
    if let Some(name) = info.parts.get(1) {
        info.name = Some(name.clone());
    }
    // proxy and watch take the rest of the path as arguments, not a
    // subresource.
    if info.parts.len() >= 3 && verb != "proxy" && verb != "watch" {
        info.subresource = Some(info.parts[2].clone());
    }

    let query_param = |key: &str| query_value(query, key);
    if info.name.is_none() && verb == "get" {
        info.verb = if query_param("watch").is_some_and(|v| is_true(&v)) {
            "watch"
        } else {
            "list"
        };
    }
    if info.name.is_none() && verb == "delete" {
        info.verb = "deletecollection";
    }
    // A list or watch restricted to one name by field selector acts on that
    // object (upstream uses this for authorization of single-object watches).
    if info.name.is_none()
        && (info.verb == "list" || info.verb == "watch")
        && let Some(selector) = query_param("fieldSelector")
    {
        info.name = single_name_selector(&selector);
    }
    RequestInfo::Resource(info)
}

/// The value of `key` in a raw query string, percent-decoded.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(query)
        .filter_map(|(k, v)| (k == key).then_some(v))
        .next_back()
}

/// Query booleans as Go's `strconv.ParseBool` reads them.
fn is_true(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// `metadata.name=x` (or `==`) as the only requirement of a field selector.
fn single_name_selector(selector: &str) -> Option<String> {
    if selector.contains(',') {
        return None;
    }
    let value = selector
        .strip_prefix("metadata.name==")
        .or_else(|| selector.strip_prefix("metadata.name="))?;
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(method: Method, path: &str, query: Option<&str>) -> ResourceRequest {
        match parse(&method, path, query) {
            RequestInfo::Resource(r) => r,
            other => panic!("{path}: expected a resource request, got {other:?}"),
        }
    }

    /// (method, path, query, verb, group, namespace, resource, name, subresource)
    type Case<'a> = (
        Method,
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );

    #[test]
    fn verbs_and_parts() {
        // (method, path, query, verb, group, ns, resource, name, subresource)
        let cases: &[Case] = &[
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                None,
                "list",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=true"),
                "watch",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=1&resourceVersion=5"),
                "watch",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=false"),
                "list",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web",
                None,
                "get",
                "",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web/log",
                None,
                "get",
                "",
                Some("default"),
                "pods",
                Some("web"),
                Some("log"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/default/pods/web/status",
                None,
                "update",
                "",
                Some("default"),
                "pods",
                Some("web"),
                Some("status"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/web/binding",
                None,
                "create",
                "",
                Some("default"),
                "pods",
                Some("web"),
                Some("binding"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods",
                None,
                "create",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods",
                None,
                "deletecollection",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods/web",
                None,
                "delete",
                "",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/ns1/deployments/d/scale",
                None,
                "patch",
                "apps",
                Some("ns1"),
                "deployments",
                Some("d"),
                Some("scale"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments",
                None,
                "list",
                "apps",
                None,
                "deployments",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/nodes/n1",
                None,
                "get",
                "",
                None,
                "nodes",
                Some("n1"),
                None,
            ),
            // The namespace object itself and its own subresources.
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                "list",
                "",
                None,
                "namespaces",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/kube-system",
                None,
                "get",
                "",
                Some("kube-system"),
                "namespaces",
                Some("kube-system"),
                None,
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/foo/finalize",
                None,
                "update",
                "",
                Some("foo"),
                "namespaces",
                Some("foo"),
                Some("finalize"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/foo/status",
                None,
                "update",
                "",
                Some("foo"),
                "namespaces",
                Some("foo"),
                Some("status"),
            ),
            // Legacy watch paths.
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                None,
                "watch",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods/web",
                None,
                "watch",
                "",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            // A single-object watch through a field selector.
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=true&fieldSelector=metadata.name%3Dweb"),
                "watch",
                "",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=metadata.name%3Dweb%2Cstatus.phase%3DRunning"),
                "list",
                "",
                Some("default"),
                "pods",
                None,
                None,
            ),
        ];
        for (method, path, query, verb, group, ns, resource, name, sub) in cases {
            let r = res(method.clone(), path, *query);
            assert_eq!(r.verb, *verb, "{method} {path}?{query:?}");
            assert_eq!(r.group, *group, "{path}");
            assert_eq!(r.namespace.as_deref(), *ns, "{path}");
            assert_eq!(r.resource, *resource, "{path}");
            assert_eq!(r.name.as_deref(), *name, "{path}");
            assert_eq!(r.subresource.as_deref(), *sub, "{path}");
        }
    }

    #[test]
    fn non_resource_paths() {
        for path in [
            "/healthz",
            "/version",
            "/api",
            "/apis",
            "/apis/apps",
            "/openapi/v3",
            "/openapi/v2",
            "/",
            "/metrics",
        ] {
            assert!(
                matches!(parse(&Method::GET, path, None), RequestInfo::NonResource(_)),
                "{path}"
            );
        }
        // A group-version root is a resource request with no resource.
        let r = res(Method::GET, "/apis/apps/v1", None);
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.resource.as_str()),
            ("apps", "v1", "")
        );
        let r = res(Method::GET, "/api/v1", None);
        assert_eq!((r.version.as_str(), r.resource.as_str()), ("v1", ""));
    }

    #[test]
    fn query_values() {
        assert_eq!(
            query_value(Some("a=1&b=x%20y&c"), "b").as_deref(),
            Some("x y")
        );
        assert_eq!(query_value(Some("a=1&b=x%20y&c"), "c").as_deref(), Some(""));
        assert_eq!(query_value(Some("a=1"), "z"), None);
        assert_eq!(query_value(None, "a"), None);
        assert_eq!(percent_decode("a%3Db%2"), "a=b%2");
        assert_eq!(percent_decode("%zz+%41"), "%zz A");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
