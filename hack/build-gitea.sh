#!/usr/bin/env bash
# Builds a Gitea server from the code.gitea.io/gitea module on the Go module
# proxy, for the forge tests, into a per-user cache:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/gitea/vX.Y.Z/gitea
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/gitea/vX.Y.Z/static/{templates,options,public}
#
# Gitea's own main package cannot be built with `go install` (its go.mod has
# replace directives), so a throwaway module requires code.gitea.io/gitea,
# copies those replace lines, and has a main that calls cmd.NewMainApp and
# cmd.RunMainApp as Gitea's does. Later Gitea releases declare the module
# path gitea.dev, which the proxy does not serve, hence the pinned version.
# Without the bindata tag Gitea reads its templates and locales from
# STATIC_ROOT_PATH, so they are copied beside the binary: the cache is
# complete even after `go clean -modcache`.
#
# The version is read from internal/testenv/gitea.go (GiteaVersion) so the Go code and
# this script cannot drift apart. Nothing is built when the cache already
# holds a binary that reports that version.
#
# Usage: hack/build-gitea.sh [-f]     (-f rebuilds even when cached)
set -euo pipefail

force=false
if [[ "${1:-}" == "-f" ]]; then force=true; fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^.*GiteaVersion[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$repo_root/internal/testenv/gitea.go")
if [[ -z "$version" ]]; then
	echo "build-gitea: cannot read GiteaVersion from internal/testenv/gitea.go" >&2
	exit 1
fi

cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/gitea/$version"

cached() {
	[[ -x "$cache_dir/gitea" && -d "$cache_dir/static/templates" && -d "$cache_dir/static/options" ]] || return 1
	# The version is stamped at link time, so this also catches a stale or
	# half-written binary.
	"$cache_dir/gitea" --version 2>/dev/null | grep -qi "^gitea version ${version#v} "
}

if ! $force && cached; then
	echo "build-gitea: Gitea $version already in $cache_dir"
	exit 0
fi

# SQLite is mattn/go-sqlite3, which needs cgo and a C compiler.
if ! command -v gcc >/dev/null; then
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
	echo "build-gitea: apt-get install gcc libc6-dev"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends gcc libc6-dev
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-giteabuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=1

echo "build-gitea: fetching code.gitea.io/gitea@$version"
download=$(go mod download -json "code.gitea.io/gitea@$version")
gitea_dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")
gitea_gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$download")
if [[ -z "$gitea_dir" || ! -f "$gitea_gomod" ]]; then
	echo "build-gitea: could not locate code.gitea.io/gitea@$version in the module cache" >&2
	exit 1
fi
go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gitea_gomod")

{
	echo "module sluice.local/giteabuild"
	echo
	echo "go ${go_directive:-1.26.0}"
	echo
	echo "require code.gitea.io/gitea $version"
	echo
	# Gitea's own replace lines (single-line form), without their comments.
	sed -n 's#^replace \([^ ]* => [^ ]* [^ ]*\).*#replace \1#p' "$gitea_gomod"
} >go.mod
if ! grep -q '^replace ' go.mod; then
	echo "build-gitea: found no replace lines in $gitea_gomod" >&2
	exit 1
fi

cat >main.go <<'EOF'
// Command gitea is Gitea's server, built from its module for Sluice's tests.
package main

import (
	"os"
	"time"

	"code.gitea.io/gitea/cmd"
	"code.gitea.io/gitea/modules/log"
	"code.gitea.io/gitea/modules/setting"

	// Gitea's main registers these markup renderers; keep them.
	_ "code.gitea.io/gitea/modules/markup/asciicast"
	_ "code.gitea.io/gitea/modules/markup/console"
	_ "code.gitea.io/gitea/modules/markup/csv"
	_ "code.gitea.io/gitea/modules/markup/markdown"
	_ "code.gitea.io/gitea/modules/markup/orgmode"

	"github.com/urfave/cli/v3"
)

var Version = "development" // set with -ldflags -X main.Version

func main() {
	setting.AppVer = Version
	setting.AppBuiltWith = " built for sluice tests"
	setting.AppStartTime = time.Now().UTC()
	cli.OsExiter = func(code int) {
		log.GetManager().Close()
		os.Exit(code)
	}
	app := cmd.NewMainApp(cmd.AppVersion{Version: Version, Extra: setting.AppBuiltWith})
	_ = cmd.RunMainApp(app, os.Args...)
	log.GetManager().Close()
}
EOF

echo "build-gitea: building Gitea $version (tags sqlite sqlite_unlock_notify)"
start=$(date +%s)
go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
	-ldflags "-s -w -X main.Version=${version#v}" -o "$work/gitea" .
echo "build-gitea: built in $(($(date +%s) - start))s"

mkdir -p "$cache_dir"
# Static files first and the binary last, renamed into place, so cached()
# never passes on a half-written cache.
rm -rf "$cache_dir/.static.tmp" "$cache_dir/static"
mkdir -p "$cache_dir/.static.tmp"
for d in templates options public; do
	cp -R "$gitea_dir/$d" "$cache_dir/.static.tmp/$d"
done
chmod -R u+w "$cache_dir/.static.tmp"
mv "$cache_dir/.static.tmp" "$cache_dir/static"
install -m 0755 "$work/gitea" "$cache_dir/.gitea.tmp"
mv -f "$cache_dir/.gitea.tmp" "$cache_dir/gitea"
cached || {
	echo "build-gitea: built binary in $cache_dir does not report Gitea $version" >&2
	exit 1
}
echo "build-gitea: installed into $cache_dir"
