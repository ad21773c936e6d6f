#!/usr/bin/env bash
# Runs every test (make test) and, when some fail, repeats the failures at
# the end: a failing package's output can be long (the test cluster's logs
# of a component that died), and CI shows the end of the run.
set -uo pipefail

go=${GO:-go}
log=$(mktemp "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
trap 'rm -f "$log"' EXIT

"$go" test -count=1 -timeout 30m "$@" ./... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if ((rc != 0)); then
	echo
	echo "===== failures (repeated from above) ====="
	# A failed test's block: its "--- FAIL" line and the indented lines
	# under it; panics and build failures with the lines that follow.
	awk '
		/^(panic:|# |--- FAIL|FAIL)/ { keep = 1; n = 0; print; next }
		keep && /^[ \t]/ && n < 60 { print; n++; next }
		{ keep = 0 }
	' "$log"
fi
exit "$rc"
