//! The official Kubernetes Python client (the version scripts/lib.sh
//! installs, in the virtualenv named by `SKIFF_PYTHON`) against the real
//! server: typed CRUD, conflicts, selectors and paging, defaults, the scale
//! subresource, validation errors, watches and deletecollection.

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_works_unchanged() {
    let python =
        std::env::var("SKIFF_PYTHON").unwrap_or_else(|_| "/opt/skiff-py/bin/python".into());
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(dir.path(), 0).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/official_client.py"
    );
    let kubeconfig = support::kubeconfig_path(dir.path());
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&kubeconfig)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {python} (install it with scripts/test): {e}"));
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    server.shutdown().await;
}
