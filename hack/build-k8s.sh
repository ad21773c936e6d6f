#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from the
# k8s.io/kubernetes module whose version matches k8s.io/client-go in go.mod
# (client-go v0.X.Y ships with Kubernetes v1.X.Y), into a per-user cache:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s/v1.X.Y/
#
# k8s.io/kubernetes cannot be required by Sluice's own module (its staging
# modules are replaced by relative paths), so a throwaway module in a temp dir
# requires it and pins every staging module to v0.X.Y. Nothing is built when
# the cache already holds binaries that report the wanted version.
#
# Usage: hack/build-k8s.sh [-f]     (-f rebuilds even when cached)
set -euo pipefail

force=false
if [[ "${1:-}" == "-f" ]]; then force=true; fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GOWORK=off CGO_ENABLED=0

# Read-only: this must never rewrite Sluice's go.mod or go.sum.
client_go=$(cd "$repo_root" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' k8s.io/client-go)
if [[ ! "$client_go" =~ ^v0\.[0-9]+\.[0-9]+ ]]; then
	echo "build-k8s: cannot map k8s.io/client-go $client_go to a Kubernetes release (want v0.X.Y)" >&2
	exit 1
fi
k8s_version="v1.${client_go#v0.}"
staging_version="$client_go"

cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/k8s/$k8s_version"
bins=(kube-apiserver kube-controller-manager kube-scheduler)

cached() {
	local b
	for b in "${bins[@]}"; do
		[[ -x "$cache_dir/$b" ]] || return 1
		# The version is stamped at link time, so this also catches a stale or
		# half-written binary.
		[[ "$("$cache_dir/$b" --version 2>/dev/null)" == "Kubernetes $k8s_version" ]] || return 1
	done
}

if ! $force && cached; then
	echo "build-k8s: Kubernetes $k8s_version binaries already in $cache_dir"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-k8sbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# The throwaway module gets its go.sum filled in as the build resolves it.
export GOFLAGS=-mod=mod

echo "build-k8s: fetching k8s.io/kubernetes@$k8s_version"
kube_gomod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z "$kube_gomod" || ! -f "$kube_gomod" ]]; then
	echo "build-k8s: could not locate go.mod of k8s.io/kubernetes@$k8s_version" >&2
	exit 1
fi
go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_gomod")
# Staging modules are the ones k8s.io/kubernetes replaces with ./staging paths.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$kube_gomod")
if [[ ${#staging[@]} -eq 0 ]]; then
	echo "build-k8s: found no staging modules in $kube_gomod" >&2
	exit 1
fi

{
	echo "module sluice.local/k8sbuild"
	echo
	echo "go ${go_directive:-1.26.0}"
	echo
	echo "require k8s.io/kubernetes $k8s_version"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		echo "	$m => $m $staging_version"
	done
	echo ")"
} >go.mod

# The -X stamps Kubernetes' own build uses, so /version and --version report
# the real release instead of v0.0.0-master. buildDate keeps its fixed default
# so the same inputs give the same binaries.
minor=${k8s_version#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean"
done

echo "build-k8s: building ${bins[*]} $k8s_version (staging $staging_version, ${#staging[@]} modules)"
start=$(date +%s)
# One invocation so the three binaries share compiled packages.
go build -trimpath -ldflags "$ldflags" -o "$work/bin/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler
echo "build-k8s: built in $(($(date +%s) - start))s"

mkdir -p "$cache_dir"
for b in "${bins[@]}"; do
	# Rename into place so a concurrent reader never sees a partial file.
	install -m 0755 "$work/bin/$b" "$cache_dir/.$b.tmp"
	mv -f "$cache_dir/.$b.tmp" "$cache_dir/$b"
done
cached || {
	echo "build-k8s: built binaries in $cache_dir do not report Kubernetes $k8s_version" >&2
	exit 1
}
echo "build-k8s: installed into $cache_dir"
