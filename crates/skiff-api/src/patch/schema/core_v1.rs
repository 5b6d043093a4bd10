//! core/v1 types: the fields of upstream's Go API types (k8s.io/api and
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
    "core.v1.Affinity" => [
        field("nodeAffinity", "core.v1.NodeAffinity"),
        field("podAffinity", "core.v1.PodAffinity"),
        field("podAntiAffinity", "core.v1.PodAntiAffinity"),
    ],
    "core.v1.Binding" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "core.v1.Capabilities" => [
        list("add", "", NONE, "", ATOMIC),
        list("drop", "", NONE, "", ATOMIC),
    ],
    "core.v1.CephFSPersistentVolumeSource" => [
        list("monitors", "", NONE, "", ATOMIC),
    ],
    "core.v1.CephFSVolumeSource" => [
        list("monitors", "", NONE, "", ATOMIC),
    ],
    "core.v1.ClusterTrustBundleProjection" => [
        field("labelSelector", "meta.v1.LabelSelector"),
    ],
    "core.v1.ConfigMap" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "core.v1.ConfigMapProjection" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.ConfigMapVolumeSource" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.Container" => [
        list("command", "", NONE, "", ATOMIC),
        list("args", "", NONE, "", ATOMIC),
        list("ports", "", MERGE, "containerPort", lt_map(&["containerPort", "protocol"])),
        list("envFrom", "", NONE, "", ATOMIC),
        list("env", "", MERGE, "name", lt_map(&["name"])),
        field("resources", "core.v1.ResourceRequirements"),
        list("resizePolicy", "", NONE, "", ATOMIC),
        list("volumeMounts", "", MERGE, "mountPath", lt_map(&["mountPath"])),
        list("volumeDevices", "", MERGE, "devicePath", lt_map(&["devicePath"])),
        field("livenessProbe", "core.v1.Probe"),
        field("readinessProbe", "core.v1.Probe"),
        field("startupProbe", "core.v1.Probe"),
        field("lifecycle", "core.v1.Lifecycle"),
        field("securityContext", "core.v1.SecurityContext"),
    ],
    "core.v1.ContainerImage" => [
        list("names", "", NONE, "", ATOMIC),
    ],
    "core.v1.ContainerStatus" => [
        field("resources", "core.v1.ResourceRequirements"),
        list("volumeMounts", "", MERGE, "mountPath", lt_map(&["mountPath"])),
        field("user", "core.v1.ContainerUser"),
        list("allocatedResourcesStatus", "core.v1.ResourceStatus", MERGE, "name", lt_map(&["name"])),
    ],
    "core.v1.ContainerUser" => [
        field("linux", "core.v1.LinuxContainerUser"),
    ],
    "core.v1.DownwardAPIProjection" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.DownwardAPIVolumeSource" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.EndpointSubset" => [
        list("addresses", "", NONE, "", ATOMIC),
        list("notReadyAddresses", "", NONE, "", ATOMIC),
        list("ports", "", NONE, "", ATOMIC),
    ],
    "core.v1.Endpoints" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("subsets", "core.v1.EndpointSubset", NONE, "", ATOMIC),
    ],
    "core.v1.EphemeralContainer" => [
        list("command", "", NONE, "", ATOMIC),
        list("args", "", NONE, "", ATOMIC),
        list("ports", "", MERGE, "containerPort", lt_map(&["containerPort", "protocol"])),
        list("envFrom", "", NONE, "", ATOMIC),
        list("env", "", MERGE, "name", lt_map(&["name"])),
        field("resources", "core.v1.ResourceRequirements"),
        list("resizePolicy", "", NONE, "", ATOMIC),
        list("volumeMounts", "", MERGE, "mountPath", lt_map(&["mountPath"])),
        list("volumeDevices", "", MERGE, "devicePath", lt_map(&["devicePath"])),
        field("livenessProbe", "core.v1.Probe"),
        field("readinessProbe", "core.v1.Probe"),
        field("startupProbe", "core.v1.Probe"),
        field("lifecycle", "core.v1.Lifecycle"),
        field("securityContext", "core.v1.SecurityContext"),
    ],
    "core.v1.EphemeralVolumeSource" => [
        field("volumeClaimTemplate", "core.v1.PersistentVolumeClaimTemplate"),
    ],
    "core.v1.Event" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "core.v1.ExecAction" => [
        list("command", "", NONE, "", ATOMIC),
    ],
    "core.v1.FCVolumeSource" => [
        list("targetWWNs", "", NONE, "", ATOMIC),
        list("wwids", "", NONE, "", ATOMIC),
    ],
    "core.v1.HTTPGetAction" => [
        list("httpHeaders", "", NONE, "", ATOMIC),
    ],
    "core.v1.HostAlias" => [
        list("hostnames", "", NONE, "", ATOMIC),
    ],
    "core.v1.ISCSIPersistentVolumeSource" => [
        list("portals", "", NONE, "", ATOMIC),
    ],
    "core.v1.ISCSIVolumeSource" => [
        list("portals", "", NONE, "", ATOMIC),
    ],
    "core.v1.Lifecycle" => [
        field("postStart", "core.v1.LifecycleHandler"),
        field("preStop", "core.v1.LifecycleHandler"),
    ],
    "core.v1.LifecycleHandler" => [
        field("exec", "core.v1.ExecAction"),
        field("httpGet", "core.v1.HTTPGetAction"),
    ],
    "core.v1.LimitRange" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.LimitRangeSpec"),
    ],
    "core.v1.LimitRangeSpec" => [
        list("limits", "", NONE, "", ATOMIC),
    ],
    "core.v1.LinuxContainerUser" => [
        list("supplementalGroups", "", NONE, "", ATOMIC),
    ],
    "core.v1.LoadBalancerIngress" => [
        list("ports", "", NONE, "", ATOMIC),
    ],
    "core.v1.LoadBalancerStatus" => [
        list("ingress", "core.v1.LoadBalancerIngress", NONE, "", ATOMIC),
    ],
    "core.v1.Namespace" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.NamespaceSpec"),
        field("status", "core.v1.NamespaceStatus"),
    ],
    "core.v1.NamespaceSpec" => [
        list("finalizers", "", NONE, "", ATOMIC),
    ],
    "core.v1.NamespaceStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "core.v1.Node" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.NodeSpec"),
        field("status", "core.v1.NodeStatus"),
    ],
    "core.v1.NodeAffinity" => [
        field("requiredDuringSchedulingIgnoredDuringExecution", "core.v1.NodeSelector"),
        list("preferredDuringSchedulingIgnoredDuringExecution", "core.v1.PreferredSchedulingTerm", NONE, "", ATOMIC),
    ],
    "core.v1.NodeSelector" => [
        list("nodeSelectorTerms", "core.v1.NodeSelectorTerm", NONE, "", ATOMIC),
    ],
    "core.v1.NodeSelectorRequirement" => [
        list("values", "", NONE, "", ATOMIC),
    ],
    "core.v1.NodeSelectorTerm" => [
        list("matchExpressions", "core.v1.NodeSelectorRequirement", NONE, "", ATOMIC),
        list("matchFields", "core.v1.NodeSelectorRequirement", NONE, "", ATOMIC),
    ],
    "core.v1.NodeSpec" => [
        list("podCIDRs", "", MERGE, "", SET),
        list("taints", "", NONE, "", ATOMIC),
    ],
    "core.v1.NodeStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
        list("addresses", "", MERGE, "type", lt_map(&["type"])),
        list("images", "core.v1.ContainerImage", NONE, "", ATOMIC),
        list("volumesInUse", "", NONE, "", ATOMIC),
        list("volumesAttached", "", NONE, "", ATOMIC),
        list("runtimeHandlers", "", NONE, "", ATOMIC),
    ],
    "core.v1.PersistentVolume" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.PersistentVolumeSpec"),
    ],
    "core.v1.PersistentVolumeClaim" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.PersistentVolumeClaimSpec"),
        field("status", "core.v1.PersistentVolumeClaimStatus"),
    ],
    "core.v1.PersistentVolumeClaimSpec" => [
        list("accessModes", "", NONE, "", ATOMIC),
        field("selector", "meta.v1.LabelSelector"),
    ],
    "core.v1.PersistentVolumeClaimStatus" => [
        list("accessModes", "", NONE, "", ATOMIC),
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "core.v1.PersistentVolumeClaimTemplate" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.PersistentVolumeClaimSpec"),
    ],
    "core.v1.PersistentVolumeSpec" => [
        field("rbd", "core.v1.RBDPersistentVolumeSource"),
        field("iscsi", "core.v1.ISCSIPersistentVolumeSource"),
        field("cephfs", "core.v1.CephFSPersistentVolumeSource"),
        field("fc", "core.v1.FCVolumeSource"),
        list("accessModes", "", NONE, "", ATOMIC),
        list("mountOptions", "", NONE, "", ATOMIC),
        field("nodeAffinity", "core.v1.VolumeNodeAffinity"),
    ],
    "core.v1.Pod" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.PodSpec"),
        field("status", "core.v1.PodStatus"),
    ],
    "core.v1.PodAffinity" => [
        list("requiredDuringSchedulingIgnoredDuringExecution", "core.v1.PodAffinityTerm", NONE, "", ATOMIC),
        list("preferredDuringSchedulingIgnoredDuringExecution", "core.v1.WeightedPodAffinityTerm", NONE, "", ATOMIC),
    ],
    "core.v1.PodAffinityTerm" => [
        field("labelSelector", "meta.v1.LabelSelector"),
        list("namespaces", "", NONE, "", ATOMIC),
        field("namespaceSelector", "meta.v1.LabelSelector"),
        list("matchLabelKeys", "", NONE, "", ATOMIC),
        list("mismatchLabelKeys", "", NONE, "", ATOMIC),
    ],
    "core.v1.PodAntiAffinity" => [
        list("requiredDuringSchedulingIgnoredDuringExecution", "core.v1.PodAffinityTerm", NONE, "", ATOMIC),
        list("preferredDuringSchedulingIgnoredDuringExecution", "core.v1.WeightedPodAffinityTerm", NONE, "", ATOMIC),
    ],
    "core.v1.PodDNSConfig" => [
        list("nameservers", "", NONE, "", ATOMIC),
        list("searches", "", NONE, "", ATOMIC),
        list("options", "", NONE, "", ATOMIC),
    ],
    "core.v1.PodSecurityContext" => [
        list("supplementalGroups", "", NONE, "", ATOMIC),
        list("sysctls", "", NONE, "", ATOMIC),
    ],
    "core.v1.PodSpec" => [
        list("volumes", "core.v1.Volume", MERGE_RETAIN, "name", lt_map(&["name"])),
        list("initContainers", "core.v1.Container", MERGE, "name", lt_map(&["name"])),
        list("containers", "core.v1.Container", MERGE, "name", lt_map(&["name"])),
        list("ephemeralContainers", "core.v1.EphemeralContainer", MERGE, "name", lt_map(&["name"])),
        field("securityContext", "core.v1.PodSecurityContext"),
        list("imagePullSecrets", "", MERGE, "name", lt_map(&["name"])),
        field("affinity", "core.v1.Affinity"),
        list("tolerations", "", NONE, "", ATOMIC),
        list("hostAliases", "core.v1.HostAlias", MERGE, "ip", lt_map(&["ip"])),
        field("dnsConfig", "core.v1.PodDNSConfig"),
        list("readinessGates", "", NONE, "", ATOMIC),
        list("topologySpreadConstraints", "core.v1.TopologySpreadConstraint", MERGE, "topologyKey", lt_map(&["topologyKey", "whenUnsatisfiable"])),
        list("schedulingGates", "", MERGE, "name", lt_map(&["name"])),
        list("resourceClaims", "", MERGE_RETAIN, "name", lt_map(&["name"])),
        field("resources", "core.v1.ResourceRequirements"),
    ],
    "core.v1.PodStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
        list("hostIPs", "", MERGE, "ip", ATOMIC),
        list("podIPs", "", MERGE, "ip", lt_map(&["ip"])),
        list("initContainerStatuses", "core.v1.ContainerStatus", NONE, "", ATOMIC),
        list("containerStatuses", "core.v1.ContainerStatus", NONE, "", ATOMIC),
        list("ephemeralContainerStatuses", "core.v1.ContainerStatus", NONE, "", ATOMIC),
        list("resourceClaimStatuses", "", MERGE_RETAIN, "name", lt_map(&["name"])),
    ],
    "core.v1.PodTemplate" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("template", "core.v1.PodTemplateSpec"),
    ],
    "core.v1.PodTemplateSpec" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.PodSpec"),
    ],
    "core.v1.PreferredSchedulingTerm" => [
        field("preference", "core.v1.NodeSelectorTerm"),
    ],
    "core.v1.Probe" => [
        field("exec", "core.v1.ExecAction"),
        field("httpGet", "core.v1.HTTPGetAction"),
    ],
    "core.v1.ProjectedVolumeSource" => [
        list("sources", "core.v1.VolumeProjection", NONE, "", ATOMIC),
    ],
    "core.v1.RBDPersistentVolumeSource" => [
        list("monitors", "", NONE, "", ATOMIC),
    ],
    "core.v1.RBDVolumeSource" => [
        list("monitors", "", NONE, "", ATOMIC),
    ],
    "core.v1.ReplicationController" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.ReplicationControllerSpec"),
        field("status", "core.v1.ReplicationControllerStatus"),
    ],
    "core.v1.ReplicationControllerSpec" => [
        field("template", "core.v1.PodTemplateSpec"),
    ],
    "core.v1.ReplicationControllerStatus" => [
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "core.v1.ResourceQuota" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.ResourceQuotaSpec"),
    ],
    "core.v1.ResourceQuotaSpec" => [
        list("scopes", "", NONE, "", ATOMIC),
        field("scopeSelector", "core.v1.ScopeSelector"),
    ],
    "core.v1.ResourceRequirements" => [
        list("claims", "", NONE, "", lt_map(&["name"])),
    ],
    "core.v1.ResourceStatus" => [
        list("resources", "", NONE, "", lt_map(&["resourceID"])),
    ],
    "core.v1.ScopeSelector" => [
        list("matchExpressions", "core.v1.ScopedResourceSelectorRequirement", NONE, "", ATOMIC),
    ],
    "core.v1.ScopedResourceSelectorRequirement" => [
        list("values", "", NONE, "", ATOMIC),
    ],
    "core.v1.Secret" => [
        field("metadata", "meta.v1.ObjectMeta"),
    ],
    "core.v1.SecretProjection" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.SecretVolumeSource" => [
        list("items", "", NONE, "", ATOMIC),
    ],
    "core.v1.SecurityContext" => [
        field("capabilities", "core.v1.Capabilities"),
    ],
    "core.v1.Service" => [
        field("metadata", "meta.v1.ObjectMeta"),
        field("spec", "core.v1.ServiceSpec"),
        field("status", "core.v1.ServiceStatus"),
    ],
    "core.v1.ServiceAccount" => [
        field("metadata", "meta.v1.ObjectMeta"),
        list("secrets", "", MERGE, "name", lt_map(&["name"])),
        list("imagePullSecrets", "", NONE, "", ATOMIC),
    ],
    "core.v1.ServiceSpec" => [
        list("ports", "", MERGE, "port", lt_map(&["port", "protocol"])),
        list("clusterIPs", "", NONE, "", ATOMIC),
        list("externalIPs", "", NONE, "", ATOMIC),
        list("loadBalancerSourceRanges", "", NONE, "", ATOMIC),
        list("ipFamilies", "", NONE, "", ATOMIC),
    ],
    "core.v1.ServiceStatus" => [
        field("loadBalancer", "core.v1.LoadBalancerStatus"),
        list("conditions", "", MERGE, "type", lt_map(&["type"])),
    ],
    "core.v1.TopologySelectorLabelRequirement" => [
        list("values", "", NONE, "", ATOMIC),
    ],
    "core.v1.TopologySelectorTerm" => [
        list("matchLabelExpressions", "core.v1.TopologySelectorLabelRequirement", NONE, "", ATOMIC),
    ],
    "core.v1.TopologySpreadConstraint" => [
        field("labelSelector", "meta.v1.LabelSelector"),
        list("matchLabelKeys", "", NONE, "", ATOMIC),
    ],
    "core.v1.Volume" => [
        field("secret", "core.v1.SecretVolumeSource"),
        field("iscsi", "core.v1.ISCSIVolumeSource"),
        field("rbd", "core.v1.RBDVolumeSource"),
        field("cephfs", "core.v1.CephFSVolumeSource"),
        field("downwardAPI", "core.v1.DownwardAPIVolumeSource"),
        field("fc", "core.v1.FCVolumeSource"),
        field("configMap", "core.v1.ConfigMapVolumeSource"),
        field("projected", "core.v1.ProjectedVolumeSource"),
        field("ephemeral", "core.v1.EphemeralVolumeSource"),
    ],
    "core.v1.VolumeNodeAffinity" => [
        field("required", "core.v1.NodeSelector"),
    ],
    "core.v1.VolumeProjection" => [
        field("secret", "core.v1.SecretProjection"),
        field("downwardAPI", "core.v1.DownwardAPIProjection"),
        field("configMap", "core.v1.ConfigMapProjection"),
        field("clusterTrustBundle", "core.v1.ClusterTrustBundleProjection"),
    ],
    "core.v1.WeightedPodAffinityTerm" => [
        field("podAffinityTerm", "core.v1.PodAffinityTerm"),
    ],
};
