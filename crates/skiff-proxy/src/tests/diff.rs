//! Full and incremental scripts.

use serde_json::json;

use super::{compute, ep, http, ready, service, slice};

fn lines(script: &str) -> Vec<&str> {
    script.lines().collect()
}

fn position(script: &[&str], line: &str) -> usize {
    script
        .iter()
        .position(|l| *l == line)
        .unwrap_or_else(|| panic!("{line:?} not in\n{}", script.join("\n")))
}

#[test]
fn full_script_replaces_the_table_in_one_transaction() {
    let rs = compute(
        &[service("web", json!({}))],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a")],
        )],
    );
    let script = rs.render_full();
    let l = lines(&script);
    assert_eq!(
        l[..3],
        [
            "add table ip skiff-proxy",
            "delete table ip skiff-proxy",
            "add table ip skiff-proxy"
        ]
    );
    // Declarations before rules before elements.
    let chain = position(&l, "add chain ip skiff-proxy pick-tcp-1");
    let hook = position(
        &l,
        "add chain ip skiff-proxy nat-prerouting { type nat hook prerouting priority dstnat; policy accept; }",
    );
    let rule = position(&l, "add rule ip skiff-proxy nat-prerouting jump services");
    let element = position(
        &l,
        "add element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 : goto pick-tcp-1 }",
    );
    assert!(chain < rule && hook < rule && rule < element);
}

#[test]
fn unchanged_objects_give_no_diff() {
    let make = || {
        compute(
            &[service("web", json!({"sessionAffinity": "ClientIP"}))],
            &[slice(
                "web",
                "a",
                http(8080),
                vec![ready("10.42.0.7", "node-a")],
            )],
        )
    };
    let (a, b) = (make(), make());
    assert!(b.diffable_from(&a));
    assert_eq!(b.render_diff(&a), None);
}

#[test]
fn endpoint_removal_touches_only_that_service() {
    let other = slice(
        "db",
        "a",
        json!([{"name": "pg", "port": 5432}]),
        vec![ready("10.42.3.3", "node-a")],
    );
    let db = service(
        "db",
        json!({"clusterIP": "10.43.0.6", "clusterIPs": ["10.43.0.6"], "ports": [{"name": "pg", "port": 5432}]}),
    );
    let web_slice = |second| {
        slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), second],
        )
    };
    // Without affinity the pick DNATs directly; with it, through endpoint
    // chains, and the one that goes is deleted after nothing points at it.
    for affinity in [false, true] {
        let web = service(
            "web",
            if affinity {
                json!({"sessionAffinity": "ClientIP"})
            } else {
                json!({})
            },
        );
        let before = compute(
            &[web.clone(), db.clone()],
            &[web_slice(ready("10.42.1.9", "node-a")), other.clone()],
        );
        let after = compute(
            &[web, db.clone()],
            &[
                web_slice(ep("10.42.1.9", "node-a", false, false, true)),
                other.clone(),
            ],
        );
        assert!(after.diffable_from(&before));
        let script = after.render_diff(&before).unwrap();
        let l = lines(&script);
        let unhairpin = position(
            &l,
            "delete element ip skiff-proxy hairpin-endpoints { 10.42.1.9 . 10.42.1.9 }",
        );
        let gone = "endpoint-default/web/tcp/80__10.42.1.9/8080";
        let kept = "endpoint-default/web/tcp/80__10.42.0.7/8080";
        if affinity {
            let flush_service =
                position(&l, "flush chain ip skiff-proxy service-default/web/tcp/80");
            let new_pick = position(
                &l,
                &format!("add rule ip skiff-proxy service-default/web/tcp/80 goto {kept}"),
            );
            assert!(unhairpin < flush_service && flush_service < new_pick);
            let flush_gone = position(&l, &format!("flush chain ip skiff-proxy {gone}"));
            let delete_gone = position(&l, &format!("delete chain ip skiff-proxy {gone}"));
            assert!(new_pick < flush_gone && flush_gone < delete_gone);
            assert!(!script.contains(&format!("chain ip skiff-proxy {kept}")));
        } else {
            assert!(!script.contains("endpoint-"), "{script}");
            // Draw 1 is gone and the dispatch moves to the pick of one
            // (db's already); the shared pick of two goes once unused.
            let undraw = position(
                &l,
                "delete element ip skiff-proxy service-endpoints-tcp { 10.43.0.5 . 80 . 1 }",
            );
            let undispatch = position(
                &l,
                "delete element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 }",
            );
            let dispatch = position(
                &l,
                "add element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 : goto pick-tcp-1 }",
            );
            let delete_pick = position(&l, "delete chain ip skiff-proxy pick-tcp-2");
            assert!(unhairpin < dispatch && undraw < dispatch && undispatch < dispatch);
            assert!(dispatch < delete_pick);
            assert!(!script.contains("add chain"), "{script}");
            assert!(!script.contains("service-default"), "{script}");
        }
        assert!(
            !script.contains("db") && !script.contains("10.42.3.3"),
            "the other Service is untouched:\n{script}"
        );
        assert!(
            !script.contains("table"),
            "no table-wide command:\n{script}"
        );
    }
}

#[test]
fn replacing_an_endpoint_of_a_cluster_ip_service_changes_only_elements() {
    let with = |ip: &str| {
        compute(
            &[service("web", json!({}))],
            &[slice(
                "web",
                "a",
                http(8080),
                vec![ready("10.42.0.7", "node-a"), ready(ip, "node-a")],
            )],
        )
    };
    let script = with("10.42.1.10").render_diff(&with("10.42.1.9")).unwrap();
    assert_eq!(
        lines(&script),
        [
            "delete element ip skiff-proxy hairpin-endpoints { 10.42.1.9 . 10.42.1.9 }",
            "delete element ip skiff-proxy service-endpoints-tcp { 10.43.0.5 . 80 . 1 }",
            "add element ip skiff-proxy hairpin-endpoints { 10.42.1.10 . 10.42.1.10 }",
            "add element ip skiff-proxy service-endpoints-tcp { 10.43.0.5 . 80 . 1 : 10.42.1.10 . 8080 }",
        ]
    );
}

#[test]
fn service_losing_all_endpoints_moves_to_reject_and_removal_deletes_elements() {
    let with = compute(
        &[service("web", json!({}))],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a")],
        )],
    );
    let without = compute(&[service("web", json!({}))], &[]);
    let script = without.render_diff(&with).unwrap();
    let l = lines(&script);
    let del = position(
        &l,
        "delete element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 }",
    );
    let add = position(
        &l,
        "add element ip skiff-proxy no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }",
    );
    // The pick chain nobody uses any more goes after the element pointing
    // at it.
    let chain = position(&l, "delete chain ip skiff-proxy pick-tcp-1");
    assert!(del < chain && add < chain);

    // And back: the element moves again, the pick chain comes back first.
    let script = with.render_diff(&without).unwrap();
    let l = lines(&script);
    let del = position(
        &l,
        "delete element ip skiff-proxy no-endpoint-services { 10.43.0.5 . tcp . 80 }",
    );
    let decl = position(&l, "add chain ip skiff-proxy pick-tcp-1");
    let add = position(
        &l,
        "add element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 : goto pick-tcp-1 }",
    );
    assert!(del < decl && decl < add);

    // A Service that goes away takes its elements and chains along.
    let none = compute(&[], &[]);
    let script = none.render_diff(&with).unwrap();
    assert!(script.contains("delete element ip skiff-proxy service-ips { 10.43.0.5 . tcp . 80 }"));
    assert!(script.contains("delete chain ip skiff-proxy pick-tcp-1"));
    assert!(
        script
            .contains("delete element ip skiff-proxy hairpin-endpoints { 10.42.0.7 . 10.42.0.7 }")
    );
}

#[test]
fn affinity_sets_survive_diffs_unless_their_timeout_changes() {
    let eps = || {
        vec![slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a"), ready("10.42.1.9", "node-b")],
        )]
    };
    let affinity = |t: u32| {
        service(
            "web",
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": t}}}),
        )
    };
    let before = compute(&[affinity(60)], &eps());
    let fewer = compute(
        &[affinity(60)],
        &[slice(
            "web",
            "a",
            http(8080),
            vec![ready("10.42.0.7", "node-a")],
        )],
    );
    let script = fewer.render_diff(&before).unwrap();
    // The remaining endpoint's set is neither flushed nor redeclared.
    assert!(
        !script.contains("affinity-default/web/tcp/80__10.42.0.7/8080 {"),
        "{script}"
    );
    assert!(
        script.contains("delete set ip skiff-proxy affinity-default/web/tcp/80__10.42.1.9/8080")
    );
    // A new timeout needs a new set: only a full replacement does that.
    let longer = compute(&[affinity(120)], &eps());
    assert!(!longer.diffable_from(&before));
}

#[test]
fn a_suffix_renames_every_set_a_rule_names_and_nothing_else() {
    use crate::ruleset::rule_text;
    assert_eq!(
        rule_text(
            "ip saddr @affinity-x__10.42.0.1/80 goto endpoint-x__10.42.0.1/80",
            "-g1"
        ),
        "ip saddr @affinity-x__10.42.0.1/80-g1 goto endpoint-x__10.42.0.1/80"
    );
    assert_eq!(
        rule_text("update @a { ip saddr } ip daddr @b", "-g1"),
        "update @a-g1 { ip saddr } ip daddr @b-g1"
    );
    assert_eq!(
        rule_text("ip daddr . meta l4proto vmap @m", ""),
        "ip daddr . meta l4proto vmap @m"
    );
    assert_eq!(rule_text("jump services", "-g1"), "jump services");
}

#[test]
fn installed_objects_come_from_a_terse_listing_of_our_table_only() {
    use crate::table::Installed;
    let listing = "table ip other {\n\tchain c {\n\t}\n}\ntable ip skiff-proxy {\n\tchain services {\n\t}\n\tchain \"service-default/web/tcp/80\" {\n\t}\n}\ntable ip skiff-proxy {\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n\tset hairpin-endpoints {\n\t\ttype ipv4_addr . ipv4_addr\n\t}\n}\n";
    let installed = Installed::parse(listing, "skiff-proxy");
    assert_eq!(installed.chains, ["service-default/web/tcp/80", "services"]);
    assert_eq!(
        installed.sets,
        [
            ("map".to_string(), "service-ips".to_string()),
            ("set".to_string(), "hairpin-endpoints".to_string())
        ]
    );
    assert!(installed.has_set("service-ips") && !installed.has_set("c"));
    assert_eq!(Installed::parse("", "skiff-proxy"), Installed::default());
}
