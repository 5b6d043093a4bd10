//! Upstream's `ResourceQuota` validating admission: a new namespaced object
//! is checked against every quota of its namespace whose scopes match it,
//! refused with 403 when it would exceed one, and admitted by adding its
//! usage to each quota's `status.used` with compare-and-swap, so concurrent
//! creates never overshoot. The `resourcequota` controller recomputes
//! usage from the objects (releasing what deletions free).

use std::collections::HashSet;

use serde_json::Value;
use skiff_api::quota::{self, Evaluator};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::{fields::FieldSelector, labels::Selector};
use skiff_api::status::ApiError;
use skiff_store::{ListOptions, Store, StoreError};

use super::{MAX_RETRIES, Registry, decode, meta, store_error, to_bytes};

impl Registry {
    /// Charges the new `obj` of `info` in `ns` to the namespace's quotas
    /// (checks only, under dryRun).
    pub(super) async fn admit_quota_create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        obj: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let Some(rq) = resources::by_gvr("", "v1", "resourcequotas") else {
            return Ok(());
        };
        if !self.may_have_quotas(rq, ns) {
            return Ok(());
        }
        let evaluator = Evaluator::for_resource(info.group, info.plural);
        let name = meta::meta_str(obj, "name").to_owned();
        let forbidden = |reason: String| ApiError::Forbidden {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            name: name.clone(),
            reason,
        };
        let now = now_unix();
        // Quotas already charged in an earlier round of the retry loop.
        let mut charged: HashSet<String> = HashSet::new();
        for _ in 0..MAX_RETRIES {
            let page = self
                .store
                .list(&rq.prefix(Some(ns)), ListOptions::default())
                .await
                .map_err(|e| store_error(rq, "", e))?;
            let mut kvs = Vec::new();
            let mut quotas = Vec::new();
            for kv in &page.kvs {
                let q = decode(kv)?;
                if !charged.contains(meta::meta_str(&q, "name")) {
                    kvs.push(kv);
                    quotas.push(q);
                }
            }
            if quotas.is_empty() {
                return Ok(());
            }
            let updates = quota::admit(&evaluator, &quotas, obj, now).map_err(forbidden)?;
            if dry_run || updates.is_empty() {
                return Ok(());
            }
            let mut conflicted = false;
            for (i, used) in updates {
                let (Some(kv), Some(q)) = (kvs.get(i), quotas.get_mut(i)) else {
                    continue;
                };
                let qname = meta::meta_str(q, "name").to_owned();
                if let Some(status) = q.get_mut("status").and_then(Value::as_object_mut) {
                    status.insert("used".into(), quota::to_json(&used));
                }
                match self
                    .store
                    .update(&kv.key, to_bytes(q)?, kv.mod_revision)
                    .await
                {
                    Ok(_) => {
                        charged.insert(qname);
                    }
                    Err(StoreError::Conflict { .. }) => {
                        // Another writer charged (or the controller
                        // recounted) first: check again on fresh usage.
                        conflicted = true;
                        break;
                    }
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(store_error(rq, &qname, e)),
                }
            }
            if !conflicted {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Err(ApiError::conflict_modified(rq, &name))
    }

    /// False when the watch cache knows the namespace has no quota, which
    /// spares the store a list on every create.
    fn may_have_quotas(&self, rq: &ResourceInfo, ns: &str) -> bool {
        let cached = self.store.cache().lock().list(
            rq,
            &rq.prefix(Some(ns)),
            &Selector::everything(),
            &FieldSelector::everything(),
            0,
        );
        cached.is_none_or(|page| !page.items.is_empty())
    }
}

/// Seconds since the Unix epoch.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
