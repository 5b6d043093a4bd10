# Shared by scripts/server and scripts/test: install missing Debian packages
# idempotently, or stop with a message naming exactly what to install.

# need_packages CMD:PACKAGE ... — for each command missing from PATH (or file
# missing, when CMD starts with '/'), install PACKAGE with apt-get.
need_packages() {
    local missing=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*}
        pkg=${pair#*:}
        if [[ $cmd == /* ]]; then
            [[ -e $cmd ]] && continue
        else
            command -v "$cmd" >/dev/null 2>&1 && continue
        fi
        missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "skiff: missing packages: ${missing[*]}" >&2
        echo "skiff: install them first, e.g.: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "skiff: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || { echo "skiff: apt-get update failed" >&2; exit 1; }
    apt-get install -y -qq "${missing[@]}" >/dev/null || {
        echo "skiff: apt-get install ${missing[*]} failed" >&2
        exit 1
    }
}

# Build-time needs of the workspace: etcd-client compiles etcd's protos, which
# needs protoc and the well-known protos (libprotobuf-dev).
need_build_packages() {
    need_packages protoc:protobuf-compiler \
        /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev
}
