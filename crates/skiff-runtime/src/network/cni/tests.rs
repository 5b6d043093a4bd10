//! Configuration loading, result parsing, and the ADD/DEL protocol against
//! fake plugins (shell scripts that log what they were given).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn a_conflist_keeps_its_plugins_and_a_conf_becomes_a_list_of_one() {
    let list = NetworkConfigList::parse(
        Path::new("/x/10-a.conflist"),
        br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap"}]}"#,
    )
    .unwrap();
    assert_eq!(list.name, "pods");
    assert_eq!(list.cni_version, "1.0.0");
    assert_eq!(list.plugin_type(0), "bridge");
    assert_eq!(list.plugin_type(1), "portmap");

    let single = NetworkConfigList::parse(
        Path::new("/x/a.conf"),
        br#"{"cniVersion":"0.4.0","name":"one","type":"bridge","ipam":{"type":"host-local"}}"#,
    )
    .unwrap();
    assert_eq!(single.plugins.len(), 1);
    assert_eq!(single.plugin_type(0), "bridge");
    assert_eq!(single.plugins[0]["ipam"]["type"], "host-local");

    for (bad, why) in [
        (&br#"[]"#[..], "not a JSON object"),
        (br#"{"type":"bridge"}"#, "missing network name"),
        (br#"{"name":"n","plugins":[]}"#, "no plugins"),
        (br#"{"name":"n","plugins":[{"bridge":"x"}]}"#, "no \"type\""),
        (br#"{"name":"n","#, "EOF"),
    ] {
        let err = NetworkConfigList::parse(Path::new("/x/bad.conf"), bad).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
}

#[test]
fn plugin_stdin_carries_list_name_version_and_prev_result() {
    let list = NetworkConfigList::parse(
        Path::new("/x/a.conflist"),
        br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"a","name":"ignored","cniVersion":"0.1.0"}]}"#,
    )
    .unwrap();
    let prev = json!({"ips": [{"address": "10.1.0.2/24"}]});
    let conf: Value = serde_json::from_slice(&list.plugin_stdin(0, Some(&prev)).unwrap()).unwrap();
    assert_eq!(
        conf,
        json!({"type": "a", "name": "pods", "cniVersion": "1.0.0", "prevResult": prev})
    );
    let conf: Value = serde_json::from_slice(&list.plugin_stdin(0, None).unwrap()).unwrap();
    assert!(conf.get("prevResult").is_none());
}

#[test]
fn first_config_in_lexical_order_skipping_broken_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        NetworkConfigList::load_first(dir.path()),
        Err(CniError::NoConfig(_))
    ));
    assert!(matches!(
        NetworkConfigList::load_first(&dir.path().join("absent")),
        Err(CniError::NoConfig(_))
    ));
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write("99-last.conf", r#"{"name":"last","type":"bridge"}"#);
    write(
        "20-b.conflist",
        r#"{"name":"b","plugins":[{"type":"bridge"}]}"#,
    );
    write("05-notes.txt", r#"{"name":"txt","type":"bridge"}"#);
    write("10-broken.conf", "{");
    assert_eq!(NetworkConfigList::load_first(dir.path()).unwrap().name, "b");
    write("15-a.json", r#"{"name":"a","type":"bridge"}"#);
    assert_eq!(NetworkConfigList::load_first(dir.path()).unwrap().name, "a");
}

#[test]
fn result_address_of_each_spec_version() {
    for (result, want) in [
        (
            json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                   "ips": [{"address": "fd00::5/64", "interface": 0},
                           {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}]}),
            Some("10.1.0.5"),
        ),
        (
            json!({"ips": [{"version": "6", "address": "fd00::5/64"}]}),
            Some("fd00::5"),
        ),
        (
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.2.0.9/16"}}),
            Some("10.2.0.9"),
        ),
        (json!({"cniVersion": "1.0.0", "ips": []}), None),
        (json!({"ips": [{"address": "garbage"}]}), None),
    ] {
        assert_eq!(
            result_address(&result),
            want.map(|w| w.parse().unwrap()),
            "{result}"
        );
    }
}

/// A plugin that appends `<name> <env...>` and its stdin to `calls.log` next
/// to it, prints `result` on ADD, and exits with `status`.
fn fake_plugin(dir: &Path, name: &str, result: &str, status: u8) {
    let log = dir.join("calls.log");
    let script = format!(
        "#!/bin/sh\n\
         input=$(cat)\n\
         echo \"{name} $CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_PATH\" >> {log}\n\
         echo \"$input\" >> {log}\n\
         if [ \"$CNI_COMMAND\" = ADD ] || [ {status} -ne 0 ]; then echo '{result}'; fi\n\
         exit {status}\n",
        log = log.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The logged calls: (header line, parsed stdin).
fn calls(dir: &Path) -> Vec<(String, Value)> {
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines
        .chunks(2)
        .map(|pair| (pair[0].to_owned(), serde_json::from_str(pair[1]).unwrap()))
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    net: CniNetwork,
}

impl Fixture {
    fn new(conflist: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "bin2", "conf", "state"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("conf/10-test.conflist"), conflist).unwrap();
        let net = CniNetwork::new(CniConfig {
            conf_dir: dir.path().join("conf"),
            bin_dirs: vec![dir.path().join("bin"), dir.path().join("bin2")],
            state_dir: dir.path().join("state"),
            ifname: "eth0".into(),
        });
        Self { dir, net }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
}

const CHAIN: &str = r#"{"cniVersion":"1.0.0","name":"testnet","plugins":[
    {"type":"first","setting":1},{"type":"second"}]}"#;
const FIRST: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.5/24"}]}"#;
const SECOND: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.6/24"}],"dns":{}}"#;

#[tokio::test]
async fn add_runs_the_chain_in_order_and_del_in_reverse_with_the_add_result() {
    let f = Fixture::new(CHAIN);
    fake_plugin(&f.bin(), "first", FIRST, 0);
    // The second plugin lives in the second bin dir: CNI_PATH is searched in order.
    fake_plugin(&f.dir.path().join("bin2"), "second", SECOND, 0);
    let netns = Path::new("/run/netns/test-a");
    let ip = f.net.setup("sb1", netns).await.unwrap();
    assert_eq!(
        ip,
        Some("10.9.0.6".parse().unwrap()),
        "the last result wins"
    );

    let cni_path = format!(
        "{}:{}",
        f.bin().display(),
        f.dir.path().join("bin2").display()
    );
    let first = calls(&f.bin());
    assert_eq!(
        first[0].0,
        format!("first ADD sb1 /run/netns/test-a eth0 {cni_path}")
    );
    assert_eq!(
        first[0].1,
        json!({"type": "first", "setting": 1, "name": "testnet", "cniVersion": "1.0.0"})
    );
    let second = calls(&f.dir.path().join("bin2"));
    assert_eq!(
        second[0].0,
        format!("second ADD sb1 /run/netns/test-a eth0 {cni_path}")
    );
    assert_eq!(
        second[0].1["prevResult"],
        serde_json::from_str::<Value>(FIRST).unwrap()
    );

    // Again: the recorded result, no plugin runs.
    assert_eq!(f.net.setup("sb1", netns).await.unwrap(), ip);
    assert_eq!(calls(&f.bin()).len(), 1);

    // DEL: second then first, both given the final ADD result, even after
    // the configuration on disk changed.
    std::fs::write(
        f.dir.path().join("conf/10-test.conflist"),
        r#"{"name":"other","type":"nothing"}"#,
    )
    .unwrap();
    f.net.teardown("sb1", netns).await.unwrap();
    let first = calls(&f.bin());
    let second = calls(&f.dir.path().join("bin2"));
    assert!(
        first[1]
            .0
            .starts_with("first DEL sb1 /run/netns/test-a eth0")
    );
    assert!(second[1].0.starts_with("second DEL sb1"));
    let final_result: Value = serde_json::from_str(SECOND).unwrap();
    assert_eq!(first[1].1["prevResult"], final_result);
    assert_eq!(second[1].1["prevResult"], final_result);
    assert_eq!(first[1].1["name"], "testnet");
    // The state is gone: a second teardown runs DEL of the current config,
    // whose plugin is missing.
    let err = f.net.teardown("sb1", netns).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("failed to find plugin \"nothing\" in path"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failing_plugin_fails_setup_with_its_message_and_is_rolled_back() {
    let f = Fixture::new(CHAIN);
    fake_plugin(&f.bin(), "first", FIRST, 0);
    fake_plugin(
        &f.bin(),
        "second",
        r#"{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}"#,
        1,
    );
    let err = f
        .net
        .setup("sb1", Path::new("/run/netns/x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin type=\"second\" ADD failed (code 11): failed to allocate; range full"
    );
    let log: Vec<String> = calls(&f.bin()).into_iter().map(|c| c.0).collect();
    let commands: Vec<String> = log
        .iter()
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        commands,
        ["first ADD", "second ADD", "second DEL", "first DEL"]
    );
    assert!(
        !f.net.attachment_path("sb1").exists(),
        "no state kept for a failed ADD"
    );

    // A plugin that dies without an error object: its stderr.
    let f = Fixture::new(CHAIN);
    std::fs::write(f.bin().join("first"), "#!/bin/sh\necho oops >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(
        f.bin().join("first"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let err = f
        .net
        .setup("sb1", Path::new("/run/netns/x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exit status: 3: oops"), "{err}");
}

#[tokio::test]
async fn no_config_means_not_ready_and_a_result_without_address_fails() {
    let f = Fixture::new(CHAIN);
    std::fs::remove_file(f.dir.path().join("conf/10-test.conflist")).unwrap();
    let not_ready = crate::sandbox::PodNetwork::ready(&f.net).unwrap_err();
    assert!(
        not_ready.starts_with("cni config uninitialized"),
        "{not_ready}"
    );
    assert!(f.net.setup("sb1", Path::new("/x")).await.is_err());
    // Teardown of a sandbox never set up, with no config: nothing to do.
    f.net.teardown("sb1", Path::new("/x")).await.unwrap();

    std::fs::write(
        f.dir.path().join("conf/10-one.conf"),
        r#"{"cniVersion":"1.0.0","name":"one","type":"first"}"#,
    )
    .unwrap();
    assert!(crate::sandbox::PodNetwork::ready(&f.net).is_ok());
    fake_plugin(&f.bin(), "first", r#"{"cniVersion":"1.0.0","ips":[]}"#, 0);
    let err = f.net.setup("sb1", Path::new("/x")).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("plugin chain \"one\" returned no IP address"),
        "{err}"
    );
}

#[tokio::test]
async fn loopback_runs_first_on_lo_when_installed() {
    let f = Fixture::new(CHAIN);
    fake_plugin(&f.bin(), "loopback", r#"{"cniVersion":"0.3.1"}"#, 0);
    fake_plugin(&f.bin(), "first", FIRST, 0);
    fake_plugin(&f.bin(), "second", SECOND, 0);
    f.net.setup("sb1", Path::new("/run/netns/y")).await.unwrap();
    let log = calls(&f.bin());
    assert!(
        log[0].0.starts_with("loopback ADD sb1 /run/netns/y lo "),
        "{log:?}"
    );
    assert_eq!(log[0].1["type"], "loopback");
    assert!(log[1].0.starts_with("first ADD"));
    f.net
        .teardown("sb1", Path::new("/run/netns/y"))
        .await
        .unwrap();
    let log = calls(&f.bin());
    assert!(
        log.last().unwrap().0.starts_with("loopback DEL sb1"),
        "{log:?}"
    );
}
