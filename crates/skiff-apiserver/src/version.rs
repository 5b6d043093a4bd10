//! `/version`: the Kubernetes version we serve, shaped as upstream's
//! `version.Info`. kubectl (and the gcloud kubectl dispatcher, which picks the
//! client matching `minor`) read `major`/`minor` as integer-like strings.

/// The Kubernetes minor version whose API we serve (k8s-openapi `v1_33`).
pub const KUBERNETES_MINOR: u32 = 33;
/// The patch release we claim to match.
pub const KUBERNETES_PATCH: u32 = 0;

/// The `/version` document.
pub fn info() -> serde_json::Value {
    let git_version = format!(
        "v1.{KUBERNETES_MINOR}.{KUBERNETES_PATCH}+skiff-{}",
        env!("CARGO_PKG_VERSION")
    );
    serde_json::json!({
        "major": "1",
        "minor": KUBERNETES_MINOR.to_string(),
        "emulationMajor": "1",
        "emulationMinor": KUBERNETES_MINOR.to_string(),
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": (KUBERNETES_MINOR - 1).to_string(),
        "gitVersion": git_version,
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("SKIFF_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "n/a (Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The architecture in Go's spelling, as kubectl and users expect.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn integer_like_major_minor() {
        let v = super::info();
        assert_eq!(v["major"], "1");
        assert_eq!(v["minor"], "33");
        assert!(v["gitVersion"].as_str().unwrap().starts_with("v1.33."));
        let platform = v["platform"].as_str().unwrap();
        assert!(platform.starts_with("linux/"), "{platform}");
    }
}
