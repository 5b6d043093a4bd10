//! Types of the other API groups and meta/v1: the fields of upstream's Go API types (k8s.io/api and
//! k8s.io/apimachinery meta/v1, Kubernetes v1.33) that matter for patching: struct
//! fields leading to lists with patch metadata, and the lists themselves with their
//! `patchStrategy` / `patchMergeKey` struct tags and `+listType` / `+listMapKey`
//! markers. Inline (embedded) structs are flattened into their parent. Lists and
//! structs without any of these facts below them are left out: they patch with the
//! defaults (replace; atomic).
//!
//! Kept sorted by type name (checked by a test) for binary search.

use super::def::*;

pub(super) static TYPES: &[TypeDef] = types! {
    "apps.v1.ControllerRevision" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "apps.v1.DaemonSet" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "apps.v1.DaemonSetSpec"),
        field("status", "apps.v1.DaemonSetStatus"),
    ],
    "apps.v1.DaemonSetSpec" => [
        field("selector", "meta.v1.LabelSelector"),
        field("template", "core.v1.PodTemplateSpec"),
    ],
    "apps.v1.DaemonSetStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "apps.v1.Deployment" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "apps.v1.DeploymentSpec"),
        field("status", "apps.v1.DeploymentStatus"),
    ],
    "apps.v1.DeploymentSpec" => [
        field("selector", "meta.v1.LabelSelector"),
        field("template", "core.v1.PodTemplateSpec"),
        field_with("strategy", "", RETAIN),
    ],
    "apps.v1.DeploymentStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "apps.v1.ReplicaSet" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "apps.v1.ReplicaSetSpec"),
        field("status", "apps.v1.ReplicaSetStatus"),
    ],
    "apps.v1.ReplicaSetSpec" => [
        field("selector", "meta.v1.LabelSelector"),
        field("template", "core.v1.PodTemplateSpec"),
    ],
    "apps.v1.ReplicaSetStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "apps.v1.StatefulSet" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "apps.v1.StatefulSetSpec"),
        field("status", "apps.v1.StatefulSetStatus"),
    ],
    "apps.v1.StatefulSetSpec" => [
        field("selector", "meta.v1.LabelSelector"),
        field("template", "core.v1.PodTemplateSpec"),
        list("volumeClaimTemplates", "core.v1.PersistentVolumeClaim", NONE, "", ATOMIC),
    ],
    "apps.v1.StatefulSetStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "autoscaling.v1.Scale" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "batch.v1.CronJob" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "batch.v1.CronJobSpec"),
        field("status", "batch.v1.CronJobStatus"),
    ],
    "batch.v1.CronJobSpec" => [
        field("jobTemplate", "batch.v1.JobTemplateSpec"),
    ],
    "batch.v1.CronJobStatus" => [
        list("active", "", NONE, "", ATOMIC),
    ],
    "batch.v1.Job" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "batch.v1.JobSpec"),
        field("status", "batch.v1.JobStatus"),
    ],
    "batch.v1.JobSpec" => [
        field("podFailurePolicy", "batch.v1.PodFailurePolicy"),
        field("successPolicy", "batch.v1.SuccessPolicy"),
        field("selector", "meta.v1.LabelSelector"),
        field("template", "core.v1.PodTemplateSpec"),
    ],
    "batch.v1.JobStatus" => [
        list("conditions", "", MERGE, "type", ATOMIC),
        field("uncountedTerminatedPods", "batch.v1.UncountedTerminatedPods"),
    ],
    "batch.v1.JobTemplateSpec" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "batch.v1.JobSpec"),
    ],
    "batch.v1.PodFailurePolicy" => [
        list("rules", "batch.v1.PodFailurePolicyRule", NONE, "", ATOMIC),
    ],
    "batch.v1.PodFailurePolicyOnExitCodesRequirement" => [
        list("values", "", NONE, "", SET),
    ],
    "batch.v1.PodFailurePolicyRule" => [
        field("onExitCodes", "batch.v1.PodFailurePolicyOnExitCodesRequirement"),
        list("onPodConditions", "", NONE, "", ATOMIC),
    ],
    "batch.v1.SuccessPolicy" => [
        list("rules", "", NONE, "", ATOMIC),
    ],
    "batch.v1.UncountedTerminatedPods" => [
        list("succeeded", "", NONE, "", SET),
        list("failed", "", NONE, "", SET),
    ],
    "certificates.v1.CertificateSigningRequest" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "certificates.v1.CertificateSigningRequestSpec"),
        field("status", "certificates.v1.CertificateSigningRequestStatus"),
    ],
    "certificates.v1.CertificateSigningRequestSpec" => [
        list("usages", "", NONE, "", ATOMIC),
        list("groups", "", NONE, "", ATOMIC),
    ],
    "certificates.v1.CertificateSigningRequestStatus" => [
        list("conditions", "", NONE, "", lt_map(&["type"])),
    ],
    "coordination.v1.Lease" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "discovery.v1.Endpoint" => [
        list("addresses", "", NONE, "", SET),
        field("hints", "discovery.v1.EndpointHints"),
    ],
    "discovery.v1.EndpointHints" => [
        list("forZones", "", NONE, "", ATOMIC),
        list("forNodes", "", NONE, "", ATOMIC),
    ],
    "discovery.v1.EndpointSlice" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("endpoints", "discovery.v1.Endpoint", NONE, "", ATOMIC),
        list("ports", "", NONE, "", ATOMIC),
    ],
    "events.v1.Event" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "meta.v1.DeleteOptions" => [
        list("dryRun", "", NONE, "", ATOMIC),
    ],
    "meta.v1.LabelSelector" => [
        list("matchExpressions", "meta.v1.LabelSelectorRequirement", NONE, "", ATOMIC),
    ],
    "meta.v1.LabelSelectorRequirement" => [
        list("values", "", NONE, "", ATOMIC),
    ],
    "meta.v1.ObjectMeta" => [
        list("ownerReferences", "", MERGE, "uid", lt_map(&["uid"])),
        list("finalizers", "", MERGE, "", SET),
        list("managedFields", "", NONE, "", ATOMIC),
    ],
    "networking.v1.HTTPIngressRuleValue" => [
        list("paths", "", NONE, "", ATOMIC),
    ],
    "networking.v1.IPAddress" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "networking.v1.IPBlock" => [
        list("except", "", NONE, "", ATOMIC),
    ],
    "networking.v1.Ingress" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "networking.v1.IngressSpec"),
        field("status", "networking.v1.IngressStatus"),
    ],
    "networking.v1.IngressClass" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "networking.v1.IngressLoadBalancerIngress" => [
        list("ports", "", NONE, "", ATOMIC),
    ],
    "networking.v1.IngressLoadBalancerStatus" => [
        list("ingress", "networking.v1.IngressLoadBalancerIngress", NONE, "", ATOMIC),
    ],
    "networking.v1.IngressRule" => [
        field("http", "networking.v1.HTTPIngressRuleValue"),
    ],
    "networking.v1.IngressSpec" => [
        list("tls", "networking.v1.IngressTLS", NONE, "", ATOMIC),
        list("rules", "networking.v1.IngressRule", NONE, "", ATOMIC),
    ],
    "networking.v1.IngressStatus" => [
        field("loadBalancer", "networking.v1.IngressLoadBalancerStatus"),
    ],
    "networking.v1.IngressTLS" => [
        list("hosts", "", NONE, "", ATOMIC),
    ],
    "networking.v1.NetworkPolicy" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "networking.v1.NetworkPolicySpec"),
    ],
    "networking.v1.NetworkPolicyEgressRule" => [
        list("ports", "", NONE, "", ATOMIC),
        list("to", "networking.v1.NetworkPolicyPeer", NONE, "", ATOMIC),
    ],
    "networking.v1.NetworkPolicyIngressRule" => [
        list("ports", "", NONE, "", ATOMIC),
        list("from", "networking.v1.NetworkPolicyPeer", NONE, "", ATOMIC),
    ],
    "networking.v1.NetworkPolicyPeer" => [
        field("podSelector", "meta.v1.LabelSelector"),
        field("namespaceSelector", "meta.v1.LabelSelector"),
        field("ipBlock", "networking.v1.IPBlock"),
    ],
    "networking.v1.NetworkPolicySpec" => [
        field("podSelector", "meta.v1.LabelSelector"),
        list("ingress", "networking.v1.NetworkPolicyIngressRule", NONE, "", ATOMIC),
        list("egress", "networking.v1.NetworkPolicyEgressRule", NONE, "", ATOMIC),
        list("policyTypes", "", NONE, "", ATOMIC),
    ],
    "networking.v1.ServiceCIDR" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "networking.v1.ServiceCIDRSpec"),
        field("status", "networking.v1.ServiceCIDRStatus"),
    ],
    "networking.v1.ServiceCIDRSpec" => [
        list("cidrs", "", NONE, "", ATOMIC),
    ],
    "networking.v1.ServiceCIDRStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "policy.v1.Eviction" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("deleteOptions", "meta.v1.DeleteOptions"),
    ],
    "policy.v1.PodDisruptionBudget" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "policy.v1.PodDisruptionBudgetSpec"),
        field("status", "policy.v1.PodDisruptionBudgetStatus"),
    ],
    "policy.v1.PodDisruptionBudgetSpec" => [
        field_with("selector", "meta.v1.LabelSelector", REPLACE),
    ],
    "policy.v1.PodDisruptionBudgetStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "rbac.v1.AggregationRule" => [
        list("clusterRoleSelectors", "meta.v1.LabelSelector", NONE, "", ATOMIC),
    ],
    "rbac.v1.ClusterRole" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("rules", "rbac.v1.PolicyRule", NONE, "", ATOMIC),
        field("aggregationRule", "rbac.v1.AggregationRule"),
    ],
    "rbac.v1.ClusterRoleBinding" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("subjects", "", NONE, "", ATOMIC),
    ],
    "rbac.v1.PolicyRule" => [
        list("verbs", "", NONE, "", ATOMIC),
        list("apiGroups", "", NONE, "", ATOMIC),
        list("resources", "", NONE, "", ATOMIC),
        list("resourceNames", "", NONE, "", ATOMIC),
        list("nonResourceURLs", "", NONE, "", ATOMIC),
    ],
    "rbac.v1.Role" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("rules", "rbac.v1.PolicyRule", NONE, "", ATOMIC),
    ],
    "rbac.v1.RoleBinding" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("subjects", "", NONE, "", ATOMIC),
    ],
    "scheduling.v1.PriorityClass" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "storage.v1.CSIDriver" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "storage.v1.CSIDriverSpec"),
    ],
    "storage.v1.CSIDriverSpec" => [
        list("volumeLifecycleModes", "", NONE, "", SET),
        list("tokenRequests", "", NONE, "", ATOMIC),
    ],
    "storage.v1.CSINode" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "storage.v1.CSINodeSpec"),
    ],
    "storage.v1.CSINodeDriver" => [
        list("topologyKeys", "", NONE, "", ATOMIC),
    ],
    "storage.v1.CSINodeSpec" => [
        list("drivers", "storage.v1.CSINodeDriver", MERGE, "name", lt_map(&["name"])),
    ],
    "storage.v1.CSIStorageCapacity" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("nodeTopology", "meta.v1.LabelSelector"),
    ],
    "storage.v1.StorageClass" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("mountOptions", "", NONE, "", ATOMIC),
        list("allowedTopologies", "core.v1.TopologySelectorTerm", NONE, "", ATOMIC),
    ],
    "storage.v1.VolumeAttachment" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "storage.v1.VolumeAttachmentSpec"),
    ],
    "storage.v1.VolumeAttachmentSource" => [
        field("inlineVolumeSpec", "core.v1.PersistentVolumeSpec"),
    ],
    "storage.v1.VolumeAttachmentSpec" => [
        field("source", "storage.v1.VolumeAttachmentSource"),
    ],
};
