#!/usr/bin/env bash
# Installs what the dashboard's browser test (e2e TestDashboardInBrowser)
# needs on a Debian machine, and nothing already present:
#   - chromium (apt), driven headless by chromedp from `go test`;
#   - fonts-dejavu-core (apt), so pages render text the same everywhere.
# No npm package is needed to test: the dashboard's browser libraries are
# vendored into dashboard/assets/vendor (hack/vendor-ui.sh, which needs npm,
# only runs to change their versions).
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'install ok installed' || need+=(fonts-dejavu-core)
if ((${#need[@]} == 0)); then
	exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
echo "browser-test-deps: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Update first: on a fresh machine the package lists may be empty.
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
chromium --version
