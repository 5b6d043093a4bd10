//! The generic REST store: every resource of the resource table served from
//! the store with the same verbs and metadata rules, as upstream's
//! `genericregistry.Store`. Objects are JSON documents; the store keeps them
//! without `resourceVersion`, which is the key's mod revision on the way out.

mod admission;
mod apply;
pub mod body;
mod cache;
mod delete;
pub mod field_validation;
pub mod meta;
mod persistent_volumes;
pub mod pod_exec;
pub mod pod_log;
pub mod pod_port_forward;
mod quota;
pub mod services;
mod splice;
mod storage_classes;
mod subresources;
mod watch;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use skiff_api::kinds;
use skiff_api::patch::{self, PatchError, PatchSchema, PatchType};
use skiff_api::resources::{self, ResourceInfo};
use skiff_api::selector::{self, fields::FieldSelector, labels::Selector};
use skiff_api::status::ApiError;
use skiff_store::{AnyStore, KeyValue, ListOptions, Store, StoreError};

use crate::negotiate::{self, Output};
use crate::request_info::{ResourceRequest, query_value};
use crate::response::{self, Body};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Attempts of an update that races other writers before giving up.
/// Upstream's GuaranteedUpdate retries until the request times out; many
/// writers on one object under load lose more than a few rounds in a row
/// (16 was not enough in CI), so the bound is only a backstop: the request
/// timeout ends a request long before it.
const MAX_RETRIES: usize = 1000;

/// The REST store over one [`AnyStore`], lists and watches served by its
/// watch cache.
#[derive(Clone, Debug)]
pub struct Registry {
    /// Dereferences to the [`AnyStore`] for reads and writes.
    store: cache::CachedStore,
    service_cidr: services::ServiceCidr,
    /// Reaches kubelets for `pods/log`.
    kubelet_client: Option<pod_log::KubeletClient>,
    /// Namespaces this server deleted lately: the watch cache may not show
    /// their deletion yet, so admission reads them from the store
    /// (upstream's NamespaceLifecycle `forceLiveLookupCache`).
    deleted_namespaces:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Revision of this server's latest PriorityClass write: pod admission
    /// waits for the watch cache to reach it, so a pod created right after
    /// a class sees that class (read-your-writes on one server).
    priority_class_written: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// The PriorityClasses pod admission last decoded from the watch
    /// cache, with the revisions of the objects they were decoded from.
    priority_classes_seen: std::sync::Arc<std::sync::Mutex<admission::SeenClasses>>,
}

/// How long a deleted namespace is looked up live (upstream's
/// `forceLiveLookupTTL`).
const FORCE_LIVE_LOOKUP: std::time::Duration = std::time::Duration::from_secs(30);

/// One parsed resource call.
#[derive(Debug)]
pub struct Call<'a> {
    /// The resource's table entry.
    pub info: &'static ResourceInfo,
    /// What the path and method asked for.
    pub req: &'a ResourceRequest,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The request body (already size-limited).
    pub body: Bytes,
    /// The response shape the client accepts (reads only).
    pub output: Output,
    /// For PATCH: the patch format from the Content-Type.
    pub patch_type: Option<PatchType>,
    /// For POST and PUT: the body's encoding from the Content-Type.
    pub format: body::BodyFormat,
    /// The User-Agent header: names the field manager when the request
    /// gives no `fieldManager`.
    pub user_agent: Option<&'a str>,
    /// Who asked.
    pub user: &'a crate::authn::UserInfo,
}

impl Registry {
    /// A registry storing in `store`, allocating ClusterIPs from
    /// `service_cidr`.
    pub fn new(store: AnyStore, service_cidr: services::ServiceCidr) -> Registry {
        Registry {
            store: cache::CachedStore::new(store),
            service_cidr,
            kubelet_client: None,
            deleted_namespaces: std::sync::Arc::default(),
            priority_class_written: std::sync::Arc::default(),
            priority_classes_seen: std::sync::Arc::default(),
        }
    }

    /// Records a successful write of an object of `info` at `rev`.
    fn note_write(&self, info: &ResourceInfo, rev: i64) {
        if admission::is_priority_class(info) {
            self.priority_class_written
                .fetch_max(rev, std::sync::atomic::Ordering::AcqRel);
        }
    }

    fn note_namespace_deleted(&self, ns: &str) {
        let mut map = self
            .deleted_namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        map.retain(|_, at| now.duration_since(*at) < FORCE_LIVE_LOOKUP);
        map.insert(ns.to_owned(), now);
    }

    fn recently_deleted_namespace(&self, ns: &str) -> bool {
        self.deleted_namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(ns)
            .is_some_and(|at| at.elapsed() < FORCE_LIVE_LOOKUP)
    }

    /// This registry reaching kubelets (for `pods/log`) with `client`.
    pub fn with_kubelet_client(mut self, client: pod_log::KubeletClient) -> Registry {
        self.kubelet_client = Some(client);
        self
    }

    /// What every cluster has from its first start: the system namespaces,
    /// the system PriorityClasses, and the `default/kubernetes` Service with
    /// its Endpoints and EndpointSlice pointing at `api_address:api_port`.
    /// Also repairs Service IP and port allocations.
    pub async fn bootstrap(
        &self,
        api_address: std::net::IpAddr,
        api_port: u16,
    ) -> Result<(), ApiError> {
        let table = |g: &str, v: &str, r: &str| {
            resources::by_gvr(g, v, r).ok_or_else(|| {
                ApiError::InternalError(format!("{r} missing from the resource table"))
            })
        };
        let ns = table("", "v1", "namespaces")?;
        for name in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            self.ensure(ns, obj).await?;
        }
        let pcs = table("scheduling.k8s.io", "v1", "priorityclasses")?;
        for (name, value, what) in [
            ("system-node-critical", 2_000_001_000, "node"),
            ("system-cluster-critical", 2_000_000_000, "cluster"),
        ] {
            let obj = json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority",
                "description": format!("Used for system critical pods that must not be moved from their current {what}."),
            });
            self.ensure(pcs, obj).await?;
        }
        let svcs = table("", "v1", "services")?;
        services::repair(&self.store, svcs)
            .await
            .map_err(|e| ApiError::InternalError(format!("repairing service allocations: {e}")))?;
        let exists = self
            .store
            .get(&svcs.key(Some("default"), "kubernetes"))
            .await
            .map_err(|e| store_error(svcs, "kubernetes", e))?
            .is_some();
        if !exists {
            let mut svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": self.service_cidr.first().to_string(),
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]},
            });
            kinds::default(svcs.group, svcs.kind, &mut svc);
            prepare_create(svcs, &mut svc)?;
            let allocation =
                services::allocate(&self.store, svcs, self.service_cidr, None, &mut svc).await?;
            match self.ensure(svcs, svc).await {
                Ok(()) => allocation.commit(&self.store).await,
                Err(e) => {
                    allocation.revert(&self.store).await;
                    return Err(e);
                }
            }
        }
        let address = api_address.to_string();
        let eps = table("", "v1", "endpoints")?;
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": address}],
                         "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
        });
        self.ensure(eps, endpoints).await?;
        let slices = table("discovery.k8s.io", "v1", "endpointslices")?;
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": if api_address.is_ipv6() { "IPv6" } else { "IPv4" },
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
        });
        self.ensure(slices, slice).await
    }

    /// Creates `obj` (with create-time metadata) unless it exists.
    async fn ensure(&self, info: &ResourceInfo, mut obj: Value) -> Result<(), ApiError> {
        let name = meta::meta_str(&obj, "name").to_owned();
        let ns = meta::meta_str(&obj, "namespace").to_owned();
        let ns = (!ns.is_empty()).then_some(ns);
        if meta::meta_str(&obj, "uid").is_empty() {
            prepare_create(info, &mut obj)?;
        }
        match self
            .store
            .create(&info.key(ns.as_deref(), &name), to_bytes(&obj)?)
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(store_error(info, &name, e)),
        }
    }

    /// Serves one call.
    pub async fn serve(&self, call: Call<'_>) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let name = call.req.name.as_deref();
        match (call.req.verb, call.req.subresource.as_deref(), name) {
            ("get", None, Some(name)) => self.get(&call, name).await,
            ("list", None, _) => self.list(&call).await,
            ("watch", None, _) => watch::serve(&self.store, &call).await,
            ("create", None, None) => self.create(&call).await,
            ("update", None | Some("status"), Some(name)) => self.update(&call, name).await,
            ("patch", None | Some("status"), Some(name)) => self.patch(&call, name).await,
            ("get", Some("status"), Some(name)) => self.get(&call, name).await,
            ("delete", None, Some(name)) => {
                let deleted = self.delete(&call, name).await;
                if deleted.is_ok() && info.group.is_empty() && info.plural == "namespaces" {
                    self.note_namespace_deleted(name);
                }
                deleted
            }
            ("create", Some("binding"), Some(name)) if is_pods(info) => {
                self.bind(&call, name).await
            }
            ("get", Some("log"), Some(name)) if is_pods(info) => self.pod_log(&call, name).await,
            ("create", Some("eviction"), Some(name)) if is_pods(info) => {
                self.evict(&call, name).await
            }
            ("get" | "update" | "patch", Some("scale"), Some(name))
                if info.subresource("scale").is_some() =>
            {
                self.scale(&call, name).await
            }
            ("update", Some("finalize"), Some(name))
                if info.group.is_empty() && info.plural == "namespaces" =>
            {
                self.finalize(&call, name).await
            }
            ("deletecollection", None, None) => self.delete_collection(&call).await,
            // A subresource the resource does not have is not a path we serve.
            (_, Some(sub), _) if info.subresource(sub).is_none() => Ok(response::not_found_path()),
            (verb, sub, _) => Err(ApiError::MethodNotAllowed {
                group: info.group.to_owned(),
                resource: match sub {
                    Some(sub) => format!("{}/{sub}", info.plural),
                    None => info.plural.to_owned(),
                },
                action: verb.to_owned(),
            }),
        }
    }

    async fn get(&self, call: &Call<'_>, name: &str) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let ns = call.req.namespace.as_deref();
        let kv = self.current(info, &info.key(ns, name), name).await?;
        Ok(response::json(
            StatusCode::OK,
            &negotiate::object(info, call.output, decode(&kv)?),
        ))
    }

    async fn list(&self, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let (labels, fields) = selectors(info, call.query)?;
        let limit: u64 = match query_value(call.query, "limit") {
            Some(l) if !l.is_empty() => l
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?,
            _ => 0,
        };
        let prefix = info.prefix(call.req.namespace.as_deref());
        let token = query_value(call.query, "continue").filter(|t| !t.is_empty());
        let rv = query_value(call.query, "resourceVersion").unwrap_or_default();
        let rv_match = query_value(call.query, "resourceVersionMatch").unwrap_or_default();
        let exact = rv_match == "Exact";
        // As upstream's cacher: continuations, exact revisions and the legacy
        // "limit with a resourceVersion" go to the store; "0" takes the
        // cache as it is; unset waits for the cache to reach the store's
        // current revision (a consistent read); a revision waits for the
        // cache to reach it. A cache that does not get there in time leaves
        // the list to the store.
        let held = cache::holds(info);
        let from_cache = if token.is_some() || exact || !held {
            None
        } else {
            match rv.as_str() {
                "" => Some(None),
                "0" => Some(Some(0)),
                _ if limit > 0 && rv_match.is_empty() => None,
                rv => Some(Some(parse_rv(rv)?)),
            }
        };
        let mut cached = None;
        if let Some(token) = token.as_deref().filter(|_| held) {
            // A continued list is served from the cache while nothing has
            // been written since its first page (the same snapshot).
            let (rev, start) = decode_continue(token)?;
            let cache = self.store.cache().lock();
            if cache.revision() == rev {
                let after = format!("{prefix}{start}");
                cached = cache.list_after(info, &prefix, Some(&after), &labels, &fields, limit);
            }
        }
        if let Some(min_rev) = from_cache
            && self.store.wait_fresh(min_rev).await
        {
            cached = self
                .store
                .cache()
                .lock()
                .list(info, &prefix, &labels, &fields, limit);
        }
        // The common case, a plain JSON list, is written straight from the
        // stored bytes (the cache's shared objects, or the store's values
        // with their revision spliced in): no object is decoded whole.
        let plain_json = call.output == Output::Json
            && info.shares_storage_with.is_none()
            && info.kind != "Event";
        if plain_json {
            let (items, revision, continue_after, remaining) = match cached {
                Some(page) => (
                    page.items,
                    page.revision,
                    page.continue_after,
                    page.remaining,
                ),
                None => {
                    let item = |kv: &KeyValue| {
                        let obj = cache::object::CachedObject::from_store(
                            &kv.key,
                            &kv.value,
                            kv.mod_revision,
                        )
                        .ok_or_else(|| not_json(kv))?;
                        Ok(obj
                            .matches(info, &labels, &fields)
                            .then(|| std::sync::Arc::new(obj)))
                    };
                    self.list_from_store(call, &prefix, limit, (&labels, &fields), token, item)
                        .await?
                }
            };
            let metadata = list_metadata(&prefix, revision, continue_after.as_deref(), remaining);
            return Ok(response::json_bytes(
                StatusCode::OK,
                list_bytes(info, &metadata, &items)?,
            ));
        }
        let (items, revision, continue_after, remaining) = match cached {
            Some(page) => {
                let items: Vec<Value> = page.items.iter().map(|o| o.decode()).collect();
                (items, page.revision, page.continue_after, page.remaining)
            }
            None => {
                let item = |kv: &KeyValue| {
                    let obj = decode(kv)?;
                    Ok(matches(info, &labels, &fields, &obj).then_some(obj))
                };
                self.list_from_store(call, &prefix, limit, (&labels, &fields), token, item)
                    .await?
            }
        };
        let metadata = list_metadata(&prefix, revision, continue_after.as_deref(), remaining);
        let list = json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version(),
            "metadata": metadata,
            "items": items,
        });
        Ok(response::json(
            StatusCode::OK,
            &negotiate::list(info, call.output, list),
        ))
    }

    /// A list page read from the store: items, revision, the last key
    /// examined when more follow, and how many follow when known. `item`
    /// turns a stored value into a list item, or `None` when the
    /// selectors leave it out.
    async fn list_from_store<T>(
        &self,
        call: &Call<'_>,
        prefix: &str,
        limit: u64,
        (labels, fields): (&Selector, &FieldSelector),
        token: Option<String>,
        item: impl Fn(&KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<(Vec<T>, i64, Option<String>, Option<u64>), ApiError> {
        let mut opts = ListOptions::default();
        if let Some(token) = token {
            let (rev, start) = decode_continue(&token)?;
            opts.revision = rev;
            opts.continue_after = Some(format!("{prefix}{start}"));
        } else if let Some(rv) =
            query_value(call.query, "resourceVersion").filter(|v| !v.is_empty() && v != "0")
        {
            let exact = query_value(call.query, "resourceVersionMatch").as_deref() == Some("Exact");
            let rv = parse_rv(&rv)?;
            if exact {
                opts.revision = rv;
            }
        }
        let everything = labels.is_empty() && fields.is_empty();
        let mut items = Vec::new();
        let mut revision;
        let mut continue_after;
        let mut remaining;
        // Read pages until `limit` matching items are found (selectors may
        // filter many out), as upstream does.
        loop {
            let page_limit = if limit == 0 {
                0
            } else {
                (limit - items.len() as u64).max(limit)
            };
            opts.limit = page_limit;
            let page = self
                .store
                .list(prefix, opts.clone())
                .await
                .map_err(|e| list_error(e, call.query))?;
            revision = page.revision;
            continue_after = page.continue_after().map(str::to_owned);
            remaining = everything.then_some(page.remaining);
            let mut last_key = None;
            for kv in &page.kvs {
                last_key = Some(kv.key.clone());
                if let Some(obj) = item(kv)? {
                    items.push(obj);
                    if limit > 0 && items.len() as u64 >= limit {
                        break;
                    }
                }
            }
            if limit > 0 && items.len() as u64 >= limit {
                // Stopped early inside the page: continue after the last
                // examined key.
                let more =
                    page.more() || last_key.as_deref() != page.kvs.last().map(|kv| kv.key.as_str());
                continue_after = if more { last_key } else { None };
                break;
            }
            match &continue_after {
                Some(after) if limit > 0 => {
                    opts.revision = revision;
                    opts.continue_after = Some(after.clone());
                }
                _ => break,
            }
        }
        Ok((items, revision, continue_after, remaining))
    }

    async fn create(&self, call: &Call<'_>) -> Result<Response<Body>, ApiError> {
        let (obj, warnings) = decode_body(call)?;
        self.create_object(call, obj, warnings).await
    }

    /// Creates `obj` (a create body, or the result of an apply), answering
    /// with `warnings`.
    async fn create_object(
        &self,
        call: &Call<'_>,
        mut obj: Value,
        warnings: Vec<String>,
    ) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        meta::check_type(&mut obj, info)?;
        meta::check_namespace(&mut obj, call.req.namespace.as_deref())?;
        meta::generate_name(&mut obj)?;
        normalize_and_default(info, &mut obj)?;
        prepare_create(info, &mut obj)?;
        kinds::prepare_create(info.group, info.kind, &mut obj);
        persistent_volumes::prepare_create(info, &mut obj, &meta::now_rfc3339());
        self.admit_create(call, &mut obj).await?;
        validate(info, &obj, None, false)?;
        let managed = apply::track_create(call, &mut obj)?;
        let is_service = is_service(info);
        let name = meta::meta_str(&obj, "name").to_owned();
        let ns = call.req.namespace.as_deref();
        if let Some(ns) = ns {
            self.check_namespace_open(info, ns, &name).await?;
            self.admit_quota_create(info, ns, &obj, dry_run(call.query)?)
                .await?;
        }
        let respond =
            |obj: &Value| with_warnings(Ok(response::json(StatusCode::CREATED, obj)), &warnings);
        if dry_run(call.query)? {
            if let Some(list) = &managed {
                apply::put_managed_fields(&mut obj, list)?;
            }
            return respond(&obj);
        }
        let allocation = if is_service {
            services::allocate(&self.store, info, self.service_cidr, None, &mut obj).await?
        } else {
            services::Allocation::default()
        };
        // managedFields are written into the encoding rather than built as
        // a `Value` tree and encoded with the rest.
        let bytes = match apply::with_managed_fields(&mut obj, managed) {
            Ok(bytes) => bytes,
            Err(e) => {
                allocation.revert(&self.store).await;
                return Err(e);
            }
        };
        let key = info.key(ns, &name);
        // The watch cache takes the object as decoded here rather than
        // decoding what gets stored (in the shape stored, whichever API
        // wrote it); told before the write, so that the write's event
        // cannot come first.
        if cache::holds(info)
            && let Some(written) = cache::object::Written::new(&key, bytes.clone(), &obj)
        {
            self.store.cache().expect(&key, written);
        }
        let created = self
            .store
            .create(&key, bytes.clone())
            .await
            .map_err(|e| store_error(info, &name, e));
        let kv = match created {
            Ok(kv) => kv,
            Err(e) => {
                self.store.cache().unexpect(&key, &bytes);
                allocation.revert(&self.store).await;
                return Err(e);
            }
        };
        allocation.commit(&self.store).await;
        self.note_write(info, kv.mod_revision);
        // The stored bytes plus the revision: no second encoding.
        if let Some(json) = splice::with_resource_version(&bytes, kv.mod_revision) {
            return with_warnings(
                Ok(response::json_bytes(StatusCode::CREATED, json)),
                &warnings,
            );
        }
        // `obj` may lack the managedFields spliced into `bytes`.
        let mut obj: Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::InternalError(e.to_string()))?;
        set_rv(&mut obj, kv.mod_revision);
        respond(&obj)
    }

    /// The stored object at `key`, or 404 for `name`.
    async fn current(
        &self,
        info: &ResourceInfo,
        key: &str,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        match self.store.get(key).await {
            Ok(Some(kv)) => Ok(kv),
            Ok(None) => Err(ApiError::not_found(info, name)),
            Err(e) => Err(store_error(info, name, e)),
        }
    }

    /// Refuses creation in a missing or terminating namespace (upstream's
    /// NamespaceLifecycle admission).
    async fn check_namespace_open(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(nsinfo) = resources::by_gvr("", "v1", "namespaces") else {
            return Ok(());
        };
        // From the watch cache, as upstream's admission reads its informer;
        // a namespace the cache has not seen yet, or one deleted lately, is
        // looked up in the store.
        let key = nsinfo.key(None, ns);
        let cached = if self.recently_deleted_namespace(ns) {
            None
        } else {
            self.store.cache().lock().get(&key)
        };
        let found = match cached {
            Some(obj) => Ok(Some(obj.json.clone())),
            None => match self.store.get(&key).await {
                Ok(Some(kv)) => Ok(Some(kv.value)),
                Ok(None) => Ok(None),
                Err(e) => Err(store_error(nsinfo, ns, e)),
            },
        };
        let Some(json) = found? else {
            return Err(ApiError::not_found(nsinfo, ns));
        };
        // Only whether it is being deleted matters: decode no more. A null
        // reads as absent, as it did from a `Value`.
        #[derive(serde::Deserialize)]
        struct Namespace {
            #[serde(default)]
            metadata: Option<Metadata>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata {
            #[serde(default)]
            deletion_timestamp: Option<serde::de::IgnoredAny>,
        }
        let namespace: Namespace = serde_json::from_slice(&json).map_err(|e| {
            ApiError::InternalError(format!("stored namespace {ns} is not valid: {e}"))
        })?;
        if namespace
            .metadata
            .is_some_and(|m| m.deletion_timestamp.is_some())
        {
            return Err(ApiError::Forbidden {
                group: info.group.to_owned(),
                resource: info.plural.to_owned(),
                name: name.to_owned(),
                reason: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            });
        }
        Ok(())
    }

    async fn update(&self, call: &Call<'_>, name: &str) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let (mut obj, warnings) = decode_body(call)?;
        check_replacement(info, call, name, &mut obj)?;
        self.guaranteed_update(call, name, |_| Ok((obj.clone(), warnings.clone())))
            .await
    }

    async fn patch(&self, call: &Call<'_>, name: &str) -> Result<Response<Body>, ApiError> {
        let info = call.info;
        let patch_type = call
            .patch_type
            .ok_or_else(|| ApiError::UnsupportedMediaType {
                accepted: PatchType::ALL
                    .iter()
                    .map(|t| t.content_type().to_owned())
                    .collect(),
            })?;
        apply::manager(call)?;
        if patch_type == PatchType::Apply {
            return apply::serve(self, call, name).await;
        }
        let schema = PatchSchema::for_kind(info.group, info.version, info.kind);
        let mode = field_validation::FieldValidation::from_query(call.query)?;
        let duplicates = match patch_type {
            PatchType::Merge | PatchType::StrategicMerge => body::duplicate_fields(&call.body),
            _ => Vec::new(),
        };
        self.guaranteed_update(call, name, |old| {
            let mut patched = patch::apply_any(patch_type, old, &call.body, schema.as_ref())
                .map_err(patch_error)?;
            let warnings = field_validation::check(info, &patched, &duplicates, mode)?;
            check_replacement(info, call, name, &mut patched)?;
            Ok((patched, warnings))
        })
        .await
    }

    /// Upstream's GuaranteedUpdate: reads the object, asks `desired` for its
    /// replacement (and warnings), applies the update rules and writes it
    /// with compare-and-swap, retrying on conflicts unless the replacement
    /// names a resourceVersion (then a conflict is the client's 409).
    async fn guaranteed_update<F>(
        &self,
        call: &Call<'_>,
        name: &str,
        desired: F,
    ) -> Result<Response<Body>, ApiError>
    where
        F: FnMut(&Value) -> Result<(Value, Vec<String>), ApiError>,
    {
        let (obj, warnings) = self.guaranteed_update_value(call, name, desired).await?;
        with_warnings(Ok(response::json(StatusCode::OK, &obj)), &warnings)
    }

    /// [`Registry::guaranteed_update`] returning the stored object (the old
    /// one when nothing changed, the would-be one under dryRun).
    async fn guaranteed_update_value<F>(
        &self,
        call: &Call<'_>,
        name: &str,
        mut desired: F,
    ) -> Result<(Value, Vec<String>), ApiError>
    where
        F: FnMut(&Value) -> Result<(Value, Vec<String>), ApiError>,
    {
        let info = call.info;
        let status_only = call.req.subresource.as_deref() == Some("status");
        let key = info.key(call.req.namespace.as_deref(), name);
        for _ in 0..MAX_RETRIES {
            let current = self.current(info, &key, name).await?;
            let old = negotiate::view(info, decode(&current)?);
            let (mut obj, warnings) = desired(&old)?;
            normalize_and_default(info, &mut obj)?;
            let wanted_rv = meta::meta_str(&obj, "resourceVersion").to_owned();
            if !wanted_rv.is_empty() && wanted_rv != current.mod_revision.to_string() {
                return Err(ApiError::conflict_modified(info, name));
            }
            let sent = apply::sent_managed_fields(&obj);
            let new = prepare_update(info, &old, obj, status_only)?;
            let new = apply::track_update(call, &old, sent, new)?;
            if !status_only {
                self.admit_update(info, &new, &old).await?;
            }
            if same_object(&old, &new) {
                return Ok((old, warnings));
            }
            if dry_run(call.query)? {
                return Ok((new, warnings));
            }
            let (new, allocation) = self.allocate_update(info, &old, new, status_only).await?;
            let deleting = ready_to_delete(&new);
            let written = self
                .write_update(info, &key, name, new, current.mod_revision)
                .await;
            if written.is_ok() && !deleting {
                allocation.commit(&self.store).await;
            } else {
                allocation.revert(&self.store).await;
            }
            match written {
                Ok(obj) => {
                    if deleting && is_service(info) {
                        services::release_all(&self.store, &old).await;
                    }
                    return Ok((obj, warnings));
                }
                // Re-read and redo: a precondition the request itself set
                // (a PUT body's or a patch's resourceVersion) now fails the
                // check above; one a patch inherited from the object it was
                // applied to is the new one's (as upstream's
                // GuaranteedUpdate re-applies a patch to the fresh object).
                Err(Retry::Conflict) => {
                    // Let the writer that won finish before reading again.
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(ApiError::conflict_modified(info, name))
    }

    /// A Service update's allocations (claimed now, the old ones released
    /// once the write is stored); nothing for other kinds and for status.
    async fn allocate_update(
        &self,
        info: &ResourceInfo,
        old: &Value,
        mut new: Value,
        status_only: bool,
    ) -> Result<(Value, services::Allocation), ApiError> {
        if !is_service(info) || status_only {
            return Ok((new, services::Allocation::default()));
        }
        let allocation =
            services::allocate(&self.store, info, self.service_cidr, Some(old), &mut new).await?;
        Ok((new, allocation))
    }

    /// Writes an updated object; an object marked for deletion whose last
    /// finalizer is gone is deleted instead.
    async fn write_update(
        &self,
        info: &ResourceInfo,
        key: &str,
        name: &str,
        mut new: Value,
        rev: i64,
    ) -> Result<Value, Retry> {
        if ready_to_delete(&new) {
            return match self.store.delete(key, rev).await {
                Ok(d) => {
                    self.note_write(info, d.revision);
                    set_rv(&mut new, d.revision);
                    Ok(new)
                }
                Err(StoreError::Conflict { .. }) => Err(Retry::Conflict),
                Err(e) => Err(Retry::Fail(store_error(info, name, e))),
            };
        }
        let bytes = to_bytes(&new).map_err(Retry::Fail)?;
        let rev = self.write_bytes(info, key, name, bytes, rev).await?;
        set_rv(&mut new, rev);
        Ok(new)
    }

    /// Stores `bytes` (an object's stored form) at `key` if it is still at
    /// revision `rev`; returns the new revision.
    async fn write_bytes(
        &self,
        info: &ResourceInfo,
        key: &str,
        name: &str,
        bytes: Bytes,
        rev: i64,
    ) -> Result<i64, Retry> {
        match self.store.update(key, bytes, rev).await {
            Ok(kv) => {
                self.note_write(info, kv.mod_revision);
                Ok(kv.mod_revision)
            }
            Err(StoreError::Conflict { .. }) => Err(Retry::Conflict),
            Err(e) => Err(Retry::Fail(store_error(info, name, e))),
        }
    }
}

enum Retry {
    Conflict,
    Fail(ApiError),
}

/// The checks every replacement object (a PUT body or a patch result)
/// passes before the update rules: type, namespace, the URL's name.
fn check_replacement(
    info: &ResourceInfo,
    call: &Call<'_>,
    name: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    meta::check_type(obj, info)?;
    meta::check_namespace(obj, call.req.namespace.as_deref())?;
    let given = meta::meta_str(obj, "name");
    if given != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// A create or update body as a JSON object, with its duplicate- and
/// unknown-field warnings (an error under `fieldValidation=Strict`).
fn decode_body(call: &Call<'_>) -> Result<(Value, Vec<String>), ApiError> {
    let mode = field_validation::FieldValidation::from_query(call.query)?;
    let decoded = body::decode_object(&call.body, call.format)?;
    let warnings = field_validation::check(call.info, &decoded.value, &decoded.duplicates, mode)?;
    Ok((decoded.value, warnings))
}

/// Decode-time normalisation and defaulting of the kind (400 for values
/// that cannot be decoded, such as malformed quantities).
fn normalize_and_default(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    kinds::normalize(info.group, info.kind, obj).map_err(|e| {
        ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
            kind = info.kind,
            version = info.version,
        ))
    })?;
    kinds::default(info.group, info.kind, obj);
    Ok(())
}

/// The common metadata rules and the kind's own validation (of a create
/// when `old` is `None`, else of an update of the main resource or of its
/// status), as one 422.
fn validate(
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    status_only: bool,
) -> Result<(), ApiError> {
    let mut errors = meta::validate_errors(obj, info);
    errors.extend(match old {
        None => kinds::validate(info.group, info.kind, obj),
        Some(old) if status_only => kinds::validate_status_update(info.group, info.kind, obj, old),
        Some(old) => kinds::validate_update(info.group, info.kind, obj, old),
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info, meta::meta_str(obj, "name"), errors))
    }
}

fn with_warnings(
    resp: Result<Response<Body>, ApiError>,
    warnings: &[String],
) -> Result<Response<Body>, ApiError> {
    resp.map(|mut r| {
        field_validation::add_warnings(&mut r, warnings);
        r
    })
}

fn patch_error(e: PatchError) -> ApiError {
    match e.code() {
        400 => ApiError::BadRequest(e.status_message()),
        413 => ApiError::RequestEntityTooLarge(e.to_string()),
        415 => ApiError::UnsupportedMediaType {
            accepted: [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge]
                .iter()
                .map(|t| t.content_type().to_owned())
                .collect(),
        },
        _ => ApiError::Unprocessable(e.status_message()),
    }
}

/// Create-time defaults every object gets, plus the few per-kind ones this
/// layer owns (namespace finalizer and phase, the namespace name label).
fn prepare_create(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let tracks = meta::tracks_generation(info);
    let m = meta::meta_mut(obj)?;
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    m.remove("resourceVersion");
    m.insert("uid".into(), Value::String(meta::new_uid()));
    m.insert(
        "creationTimestamp".into(),
        Value::String(meta::now_rfc3339()),
    );
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if tracks {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if info.group.is_empty() && info.plural == "namespaces" {
        let name = meta::meta_str(obj, "name").to_owned();
        set_namespace_label(obj, &name)?;
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        obj["status"] = json!({"phase": "Active"});
    }
    Ok(())
}

/// The label upstream puts on every namespace: `kubernetes.io/metadata.name`.
fn set_namespace_label(obj: &mut Value, name: &str) -> Result<(), ApiError> {
    let m = meta::meta_mut(obj)?;
    let labels = m.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["kubernetes.io/metadata.name"] = Value::String(name.to_owned());
    Ok(())
}

/// Update-time rules: immutable metadata from the old object, status from
/// the old object on the main resource (from the new on `/status`),
/// generation bumped when the spec changes.
fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    status_only: bool,
) -> Result<Value, ApiError> {
    if status_only {
        // The old object with the new status: every member but the old
        // status copied (it would be replaced at once), the new one moved.
        let status = new
            .as_object_mut()
            .and_then(|m| m.remove("status"))
            .unwrap_or(Value::Null);
        let mut merged: serde_json::Map<String, Value> = old
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != "status")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        merged.insert("status".into(), status);
        new = Value::Object(merged);
    } else if info.subresource("status").is_some() {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    let old_meta = old.get("metadata").unwrap_or(&Value::Null);
    let given_uid = meta::meta_str(&new, "uid").to_owned();
    let old_uid = meta::meta_str(old, "uid");
    if !given_uid.is_empty() && given_uid != old_uid {
        return Err(ApiError::Conflict {
            group: info.group.to_owned(),
            resource: info.plural.to_owned(),
            name: meta::meta_str(old, "name").to_owned(),
            reason: format!(
                "Precondition failed: UID in precondition: {given_uid}, UID in object meta: {old_uid}"
            ),
        });
    }
    let spec_changed = old.get("spec") != new.get("spec");
    let m = meta::meta_mut(&mut new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                m.insert(field.into(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
    m.remove("resourceVersion");
    if meta::tracks_generation(info) && spec_changed && !status_only {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        m.insert("generation".into(), json!(generation + 1));
    }
    if is_service(info) && !status_only {
        services::patch_allocated_values(old, &mut new);
        kinds::default(info.group, info.kind, &mut new);
    }
    if info.group.is_empty() && info.plural == "namespaces" {
        let name = meta::meta_str(&new, "name").to_owned();
        set_namespace_label(&mut new, &name)?;
        // Only the finalize subresource changes a namespace's finalizers.
        match old.pointer("/spec/finalizers") {
            Some(f) => new["spec"]["finalizers"] = f.clone(),
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if status_only {
        persistent_volumes::prepare_status_update(info, old, &mut new, &meta::now_rfc3339());
    } else {
        kinds::prepare_update(info.group, info.kind, &mut new, old);
    }
    validate(info, &new, Some(old), status_only)?;
    Ok(new)
}

fn is_pods(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "pods"
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "services"
}

fn same_object(old: &Value, new: &Value) -> bool {
    let mut a = old.clone();
    strip_rv(&mut a);
    a == *new
}

/// An update that leaves an object marked for deletion without finalizers
/// (and past its grace period) deletes it.
fn ready_to_delete(obj: &Value) -> bool {
    !meta::meta_str(obj, "deletionTimestamp").is_empty()
        && !delete::has_finalizers(obj)
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
}

/// Label and field selectors of a list, watch or deletecollection.
pub(crate) fn selectors(
    info: &ResourceInfo,
    query: Option<&str>,
) -> Result<(Selector, FieldSelector), ApiError> {
    let labels = match query_value(query, "labelSelector") {
        Some(s) if !s.is_empty() => selector::labels::parse(&s)?,
        _ => Selector::everything(),
    };
    let fields = match query_value(query, "fieldSelector") {
        Some(s) if !s.is_empty() => selector::fields::parse(&s)?.for_resource(info)?,
        _ => FieldSelector::everything(),
    };
    Ok((labels, fields))
}

pub(crate) fn matches(
    info: &ResourceInfo,
    labels: &Selector,
    fields: &FieldSelector,
    obj: &Value,
) -> bool {
    if labels.is_empty() && fields.is_empty() {
        return true;
    }
    if info.kind == "Event" {
        // Selectors name the fields of the API asked, whatever the stored shape.
        let obj = negotiate::view(info, obj.clone());
        return (labels.is_empty() || labels.matches_object(&obj))
            && (fields.is_empty() || fields.matches(&selector::selectable_fields(info, &obj)));
    }
    (labels.is_empty() || labels.matches_object(obj))
        && (fields.is_empty() || fields.matches(&selector::selectable_fields(info, obj)))
}

fn dry_run(query: Option<&str>) -> Result<bool, ApiError> {
    match query_value(query, "dryRun").as_deref() {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid dryRun value: {other:?}; allowed values: [\"All\"]"
        ))),
    }
}

pub(crate) fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// The `metadata` of a list at `revision`, with a continue token when more
/// items follow `continue_after`.
fn list_metadata(
    prefix: &str,
    revision: i64,
    continue_after: Option<&str>,
    remaining: Option<u64>,
) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(after) = continue_after {
        let start = after.strip_prefix(prefix).unwrap_or(after);
        metadata["continue"] = Value::String(encode_continue(revision, start));
        if let Some(remaining) = remaining {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    metadata
}

/// A list document written from the cached objects' JSON, field by field as
/// `json!({"kind", "apiVersion", "metadata", "items"})` would be.
fn list_bytes(
    info: &ResourceInfo,
    metadata: &Value,
    items: &[std::sync::Arc<cache::object::CachedObject>],
) -> Result<Vec<u8>, ApiError> {
    let err = |e: serde_json::Error| ApiError::InternalError(e.to_string());
    let size: usize = items.iter().map(|o| o.json.len() + 1).sum();
    let mut buf = Vec::with_capacity(256 + size);
    buf.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut buf, &info.api_version()).map_err(err)?;
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&item.json);
    }
    buf.extend_from_slice(b"],\"kind\":");
    serde_json::to_writer(&mut buf, info.list_kind).map_err(err)?;
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, metadata).map_err(err)?;
    buf.push(b'}');
    Ok(buf)
}

fn encode_continue(rev: i64, start: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    use base64::Engine;
    let invalid = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    let rev = v
        .get("rv")
        .and_then(Value::as_i64)
        .filter(|r| *r > 0)
        .ok_or_else(invalid)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(invalid)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(invalid());
    }
    Ok((rev, start.to_owned()))
}

fn list_error(e: StoreError, query: Option<&str>) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => {
            if query_value(query, "continue").is_some_and(|c| !c.is_empty()) {
                ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                )
            } else {
                ApiError::too_old_resource_version(requested.max(0) as u64, compacted.max(0) as u64)
            }
        }
        StoreError::FutureRevision { requested, .. } => ApiError::Timeout {
            message: format!("Too large resource version: {requested}"),
            retry_after_seconds: 1,
        },
        other => ApiError::InternalError(other.to_string()),
    }
}

/// Maps a store error on object `name` of `info`.
pub(crate) fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(info, name),
        StoreError::NotFound { .. } => ApiError::not_found(info, name),
        StoreError::Conflict { .. } => ApiError::conflict_modified(info, name),
        StoreError::ValueTooLarge { .. } => {
            ApiError::RequestEntityTooLarge("limit is 3145728".into())
        }
        StoreError::Unavailable(msg) => ApiError::ServiceUnavailable(msg),
        other => ApiError::InternalError(other.to_string()),
    }
}

/// A stored object with its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::InternalError(format!("stored object {} is not JSON: {e}", kv.key))
    })?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The error for a stored value that is not a JSON object.
fn not_json(kv: &KeyValue) -> ApiError {
    ApiError::InternalError(format!("stored object {} is not a JSON object", kv.key))
}

pub(crate) fn set_rv(obj: &mut Value, rev: i64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

fn strip_rv(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// The stored form of `obj`: its JSON without resourceVersion (the
/// store's revision is the version).
fn to_bytes(obj: &Value) -> Result<Bytes, ApiError> {
    let encode = |obj: &Value| {
        serde_json::to_vec(obj)
            .map(Bytes::from)
            .map_err(|e| ApiError::InternalError(e.to_string()))
    };
    let rv = obj.get("metadata").and_then(|m| m.get("resourceVersion"));
    if rv.is_none() {
        return encode(obj);
    }
    let mut obj = obj.clone();
    strip_rv(&mut obj);
    encode(&obj)
}

/// An error as the `metav1.Status` response clients expect.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let status = err.status();
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let value = serde_json::to_value(&status).unwrap_or_default();
    let mut resp = response::json(code, &value);
    if let Some(secs) = err.retry_after_seconds()
        && let Ok(v) = http::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "default/web-1");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "default/web-1".to_owned())
        );
        for bad in [
            "",
            "!!!",
            "e30=",
            &encode_continue(0, "x"),
            &encode_continue(5, "../etc"),
        ] {
            assert!(
                matches!(decode_continue(bad), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn updates_keep_immutable_metadata_and_bump_generation() {
        let deploy = resources::by_gvr("apps", "v1", "deployments").unwrap();
        let spec = |replicas: i64| {
            json!({"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                   "template": {"metadata": {"labels": {"app": "d"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}})
        };
        let defaulted = |mut obj: Value| {
            normalize_and_default(deploy, &mut obj).unwrap();
            obj
        };
        let old = defaulted(
            json!({"metadata": {"name": "d", "uid": "u1", "creationTimestamp": "t", "generation": 3, "resourceVersion": "9"},
                         "spec": spec(1), "status": {"replicas": 1}}),
        );
        let new = defaulted(
            json!({"metadata": {"name": "d", "creationTimestamp": "other"}, "spec": spec(2), "status": {"replicas": 7}}),
        );
        let out = prepare_update(deploy, &old, new, false).unwrap();
        assert_eq!(out["metadata"]["uid"], "u1");
        assert_eq!(out["metadata"]["creationTimestamp"], "t");
        assert_eq!(out["metadata"]["generation"], 4);
        assert_eq!(
            out["status"]["replicas"], 1,
            "status is ignored on the main resource"
        );
        let status = defaulted(
            json!({"metadata": {"name": "d"}, "spec": spec(9), "status": {"replicas": 7}}),
        );
        let out = prepare_update(deploy, &old, status, true).unwrap();
        assert_eq!(out["spec"]["replicas"], 1, "spec is ignored on /status");
        assert_eq!(out["status"]["replicas"], 7);
        assert_eq!(out["metadata"]["generation"], 3);
        let wrong_uid = json!({"metadata": {"name": "d", "uid": "u2"}});
        assert!(matches!(
            prepare_update(deploy, &old, wrong_uid, false),
            Err(ApiError::Conflict { .. })
        ));
    }
}
