#!/usr/bin/env bash
# Starts the local test cluster (etcd, kube-apiserver, controller manager,
# scheduler, kwok, Istio CRDs, Prometheus) and keeps it up until Ctrl-C.
# Extra arguments go to the command, e.g. hack/testenv.sh -nodes 3.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo_root/hack/testenv-tools.sh"
cd "$repo_root"
exec go run ./internal/testenv/cmd/testenv "$@"
