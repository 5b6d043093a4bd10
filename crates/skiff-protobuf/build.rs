//! Compiles the vendored `generated.proto` files into one `FileDescriptorSet`
//! (`$OUT_DIR/k8s.fds`), and gnostic's `OpenAPIv2.proto` (the protobuf form of
//! `/openapi/v2`) into another (`$OUT_DIR/openapiv2.fds`), with `protoc`, which the workspace build already needs
//! (scripts/lib.sh installs `protobuf-compiler`). Set `PROTOC` to use another.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Every proto file the descriptor set is built from, in a fixed order so the
/// output is deterministic; `--include_imports` pulls in the apimachinery ones.
const PROTOS: &[&str] = &[
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/certificates/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/storage/v1/generated.proto",
    "k8s.io/apimachinery/pkg/api/resource/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/schema/generated.proto",
    "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
];

/// The gnostic OpenAPI v2 messages; `google/protobuf/any.proto` comes with protoc.
const OPENAPI_V2_PROTOS: &[&str] = &["gnostic/openapiv2/OpenAPIv2.proto"];

fn main() {
    let Some(manifest) = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        panic!("CARGO_MANIFEST_DIR is not set");
    };
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("OUT_DIR is not set");
    };
    let root = manifest.join("proto");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    compile(&protoc, &root, PROTOS, &out_dir.join("k8s.fds"));
    compile(
        &protoc,
        &root,
        OPENAPI_V2_PROTOS,
        &out_dir.join("openapiv2.fds"),
    );
}

fn compile(
    protoc: &std::ffi::OsStr,
    root: &std::path::Path,
    protos: &[&str],
    out: &std::path::Path,
) {
    let status = Command::new(protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg(format!("--proto_path={}", root.display()))
        .args(protos)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("protoc failed ({s}) compiling {}", root.display()),
        Err(e) => panic!(
            "cannot run {protoc:?} ({e}): install protobuf-compiler (scripts/lib.sh does) or set PROTOC"
        ),
    }
}
