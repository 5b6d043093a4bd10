//! Cluster policy and infrastructure kinds: leases, pod disruption budgets,
//! priority classes, RBAC bindings, storage classes and certificate signing
//! requests.

use serde_json::Value;

use super::duration::human_duration;
use super::fields::{
    age, array_at, get, int_at, int_or_string, name, opt_bool, opt_int, opt_str, str_at,
};
use super::{AGE, Ctx, TableColumnDefinition, col, name_col};

// ---- leases ----

/// Lease columns.
pub(super) static LEASE_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Holder",
        "string",
        0,
        "Identity of the lease's current holder.",
    ),
    AGE,
];

/// The cells of one lease.
pub(super) fn lease_row(lease: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(lease).into(),
        str_at(lease, &["spec", "holderIdentity"]).into(),
        age(lease, ctx),
    ]
}

// ---- pod disruption budgets ----

/// PodDisruptionBudget columns.
pub(super) static PDB_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Min Available",
        "string",
        0,
        "Pods that must stay available (number or percentage).",
    ),
    col(
        "Max Unavailable",
        "string",
        0,
        "Pods that may be unavailable (number or percentage).",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        0,
        "Evictions allowed right now.",
    ),
    AGE,
];

/// The cells of one pod disruption budget.
pub(super) fn pdb_row(pdb: &Value, ctx: &Ctx) -> Vec<Value> {
    let int_or_na = |field: &str| {
        get(pdb, &["spec", field])
            .and_then(int_or_string)
            .unwrap_or_else(|| "N/A".to_owned())
    };
    vec![
        name(pdb).into(),
        int_or_na("minAvailable").into(),
        int_or_na("maxUnavailable").into(),
        int_at(pdb, &["status", "disruptionsAllowed"]).into(),
        age(pdb, ctx),
    ]
}

// ---- priority classes ----

/// PriorityClass columns (upstream shows the preemption policy by default).
pub(super) static PC_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Value", "integer", 0, "Priority of pods using the class."),
    col(
        "Global-Default",
        "boolean",
        0,
        "Whether pods without a class get this one.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        0,
        "Whether pods of the class may preempt others.",
    ),
];

/// The cells of one priority class.
pub(super) fn pc_row(pc: &Value, ctx: &Ctx) -> Vec<Value> {
    vec![
        name(pc).into(),
        int_at(pc, &["value"]).into(),
        opt_bool(pc, &["globalDefault"]).unwrap_or(false).into(),
        age(pc, ctx),
        opt_str(pc, &["preemptionPolicy"]).unwrap_or("").into(),
    ]
}

// ---- role bindings ----

/// RoleBinding columns.
pub(super) static ROLEBINDING_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col("Role", "string", 0, "Kind/name of the role bound."),
    AGE,
    col("Users", "string", 1, "Users bound."),
    col("Groups", "string", 1, "Groups bound."),
    col(
        "ServiceAccounts",
        "string",
        1,
        "Service accounts bound, as namespace/name.",
    ),
];

/// ClusterRoleBinding columns (the same as role bindings').
pub(super) static CLUSTERROLEBINDING_COLUMNS: &[TableColumnDefinition] = ROLEBINDING_COLUMNS;

/// The cells of one role binding or cluster role binding.
pub(super) fn binding_row(b: &Value, ctx: &Ctx) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for s in array_at(b, &["subjects"]) {
        let subject_name = str_at(s, &["name"]);
        match str_at(s, &["kind"]) {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", str_at(s, &["namespace"])));
            }
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            _ => {}
        }
    }
    vec![
        name(b).into(),
        format!(
            "{}/{}",
            str_at(b, &["roleRef", "kind"]),
            str_at(b, &["roleRef", "name"])
        )
        .into(),
        age(b, ctx),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

// ---- storage classes ----

/// StorageClass columns.
pub(super) static SC_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    col(
        "Provisioner",
        "string",
        0,
        "The volume plugin provisioning volumes.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        0,
        "Reclaim policy of provisioned volumes.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        0,
        "When volumes are bound: Immediate or WaitForFirstConsumer.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        0,
        "Whether claims of the class may grow.",
    ),
    AGE,
];

const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The cells of one storage class; the default class is marked ` (default)`.
pub(super) fn sc_row(sc: &Value, ctx: &Ctx) -> Vec<Value> {
    let is_default = [DEFAULT_CLASS, BETA_DEFAULT_CLASS]
        .iter()
        .any(|a| str_at(sc, &["metadata", "annotations", a]) == "true");
    let mut sc_name = name(sc).to_owned();
    if is_default {
        sc_name.push_str(" (default)");
    }
    vec![
        sc_name.into(),
        str_at(sc, &["provisioner"]).into(),
        opt_str(sc, &["reclaimPolicy"]).unwrap_or("Delete").into(),
        opt_str(sc, &["volumeBindingMode"])
            .unwrap_or("Immediate")
            .into(),
        opt_bool(sc, &["allowVolumeExpansion"])
            .unwrap_or(false)
            .into(),
        age(sc, ctx),
    ]
}

// ---- certificate signing requests ----

/// CertificateSigningRequest columns (upstream puts AGE second).
pub(super) static CSR_COLUMNS: &[TableColumnDefinition] = &[
    name_col(0),
    AGE,
    col("SignerName", "string", 0, "The signer asked to sign."),
    col(
        "Requestor",
        "string",
        0,
        "The user who created the request.",
    ),
    col(
        "RequestedDuration",
        "string",
        0,
        "Validity requested for the certificate.",
    ),
    col(
        "Condition",
        "string",
        0,
        "Approved, Denied or Pending, plus Failed and Issued.",
    ),
];

/// Upstream's `extractCSRStatus`: Denied over Approved over Pending, then
/// `,Failed` and `,Issued`.
fn csr_condition(csr: &Value) -> String {
    let has = |t: &str| {
        array_at(csr, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == t)
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

/// The cells of one certificate signing request.
pub(super) fn csr_row(csr: &Value, ctx: &Ctx) -> Vec<Value> {
    let signer = match str_at(csr, &["spec", "signerName"]) {
        "" => "<none>",
        s => s,
    };
    let duration = match opt_int(csr, &["spec", "expirationSeconds"]) {
        Some(s) => human_duration(time::Duration::seconds(s)),
        None => "<none>".to_owned(),
    };
    vec![
        name(csr).into(),
        age(csr, ctx),
        signer.into(),
        str_at(csr, &["spec", "username"]).into(),
        duration.into(),
        csr_condition(csr).into(),
    ]
}
