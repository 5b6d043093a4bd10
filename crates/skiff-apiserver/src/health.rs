//! `/healthz`, `/livez` and `/readyz`, answered as upstream does: `ok`, or
//! with `?verbose` one `[+]name ok` / `[-]name failed: reason withheld` line
//! per check and a closing `<endpoint> check passed|failed` line; a single
//! check at `/<endpoint>/<name>`; `?exclude=name` skips a check. A failing
//! endpoint answers 500.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The outcome of one check: `Err(reason)` when unhealthy (the reason is
/// logged, not served).
pub type CheckResult = Result<(), String>;

type CheckFn = dyn Fn() -> Pin<Box<dyn Future<Output = CheckResult> + Send>> + Send + Sync;

/// A named health check.
#[derive(Clone)]
pub struct Check {
    name: String,
    run: Arc<CheckFn>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

impl Check {
    /// A check named `name` that runs `f` each time it is asked.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Check
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        Check {
            name: name.into(),
            run: Arc::new(move || Box::pin(f())),
        }
    }

    /// A check that always passes (upstream's `ping`).
    pub fn ping() -> Check {
        Check::new("ping", || async { Ok(()) })
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The checks behind one endpoint (`healthz`, `livez` or `readyz`).
#[derive(Clone, Debug)]
pub struct Endpoint {
    name: &'static str,
    checks: Vec<Check>,
}

/// What an endpoint answers.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// 200, 404 (unknown single check) or 500.
    pub status: u16,
    /// The text/plain body.
    pub body: String,
}

impl Endpoint {
    /// An endpoint named `name` (without the slash) running `checks`.
    pub fn new(name: &'static str, checks: Vec<Check>) -> Endpoint {
        Endpoint { name, checks }
    }

    /// Answers `/<name>` (when `single` is None) or `/<name>/<single>`, with
    /// the request's raw query.
    pub async fn answer(&self, single: Option<&str>, query: Option<&str>) -> Answer {
        if let Some(single) = single {
            let Some(check) = self.checks.iter().find(|c| c.name == single) else {
                return Answer {
                    status: 404,
                    body: "404 page not found\n".into(),
                };
            };
            return match (check.run)().await {
                Ok(()) => Answer {
                    status: 200,
                    body: "ok".into(),
                },
                Err(reason) => {
                    tracing::warn!(check = %check.name, %reason, "{} check failed", self.name);
                    Answer {
                        status: 500,
                        body: format!("internal server error: {} check failed\n", check.name),
                    }
                }
            };
        }
        let verbose = has_param(query, "verbose");
        let excluded: Vec<String> = params(query, "exclude");
        let mut lines = String::new();
        let mut failed = false;
        for check in &self.checks {
            if excluded.iter().any(|e| e == &check.name) {
                lines.push_str(&format!("[+]{} excluded: ok\n", check.name));
                continue;
            }
            match (check.run)().await {
                Ok(()) => lines.push_str(&format!("[+]{} ok\n", check.name)),
                Err(reason) => {
                    tracing::warn!(check = %check.name, %reason, "{} check failed", self.name);
                    failed = true;
                    lines.push_str(&format!("[-]{} failed: reason withheld\n", check.name));
                }
            }
        }
        let status = if failed { 500 } else { 200 };
        let body = match (verbose, failed) {
            (false, false) => "ok".to_owned(),
            (true, false) => format!("{lines}{} check passed\n", self.name),
            (_, true) => format!("{lines}{} check failed\n", self.name),
        };
        Answer { status, body }
    }
}

fn has_param(query: Option<&str>, key: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == key || p.split_once('=').is_some_and(|(k, _)| k == key))
    })
}

fn params(query: Option<&str>, key: &str) -> Vec<String> {
    query
        .map(|q| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| crate::request_info::percent_decode(v))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(store_ok: bool) -> Endpoint {
        Endpoint::new(
            "readyz",
            vec![
                Check::ping(),
                Check::new("etcd", move || async move {
                    if store_ok {
                        Ok(())
                    } else {
                        Err("store down".into())
                    }
                }),
            ],
        )
    }

    #[tokio::test]
    async fn healthy() {
        let e = endpoint(true);
        assert_eq!(
            e.answer(None, None).await,
            Answer {
                status: 200,
                body: "ok".into()
            }
        );
        let verbose = e.answer(None, Some("verbose")).await;
        assert_eq!(verbose.status, 200);
        assert_eq!(
            verbose.body,
            "[+]ping ok\n[+]etcd ok\nreadyz check passed\n"
        );
        assert_eq!(e.answer(Some("etcd"), None).await.body, "ok");
        assert_eq!(e.answer(Some("nope"), None).await.status, 404);
    }

    #[tokio::test]
    async fn unhealthy() {
        let e = endpoint(false);
        let a = e.answer(None, None).await;
        assert_eq!(a.status, 500);
        assert_eq!(
            a.body,
            "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n"
        );
        assert_eq!(e.answer(Some("etcd"), None).await.status, 500);
        assert_eq!(e.answer(Some("ping"), None).await.status, 200);
        let excluded = e.answer(None, Some("verbose&exclude=etcd")).await;
        assert_eq!(excluded.status, 200);
        assert_eq!(
            excluded.body,
            "[+]ping ok\n[+]etcd excluded: ok\nreadyz check passed\n"
        );
    }
}
