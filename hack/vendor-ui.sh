#!/usr/bin/env bash
# Vendors the dashboard's browser libraries into dashboard/assets/vendor from
# the npm registry, reproducibly: hack/ui/package-lock.json pins each
# package's version and integrity hash, and `npm ci` refuses anything else.
# The copied files are committed, so `go build` never needs npm; run this
# only to change a version (edit hack/ui/package.json, then
# `npm install --package-lock-only` in hack/ui, then this script).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp hack/ui/package.json hack/ui/package-lock.json "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

dest=dashboard/assets/vendor
mkdir -p "$dest"
src="$work/node_modules/uplot"
version=$(node -p "require('$src/package.json').version")
cp "$src/dist/uPlot.iife.min.js" "$dest/uplot.min.js"
cp "$src/dist/uPlot.min.css" "$dest/uplot.min.css"
cp "$src/LICENSE" "$dest/uplot.LICENSE"
echo "uplot $version" > "$dest/VERSIONS"
sha256sum "$dest"/uplot.* | sed "s#$dest/##" >> "$dest/VERSIONS"
echo "vendored uplot $version into $dest"
