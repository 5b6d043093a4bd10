//! API requests a benchmark phase cost, read from the server's
//! `apiserver_request_total` counters before and after it.

use std::collections::BTreeMap;

/// Request counts by `"VERB resource[/subresource]"`, summed over codes and
/// the other labels.
pub type RequestCounts = BTreeMap<String, u64>;

/// The server's counters now, or `None` when `/metrics` cannot be read.
pub async fn snapshot(client: &kube::Client) -> Option<RequestCounts> {
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = client.request_text(req).await.ok()?;
    Some(parse(&text))
}

/// Sums `apiserver_request_total` samples of the Prometheus text `text`.
pub fn parse(text: &str) -> RequestCounts {
    let mut counts = RequestCounts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            let key = format!("{name}=\"");
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or("")
        };
        let mut key = format!("{} {}", label("verb"), label("resource"));
        let sub = label("subresource");
        if !sub.is_empty() {
            key.push('/');
            key.push_str(sub);
        }
        // Counters are whole numbers, exported as floats.
        *counts.entry(key).or_default() += value.max(0.0) as u64;
    }
    counts
}

/// What `after` added to `before`, largest first; unchanged entries left out.
pub fn added(before: &RequestCounts, after: &RequestCounts) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = after
        .iter()
        .map(|(k, n)| {
            (
                k.clone(),
                n.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// `"7.0 per pod: 3.0 POST events, 1.0 PATCH pods/status, …"` for the
/// largest `shown` entries of `added` over `pods` pods.
pub fn per_pod(added: &[(String, u64)], pods: usize, shown: usize) -> String {
    if pods == 0 || added.is_empty() {
        return "-".to_owned();
    }
    let per = |n: u64| n as f64 / pods as f64;
    let total: u64 = added.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = added
        .iter()
        .take(shown)
        .map(|(k, n)| format!("{:.1} {k}", per(*n)))
        .collect();
    let more = if added.len() > shown { ", …" } else { "" };
    format!("{:.1}: {}{more}", per(total), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP apiserver_request_total Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 100
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 150
apiserver_request_total_other{verb="GET"} 7
apiserver_request_duration_seconds_count{resource="pods",verb="POST"} 102
"#;

    #[test]
    fn counts_sum_codes_and_split_subresources() {
        let c = parse(METRICS);
        assert_eq!(c.get("POST pods"), Some(&102));
        assert_eq!(c.get("PATCH pods/status"), Some(&150));
        assert_eq!(c.len(), 2, "{c:?}");
    }

    #[test]
    fn added_is_the_difference_largest_first() {
        let before = parse(METRICS);
        let mut after = before.clone();
        *after.get_mut("POST pods").unwrap() += 100;
        *after.get_mut("PATCH pods/status").unwrap() += 300;
        after.insert("POST events".into(), 50);
        let a = added(&before, &after);
        assert_eq!(
            a,
            vec![
                ("PATCH pods/status".to_owned(), 300),
                ("POST pods".to_owned(), 100),
                ("POST events".to_owned(), 50),
            ]
        );
        assert_eq!(
            per_pod(&a, 100, 2),
            "4.5: 3.0 PATCH pods/status, 1.0 POST pods, …"
        );
        assert_eq!(per_pod(&[], 100, 2), "-");
    }
}
