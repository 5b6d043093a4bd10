//! Workload controllers: deployments, replica sets, replication controllers,
//! stateful sets, daemon sets and controller revisions.

use serde_json::Value;

use super::fields::{
    age, array_at, bool_at, container_cells, format_label_selector, format_labels, int_at, name,
    opt_int, selector_string, str_at,
};
use super::{AGE, CONTAINERS, Ctx, IMAGES, TableColumnDefinition, col, name_col};

/// `spec.replicas`, defaulted to 1 like the stored object would be.
fn desired_replicas(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

const TEMPLATE_CONTAINERS: &[&str] = &["spec", "template", "spec", "containers"];

// ---- replication controllers and replica sets ----

/// ReplicationController columns.
pub(super) static RC_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Desired", "integer", 0, "Number of replicas wanted."),
    col("Current", "integer", 0, "Number of replicas that exist."),
    col("Ready", "integer", 0, "Number of ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", 1, "Labels of the pods it manages."),
];

/// ReplicaSet columns (the same as replication controllers').
pub(super) static RS_COLUMNS: &[TableColumnDefinition] = RC_COLUMNS;

fn replicas_cells(obj: &Value, ctx: &Ctx) -> Vec<Value> {
    let (names, images) = container_cells(obj, TEMPLATE_CONTAINERS);
    vec![
        name(obj).into(),
        desired_replicas(obj).into(),
        int_at(obj, &["status", "replicas"]).into(),
        int_at(obj, &["status", "readyReplicas"]).into(),
        age(obj, ctx),
        names,
        images,
    ]
}

/// The cells of one replication controller (its selector is a plain label map).
pub(super) fn rc_row(rc: &Value, ctx: &Ctx) -> Vec<Value> {
    let mut cells = replicas_cells(rc, ctx);
    cells.push(format_labels(rc, &["spec", "selector"]).into());
    cells
}

/// The cells of one replica set.
pub(super) fn rs_row(rs: &Value, ctx: &Ctx) -> Vec<Value> {
    let mut cells = replicas_cells(rs, ctx);
    cells.push(format_label_selector(rs, &["spec", "selector"]).into());
    cells
}

// ---- deployments ----

/// Deployment columns.
pub(super) static DEPLOYMENT_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Ready",
        "string",
        0,
        "Ready replicas out of desired replicas.",
    ),
    col(
        "Up-to-date",
        "string",
        0,
        "Replicas running the latest pod template.",
    ),
    col(
        "Available",
        "string",
        0,
        "Replicas available to serve (ready for minReadySeconds).",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col(
        "Selector",
        "string",
        1,
        "Label selector of the deployment's pods.",
    ),
];

/// The cells of one deployment.
pub(super) fn deployment_row(d: &Value, ctx: &Ctx) -> Vec<Value> {
    let (names, images) = container_cells(d, TEMPLATE_CONTAINERS);
    vec![
        name(d).into(),
        format!(
            "{}/{}",
            int_at(d, &["status", "readyReplicas"]),
            desired_replicas(d)
        )
        .into(),
        int_at(d, &["status", "updatedReplicas"]).into(),
        int_at(d, &["status", "availableReplicas"]).into(),
        age(d, ctx),
        names,
        images,
        selector_string(d, &["spec", "selector"]).into(),
    ]
}

// ---- stateful sets ----

/// StatefulSet columns.
pub(super) static STS_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Ready",
        "string",
        0,
        "Ready replicas out of desired replicas.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
];

/// The cells of one stateful set.
pub(super) fn sts_row(sts: &Value, ctx: &Ctx) -> Vec<Value> {
    let (names, images) = container_cells(sts, TEMPLATE_CONTAINERS);
    vec![
        name(sts).into(),
        format!(
            "{}/{}",
            int_at(sts, &["status", "readyReplicas"]),
            desired_replicas(sts)
        )
        .into(),
        age(sts, ctx),
        names,
        images,
    ]
}

// ---- daemon sets ----

/// DaemonSet columns.
pub(super) static DS_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Desired",
        "integer",
        0,
        "Number of nodes that should run the daemon pod.",
    ),
    col(
        "Current",
        "integer",
        0,
        "Number of nodes running at least one daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        0,
        "Number of nodes whose daemon pod is ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        0,
        "Number of nodes running the latest daemon pod.",
    ),
    col(
        "Available",
        "integer",
        0,
        "Number of nodes whose daemon pod is available.",
    ),
    col(
        "Node Selector",
        "string",
        0,
        "Node labels the daemon pods require.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col(
        "Selector",
        "string",
        1,
        "Label selector of the daemon pods.",
    ),
];

/// The cells of one daemon set.
pub(super) fn ds_row(ds: &Value, ctx: &Ctx) -> Vec<Value> {
    let (names, images) = container_cells(ds, TEMPLATE_CONTAINERS);
    let status = |f: &str| Value::from(int_at(ds, &["status", f]));
    vec![
        name(ds).into(),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(ds, &["spec", "template", "spec", "nodeSelector"]).into(),
        age(ds, ctx),
        names,
        images,
        format_label_selector(ds, &["spec", "selector"]).into(),
    ]
}

// ---- controller revisions ----

/// ControllerRevision columns.
pub(super) static CR_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Controller",
        "string",
        0,
        "kind.group/name of the controller owning the revision.",
    ),
    col("Revision", "string", 0, "The revision number."),
    AGE,
];

/// `kind.group/name` of the controlling owner reference, lower-cased kind and
/// group (`statefulset.apps/web`); `<none>` without one.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = array_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| bool_at(o, &["controller"]))
    else {
        return "<none>".to_owned();
    };
    let owner_name = str_at(owner, &["name"]);
    let kind = str_at(owner, &["kind"]);
    let api_version = str_at(owner, &["apiVersion"]);
    // Go's ParseGroupVersion: "" and "v1" have no group, "g/v" has group g, more
    // slashes are malformed (upstream then fails the row; we print the name).
    let group = match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [_] => "",
        [g, _] => g,
        _ => return owner_name.to_owned(),
    };
    if kind.is_empty() && group.is_empty() {
        return owner_name.to_owned();
    }
    let group_kind = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

/// The cells of one controller revision.
pub(super) fn cr_row(cr: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(cr).into(),
        controller_name(cr).into(),
        int_at(cr, &["revision"]).into(),
        age(cr, ctx),
    ]
}
