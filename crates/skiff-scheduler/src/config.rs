//! `KubeSchedulerConfiguration` (kubescheduler.config.k8s.io/v1): the subset
//! Skiff honours, decoded strictly (an unknown field is an error naming its
//! path), defaulted and merged with upstream's default plugin set as
//! `pkg/scheduler/apis/config/v1` does, and validated with upstream's field
//! error messages.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde_json::{Map, Value};

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The configuration's apiVersion.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";

/// Upstream v1.33's default plugins, all enabled through `multiPoint`
/// (`default_plugins.go`), with their score weights.
pub const DEFAULT_MULTI_POINT: &[(&str, Option<i32>)] = &[
    ("SchedulingGates", None),
    ("PrioritySort", None),
    ("NodeUnschedulable", None),
    ("NodeName", None),
    ("TaintToleration", Some(3)),
    ("NodeAffinity", Some(2)),
    ("NodePorts", None),
    ("NodeResourcesFit", Some(1)),
    ("VolumeRestrictions", None),
    ("NodeVolumeLimits", None),
    ("VolumeBinding", None),
    ("VolumeZone", None),
    ("PodTopologySpread", Some(2)),
    ("InterPodAffinity", Some(2)),
    ("DefaultPreemption", None),
    ("NodeResourcesBalancedAllocation", Some(1)),
    ("ImageLocality", Some(1)),
    ("DefaultBinder", None),
];

/// The extension points a profile configures, in upstream's order, by
/// their configuration key.
pub const EXTENSION_POINTS: &[&str] = &[
    "preEnqueue",
    "queueSort",
    "preFilter",
    "filter",
    "postFilter",
    "preScore",
    "score",
    "reserve",
    "permit",
    "preBind",
    "bind",
    "postBind",
];

/// A configuration error, formatted as upstream's `field.Error`
/// (`path: Invalid value: "x": detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(path: &str, value: &Value, detail: &str) -> ConfigError {
    ConfigError(format!("{path}: Invalid value: {value}: {detail}"))
}

/// `{name, weight}` in a plugin set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    /// The plugin's registered name (`*` in `disabled`: all).
    pub name: String,
    /// Score weight (0 or unset: 1).
    pub weight: Option<i32>,
}

/// `enabled` / `disabled` of one extension point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSet {
    /// Enabled plugins, in order.
    pub enabled: Vec<PluginRef>,
    /// Disabled plugins.
    pub disabled: Vec<PluginRef>,
}

impl PluginSet {
    /// True when `name` (or `*`) is disabled.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled
            .iter()
            .any(|p| p.name == name || p.name == "*")
    }
}

/// One scheduling profile, after defaulting and merging.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `schedulerName`.
    pub scheduler_name: String,
    /// The profile's `percentageOfNodesToScore` (overrides the global).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugin sets by extension point key (see [`EXTENSION_POINTS`]).
    pub points: Vec<(&'static str, PluginSet)>,
    /// `multiPoint`, merged with the defaults.
    pub multi_point: PluginSet,
    /// `pluginConfig`: args by plugin name.
    pub plugin_config: Vec<(String, Value)>,
}

impl Profile {
    /// The plugin set for extension point `key`.
    pub fn point(&self, key: &str) -> Option<&PluginSet> {
        self.points.iter().find(|(k, _)| *k == key).map(|(_, s)| s)
    }

    /// The args configured for `plugin`.
    pub fn args(&self, plugin: &str) -> Option<&Value> {
        self.plugin_config
            .iter()
            .find(|(n, _)| n == plugin)
            .map(|(_, v)| v)
    }

    /// A profile named `name` with upstream's defaults.
    pub fn default_named(name: &str) -> Profile {
        Profile {
            scheduler_name: name.to_owned(),
            percentage_of_nodes_to_score: None,
            points: EXTENSION_POINTS
                .iter()
                .map(|k| (*k, PluginSet::default()))
                .collect(),
            multi_point: merge_plugin_set(&default_multi_point(), &PluginSet::default()),
            plugin_config: Vec::new(),
        }
    }
}

/// `leaderElection`, the part Skiff uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElection {
    /// `leaderElect` (default true).
    pub leader_elect: bool,
    /// `resourceNamespace` (default kube-system).
    pub resource_namespace: String,
    /// `resourceName` (default kube-scheduler).
    pub resource_name: String,
}

/// The decoded, defaulted configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeSchedulerConfiguration {
    /// `parallelism` (default 16).
    pub parallelism: usize,
    /// `percentageOfNodesToScore` (0 or unset: adaptive).
    pub percentage_of_nodes_to_score: Option<i32>,
    /// `podInitialBackoffSeconds` (default 1).
    pub pod_initial_backoff_seconds: u64,
    /// `podMaxBackoffSeconds` (default 10).
    pub pod_max_backoff_seconds: u64,
    /// `leaderElection`.
    pub leader_election: LeaderElection,
    /// The profiles.
    pub profiles: Vec<Profile>,
}

impl Default for KubeSchedulerConfiguration {
    fn default() -> Self {
        KubeSchedulerConfiguration {
            parallelism: 16,
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: 1,
            pod_max_backoff_seconds: 10,
            leader_election: LeaderElection {
                leader_elect: true,
                resource_namespace: "kube-system".into(),
                resource_name: "kube-scheduler".into(),
            },
            profiles: vec![Profile::default_named(DEFAULT_SCHEDULER_NAME)],
        }
    }
}

fn default_multi_point() -> PluginSet {
    PluginSet {
        enabled: DEFAULT_MULTI_POINT
            .iter()
            .map(|(n, w)| PluginRef {
                name: (*n).to_owned(),
                weight: *w,
            })
            .collect(),
        disabled: Vec::new(),
    }
}

/// Upstream's `mergePluginSet`: defaults minus the disabled ones (all with
/// `*`), a custom entry replacing the default of the same name in place,
/// other custom entries appended.
pub fn merge_plugin_set(defaults: &PluginSet, custom: &PluginSet) -> PluginSet {
    let mut disabled: Vec<PluginRef> = custom.disabled.clone();
    disabled.extend(defaults.disabled.iter().cloned());
    let off: HashSet<&str> = disabled.iter().map(|p| p.name.as_str()).collect();
    let mut replaced = HashSet::new();
    let mut enabled = Vec::new();
    if !off.contains("*") {
        for d in &defaults.enabled {
            if off.contains(d.name.as_str()) {
                continue;
            }
            match custom.enabled.iter().position(|c| c.name == d.name) {
                Some(i) => {
                    replaced.insert(i);
                    enabled.push(custom.enabled[i].clone());
                }
                None => enabled.push(d.clone()),
            }
        }
    }
    for (i, c) in custom.enabled.iter().enumerate() {
        if !replaced.contains(&i) {
            enabled.push(c.clone());
        }
    }
    PluginSet { enabled, disabled }
}

/// Where a decoded field sits, for error messages.
struct Path(String);

impl Path {
    fn child(&self, k: &str) -> Path {
        if self.0.is_empty() {
            Path(k.to_owned())
        } else {
            Path(format!("{}.{k}", self.0))
        }
    }
    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn object<'a>(
    v: &'a Value,
    path: &Path,
    known: &[&str],
) -> Result<&'a Map<String, Value>, ConfigError> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    let m = match v {
        Value::Object(m) => m,
        // `plugins:` with nothing after it is YAML null: the same as absent.
        Value::Null => &EMPTY,
        _ => return Err(invalid(&path.0, v, "must be an object")),
    };
    for k in m.keys() {
        if !known.contains(&k.as_str()) {
            return Err(ConfigError(format!(
                "strict decoding error: unknown field \"{}\"",
                path.child(k)
            )));
        }
    }
    Ok(m)
}

fn opt_i64(m: &Map<String, Value>, k: &str, path: &Path) -> Result<Option<i64>, ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(&path.child(k).0, v, "must be an integer")),
    }
}

fn opt_str(m: &Map<String, Value>, k: &str, path: &Path) -> Result<Option<String>, ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(invalid(&path.child(k).0, v, "must be a string")),
    }
}

fn array<'a>(m: &'a Map<String, Value>, k: &str, path: &Path) -> Result<&'a [Value], ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(invalid(&path.child(k).0, v, "must be a list")),
    }
}

fn percentage(v: Option<i64>, path: &Path) -> Result<Option<i32>, ConfigError> {
    match v {
        None => Ok(None),
        Some(p) if (0..=100).contains(&p) => Ok(Some(p as i32)),
        Some(p) => Err(invalid(
            &path.0,
            &Value::from(p),
            "not in valid range [0-100]",
        )),
    }
}

impl KubeSchedulerConfiguration {
    /// Decodes YAML (or JSON) text, defaults and validates it against the
    /// registered plugin names.
    pub fn parse(text: &str, registered: &BTreeSet<&str>) -> Result<Self, ConfigError> {
        let value: Value = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError(format!("decoding scheduler configuration: {e}")))?;
        Self::from_value(&value, registered)
    }

    /// As [`parse`](Self::parse), from an already decoded document.
    pub fn from_value(v: &Value, registered: &BTreeSet<&str>) -> Result<Self, ConfigError> {
        let root = Path(String::new());
        let m = object(
            v,
            &root,
            &[
                "apiVersion",
                "kind",
                "parallelism",
                "leaderElection",
                "clientConnection",
                "healthzBindAddress",
                "metricsBindAddress",
                "enableProfiling",
                "enableContentionProfiling",
                "percentageOfNodesToScore",
                "podInitialBackoffSeconds",
                "podMaxBackoffSeconds",
                "profiles",
                "extenders",
                "delayCacheUntilActive",
            ],
        )?;
        match m.get("apiVersion").and_then(Value::as_str) {
            Some(API_VERSION) => {}
            other => {
                return Err(ConfigError(format!(
                    "apiVersion: Unsupported value: {:?}: supported values: \"{API_VERSION}\"",
                    other.unwrap_or("")
                )));
            }
        }
        if m.get("kind").and_then(Value::as_str) != Some("KubeSchedulerConfiguration") {
            return Err(ConfigError(format!(
                "kind: Unsupported value: {}: supported values: \"KubeSchedulerConfiguration\"",
                m.get("kind").unwrap_or(&Value::Null)
            )));
        }
        let mut cfg = KubeSchedulerConfiguration::default();
        if let Some(p) = opt_i64(m, "parallelism", &root)? {
            if p <= 0 {
                return Err(invalid(
                    "parallelism",
                    &Value::from(p),
                    "should be greater than 0",
                ));
            }
            cfg.parallelism = usize::try_from(p).unwrap_or(16);
        }
        cfg.percentage_of_nodes_to_score = percentage(
            opt_i64(m, "percentageOfNodesToScore", &root)?,
            &root.child("percentageOfNodesToScore"),
        )?;
        if let Some(s) = opt_i64(m, "podInitialBackoffSeconds", &root)? {
            if s <= 0 {
                return Err(invalid(
                    "podInitialBackoffSeconds",
                    &Value::from(s),
                    "must be greater than 0",
                ));
            }
            cfg.pod_initial_backoff_seconds = s as u64;
        }
        if let Some(s) = opt_i64(m, "podMaxBackoffSeconds", &root)? {
            if s < cfg.pod_initial_backoff_seconds as i64 {
                return Err(invalid(
                    "podMaxBackoffSeconds",
                    &Value::from(s),
                    "must be greater than or equal to PodInitialBackoffSeconds",
                ));
            }
            cfg.pod_max_backoff_seconds = s as u64;
        }
        if !array(m, "extenders", &root)?.is_empty() {
            return Err(ConfigError(
                "extenders: Unsupported value: extenders are not supported".into(),
            ));
        }
        if let Some(le) = m.get("leaderElection") {
            let p = root.child("leaderElection");
            let lm = object(
                le,
                &p,
                &[
                    "leaderElect",
                    "leaseDuration",
                    "renewDeadline",
                    "retryPeriod",
                    "resourceLock",
                    "resourceName",
                    "resourceNamespace",
                ],
            )?;
            if let Some(b) = lm.get("leaderElect") {
                cfg.leader_election.leader_elect = b
                    .as_bool()
                    .ok_or_else(|| invalid(&p.child("leaderElect").0, b, "must be a boolean"))?;
            }
            if let Some(n) = opt_str(lm, "resourceName", &p)? {
                cfg.leader_election.resource_name = n;
            }
            if let Some(n) = opt_str(lm, "resourceNamespace", &p)? {
                cfg.leader_election.resource_namespace = n;
            }
        }
        let profiles = array(m, "profiles", &root)?;
        if !profiles.is_empty() {
            let p = root.child("profiles");
            let single = profiles.len() == 1;
            cfg.profiles = profiles
                .iter()
                .enumerate()
                .map(|(i, v)| parse_profile(v, &p.index(i), single, registered))
                .collect::<Result<_, _>>()?;
            let mut seen = HashSet::new();
            for (i, prof) in cfg.profiles.iter().enumerate() {
                if !seen.insert(prof.scheduler_name.clone()) {
                    return Err(ConfigError(format!(
                        "profiles[{i}].schedulerName: Duplicate value: {:?}",
                        prof.scheduler_name
                    )));
                }
            }
            validate_common_queue_sort(&cfg.profiles)?;
        }
        Ok(cfg)
    }
}

fn validate_common_queue_sort(profiles: &[Profile]) -> Result<(), ConfigError> {
    let canon = profiles.first().and_then(|p| p.point("queueSort"));
    for (i, p) in profiles.iter().enumerate().skip(1) {
        if p.point("queueSort") != canon {
            return Err(ConfigError(format!(
                "profiles[{i}].plugins.queueSort: Invalid value: has to match for all profiles"
            )));
        }
    }
    Ok(())
}

fn parse_profile(
    v: &Value,
    path: &Path,
    single: bool,
    registered: &BTreeSet<&str>,
) -> Result<Profile, ConfigError> {
    let m = object(
        v,
        path,
        &[
            "schedulerName",
            "percentageOfNodesToScore",
            "plugins",
            "pluginConfig",
        ],
    )?;
    let name = match opt_str(m, "schedulerName", path)? {
        Some(n) if !n.is_empty() => n,
        None if single => DEFAULT_SCHEDULER_NAME.to_owned(),
        _ => {
            return Err(ConfigError(format!(
                "{}: Required value",
                path.child("schedulerName")
            )));
        }
    };
    let mut prof = Profile::default_named(&name);
    prof.percentage_of_nodes_to_score = percentage(
        opt_i64(m, "percentageOfNodesToScore", path)?,
        &path.child("percentageOfNodesToScore"),
    )?;
    if let Some(pv) = m.get("plugins") {
        let pp = path.child("plugins");
        let mut keys: Vec<&str> = EXTENSION_POINTS.to_vec();
        keys.push("multiPoint");
        let pm = object(pv, &pp, &keys)?;
        for (key, set) in prof.points.iter_mut() {
            if let Some(sv) = pm.get(*key) {
                *set = parse_plugin_set(sv, &pp.child(key), registered)?;
            }
        }
        if let Some(sv) = pm.get("multiPoint") {
            let custom = parse_plugin_set(sv, &pp.child("multiPoint"), registered)?;
            prof.multi_point = merge_plugin_set(&default_multi_point(), &custom);
        }
    }
    let mut seen = HashSet::new();
    for (i, cv) in array(m, "pluginConfig", path)?.iter().enumerate() {
        let cp = path.child("pluginConfig").index(i);
        let cm = object(cv, &cp, &["name", "args"])?;
        let pname = opt_str(cm, "name", &cp)?.unwrap_or_default();
        if !registered.contains(pname.as_str()) {
            return Err(invalid(
                &cp.child("name").0,
                &Value::from(pname),
                "not a registered plugin",
            ));
        }
        if !seen.insert(pname.clone()) {
            return Err(ConfigError(format!(
                "{}: Duplicate value: {pname:?}",
                cp.child("name")
            )));
        }
        let mut args = cm.get("args").cloned().unwrap_or(Value::Null);
        // The args' own apiVersion/kind are type metadata, not settings.
        if let Value::Object(a) = &mut args {
            a.remove("apiVersion");
            a.remove("kind");
        }
        prof.plugin_config.push((pname, args));
    }
    Ok(prof)
}

fn parse_plugin_set(
    v: &Value,
    path: &Path,
    registered: &BTreeSet<&str>,
) -> Result<PluginSet, ConfigError> {
    let m = object(v, path, &["enabled", "disabled"])?;
    let mut set = PluginSet::default();
    for (field, out) in [
        ("enabled", &mut set.enabled),
        ("disabled", &mut set.disabled),
    ] {
        for (i, pv) in array(m, field, path)?.iter().enumerate() {
            let pp = path.child(field).index(i);
            let pm = object(pv, &pp, &["name", "weight"])?;
            let name = opt_str(pm, "name", &pp)?.unwrap_or_default();
            let wildcard = field == "disabled" && name == "*";
            if !wildcard && !registered.contains(name.as_str()) {
                return Err(invalid(
                    &pp.child("name").0,
                    &Value::from(name),
                    "not a registered plugin",
                ));
            }
            let weight = opt_i64(pm, "weight", &pp)?;
            if let Some(w) = weight
                && !(0..=i64::from(i32::MAX)).contains(&w)
            {
                return Err(invalid(
                    &pp.child("weight").0,
                    &Value::from(w),
                    "must be greater than or equal to 0",
                ));
            }
            out.push(PluginRef {
                name,
                weight: weight.map(|w| w as i32),
            });
        }
    }
    Ok(set)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
