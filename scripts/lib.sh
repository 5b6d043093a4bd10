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

# The official Kubernetes Python client (the version matching the API we
# serve), in its own virtualenv; its path is exported as SKIFF_PYTHON for the
# tests that drive the server with it.
SKIFF_PY_CLIENT_VERSION=33.1.0
need_python_client() {
    local venv=${SKIFF_PY_VENV:-/opt/skiff-py}
    export SKIFF_PYTHON="$venv/bin/python"
    if "$SKIFF_PYTHON" -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '$SKIFF_PY_CLIENT_VERSION')" 2>/dev/null; then
        return 0
    fi
    need_packages python3:python3 /usr/lib/python3/dist-packages/pip:python3-pip \
        /usr/share/doc/python3-venv:python3-venv
    python3 -m venv "$venv" || { echo "skiff: creating $venv failed" >&2; exit 1; }
    "$venv/bin/pip" install -q "kubernetes==$SKIFF_PY_CLIENT_VERSION" || {
        echo "skiff: pip install kubernetes==$SKIFF_PY_CLIENT_VERSION failed" >&2
        exit 1
    }
}
