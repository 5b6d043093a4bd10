//! Table printing: the `meta.k8s.io/v1` `Table` a kube-apiserver returns for
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, with upstream's columns
//! and cell formatting for every built-in kind we serve (upstream's
//! `pkg/printers/internalversion`).
//!
//! kubectl `get` asks for a Table and prints its cells: the columns of priority 0
//! by default, all of them with `-o wide`. Like upstream's server, we always
//! compute every column (upstream generates with `Wide: true`).
//!
//! Objects are user data: every function here accepts any JSON value and never
//! panics; missing or mistyped fields print as upstream prints the zero value.
//!
//! - [`columns`], [`row`]: the column definitions and the cells of one object.
//! - [`table`], [`table_row`]: whole `Table` documents and single rows.
//! - [`human_duration`]: upstream's `duration.HumanDuration` (the AGE column).

mod apps;
mod batch;
mod cluster;
mod core;
mod duration;
mod events;
mod fields;
mod networking;
mod pod;
mod table;

pub use duration::{human_duration, short_human_duration};
pub use table::{IncludeObjectPolicy, table, table_row};

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::resources::ResourceInfo;

/// One column of a `Table` (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableColumnDefinition {
    /// Human-readable header (`Name`, `Ready`, `Nominated Node`); kubectl upper-cases it.
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// OpenAPI format refining the type; `name` marks the object's name column.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for the default view; 1 for the extra columns of `-o wide`.
    pub priority: i32,
}

impl TableColumnDefinition {
    /// The JSON form, with every field present as upstream encodes it.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Shorthand for the column tables of the printer modules.
const fn col(
    name: &'static str,
    type_: &'static str,
    priority: i32,
    description: &'static str,
) -> TableColumnDefinition {
    TableColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

/// The `Name` column every printer starts with (events put it last, in the wide view).
const fn name_col(priority: i32) -> TableColumnDefinition {
    TableColumnDefinition {
        name: "Name",
        type_: "string",
        format: "name",
        description: "Name of the object, unique within its namespace (or the cluster for cluster-scoped kinds).",
        priority,
    }
}

/// The `Age` column.
const AGE: TableColumnDefinition = col(
    "Age",
    "string",
    0,
    "Time elapsed since the object was created.",
);

/// `Containers` and `Images` of a pod template (wide).
const CONTAINERS: TableColumnDefinition = col(
    "Containers",
    "string",
    1,
    "Names of the containers of the pod template.",
);
const IMAGES: TableColumnDefinition = col(
    "Images",
    "string",
    1,
    "Images of the containers of the pod template.",
);

/// The columns of upstream's default table convertor, used for kinds without a
/// printer (LimitRange, Role, ClusterRole).
static DEFAULT_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Created At",
        "date",
        0,
        "When the object was created (RFC 3339, UTC).",
    ),
];

/// Everything the row functions need besides the object.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    now: OffsetDateTime,
}

/// A printer: its columns and the function computing the cells of one object.
#[derive(Debug, Clone, Copy)]
struct Printer {
    columns: &'static [TableColumnDefinition],
    row: fn(&Value, &Ctx) -> Vec<Value>,
}

/// The printer of `resource`, or `None` for upstream's default table convertor.
fn printer(resource: &ResourceInfo) -> Option<Printer> {
    let p = |columns, row| Some(Printer { columns, row });
    match (resource.group, resource.kind) {
        ("", "Pod") => p(pod::COLUMNS, pod::row),
        ("", "Node") => p(core::NODE_COLUMNS, core::node_row),
        ("", "Namespace") => p(core::NAMESPACE_COLUMNS, core::namespace_row),
        ("", "Service") => p(core::SERVICE_COLUMNS, core::service_row),
        ("", "Endpoints") => p(networking::ENDPOINTS_COLUMNS, networking::endpoints_row),
        ("", "ConfigMap") => p(core::CONFIGMAP_COLUMNS, core::configmap_row),
        ("", "Secret") => p(core::SECRET_COLUMNS, core::secret_row),
        ("", "ServiceAccount") => p(core::SERVICEACCOUNT_COLUMNS, core::serviceaccount_row),
        ("", "Event") => p(events::COLUMNS, events::core_row),
        ("events.k8s.io", "Event") => p(events::COLUMNS, events::events_v1_row),
        ("", "PodTemplate") => p(core::PODTEMPLATE_COLUMNS, core::podtemplate_row),
        ("", "ReplicationController") => p(apps::RC_COLUMNS, apps::rc_row),
        ("", "ResourceQuota") => p(core::QUOTA_COLUMNS, core::quota_row),
        ("", "PersistentVolume") => p(core::PV_COLUMNS, core::pv_row),
        ("", "PersistentVolumeClaim") => p(core::PVC_COLUMNS, core::pvc_row),
        ("apps", "Deployment") => p(apps::DEPLOYMENT_COLUMNS, apps::deployment_row),
        ("apps", "ReplicaSet") => p(apps::RS_COLUMNS, apps::rs_row),
        ("apps", "StatefulSet") => p(apps::STS_COLUMNS, apps::sts_row),
        ("apps", "DaemonSet") => p(apps::DS_COLUMNS, apps::ds_row),
        ("apps", "ControllerRevision") => p(apps::CR_COLUMNS, apps::cr_row),
        ("batch", "Job") => p(batch::JOB_COLUMNS, batch::job_row),
        ("batch", "CronJob") => p(batch::CRONJOB_COLUMNS, batch::cronjob_row),
        ("coordination.k8s.io", "Lease") => p(cluster::LEASE_COLUMNS, cluster::lease_row),
        ("discovery.k8s.io", "EndpointSlice") => {
            p(networking::SLICE_COLUMNS, networking::slice_row)
        }
        ("policy", "PodDisruptionBudget") => p(cluster::PDB_COLUMNS, cluster::pdb_row),
        ("scheduling.k8s.io", "PriorityClass") => p(cluster::PC_COLUMNS, cluster::pc_row),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            p(cluster::ROLEBINDING_COLUMNS, cluster::binding_row)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            p(cluster::CLUSTERROLEBINDING_COLUMNS, cluster::binding_row)
        }
        ("storage.k8s.io", "StorageClass") => p(cluster::SC_COLUMNS, cluster::sc_row),
        ("networking.k8s.io", "NetworkPolicy") => {
            p(networking::NETPOL_COLUMNS, networking::netpol_row)
        }
        ("networking.k8s.io", "Ingress") => p(networking::INGRESS_COLUMNS, networking::ingress_row),
        ("networking.k8s.io", "IngressClass") => p(
            networking::INGRESSCLASS_COLUMNS,
            networking::ingressclass_row,
        ),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            p(cluster::CSR_COLUMNS, cluster::csr_row)
        }
        _ => None,
    }
}

/// True when upstream has a dedicated printer for `resource`; false when its
/// default table convertor (Name, Created At) applies.
pub fn has_printer(resource: &ResourceInfo) -> bool {
    printer(resource).is_some()
}

/// The column definitions of `resource`'s Table, in cell order: upstream's
/// printer columns, or the default `Name`, `Created At` for kinds without one.
pub fn columns(resource: &ResourceInfo) -> Vec<TableColumnDefinition> {
    printer(resource)
        .map_or(DEFAULT_COLUMNS, |p| p.columns)
        .to_vec()
}

/// The cells of one object, one per column of [`columns`] (the wide view; drop
/// the priority-1 cells for the default view). Strings, integers and booleans as
/// upstream's printers produce them; ages relative to `now`.
pub fn row(resource: &ResourceInfo, object: &Value, now: OffsetDateTime) -> Vec<Value> {
    let ctx = Ctx { now };
    match printer(resource) {
        Some(p) => (p.row)(object, &ctx),
        None => table::default_row(object),
    }
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
#[path = "pod_tests.rs"]
mod pod_tests;

#[cfg(test)]
#[path = "core_tests.rs"]
mod core_tests;

#[cfg(test)]
#[path = "apps_tests.rs"]
mod apps_tests;

#[cfg(test)]
#[path = "batch_tests.rs"]
mod batch_tests;

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod cluster_tests;

#[cfg(test)]
#[path = "networking_tests.rs"]
mod networking_tests;

#[cfg(test)]
#[path = "table_tests.rs"]
mod table_tests;

#[cfg(test)]
#[path = "robustness_tests.rs"]
mod robustness_tests;
