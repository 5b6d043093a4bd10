//! Source NAT for pod egress: traffic from the node's podCIDR to anywhere
//! outside the cluster CIDR leaves with the node's address, while pod-to-pod
//! traffic inside the cluster CIDR keeps the pod address (as flannel and the
//! CNI bridge plugin's `ipMasq` do). Multicast is left alone, as upstream
//! plugins do.
//!
//! The rules live in one nftables table owned by Skiff. Each script first
//! declares and deletes the table, then recreates it: one transaction that is
//! idempotent and leaves no stale rule from an earlier run.

use super::cidr::Ipv4Cidr;

/// Whether `name` is a usable nftables table name.
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64
}

/// The script that (re)creates the masquerade table.
pub fn masquerade_ruleset(table: &str, pod_cidr: Ipv4Cidr, cluster_cidr: Ipv4Cidr) -> String {
    format!(
        "table ip {table}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster_cidr} ip daddr != 224.0.0.0/4 masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// The script that removes the table; harmless when it does not exist.
pub fn remove_ruleset(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_pod_cidr_to_outside_cluster_only() {
        let script = masquerade_ruleset(
            "skiff-nat",
            "10.42.3.0/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
        );
        let lines: Vec<&str> = script.lines().map(str::trim).collect();
        assert_eq!(lines[0], "table ip skiff-nat");
        assert_eq!(lines[1], "delete table ip skiff-nat");
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"));
        assert!(lines.contains(
            &"ip saddr 10.42.3.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
        ));
    }

    #[test]
    fn remove_is_declare_then_delete() {
        assert_eq!(remove_ruleset("t1"), "table ip t1\ndelete table ip t1\n");
    }

    #[test]
    fn table_names() {
        for (name, ok) in [
            ("skiff-nat", true),
            ("skiff_test7", true),
            ("", false),
            ("1abc", false),
            ("a b", false),
            ("a;flush ruleset", false),
        ] {
            assert_eq!(valid_table_name(name), ok, "{name:?}");
        }
    }
}
