#!/usr/bin/env bash
# Installs everything sluice.dev/sluice/internal/testenv needs on a fresh Debian
# machine, and does nothing for the parts already present:
#   - etcd and Prometheus from Debian (apt: etcd-server, prometheus);
#   - kube-apiserver, kube-controller-manager, kube-scheduler built from source
#     (hack/build-k8s.sh) into ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s/vX.Y.Z/;
#   - kwok into ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kwok/vX.Y.Z/;
#   - a Gitea server for the forge tests (hack/build-gitea.sh) into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/gitea/vX.Y.Z/.
# The kwok version is read from internal/testenv/tools.go so the Go code and this
# script cannot drift apart.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"

install_apt() {
	local missing=()
	command -v etcd >/dev/null || missing+=(etcd-server)
	command -v prometheus >/dev/null || missing+=(prometheus)
	[[ ${#missing[@]} -eq 0 ]] && return 0

	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
	echo "testenv-tools: apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Update first: on a fresh machine the package lists may be empty.
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_kwok() {
	local version
	version=$(sed -n 's/^.*KwokVersion[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$repo_root/internal/testenv/tools.go")
	if [[ -z "$version" ]]; then
		echo "testenv-tools: cannot read KwokVersion from internal/testenv/tools.go" >&2
		exit 1
	fi
	local dir="$cache_root/kwok/$version"
	if [[ -x "$dir/kwok" ]] && "$dir/kwok" --version 2>/dev/null | grep -q "${version#v}"; then
		echo "testenv-tools: kwok $version already in $dir"
		return 0
	fi
	echo "testenv-tools: go install sigs.k8s.io/kwok/cmd/kwok@$version"
	local start
	start=$(date +%s)
	mkdir -p "$dir"
	(cd "$dir" && GOWORK=off GOFLAGS= CGO_ENABLED=0 GOBIN="$dir" \
		go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$version")
	echo "testenv-tools: kwok built in $(($(date +%s) - start))s"
}

install_apt
"$repo_root/hack/build-k8s.sh"
"$repo_root/hack/build-gitea.sh"
install_kwok
echo "testenv-tools: done"
