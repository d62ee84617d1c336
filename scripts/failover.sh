#!/bin/sh
# Failover over real processes (issue 16): TERN_FAILOVER_TRIALS (10)
# trials of kill -9 of the node that leads every JetStream asset, on a
# three-node loopback cluster; prints each trial, then p50/p99/max of
# "back and synced" (the device connected to another node, its sync
# answered with every acknowledged event) and of its first send after the
# kill, and fails on any acknowledged event lost or any gap in us/seq.
# Bounded: at most 50 trials, 30 minutes, loopback only.
#
#   scripts/failover.sh
#   TERN_FAILOVER_TRIALS=3 scripts/failover.sh
set -eu
cd "$(dirname "$0")/.."
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
go test -tags failover -count=1 -timeout 30m -v -run '^TestFailover$' ./internal/cluster/ >"$out" 2>&1 || status=$?
# The nodes' own logs are in $out too: show the test's lines.
grep -E '^(--- |PASS|FAIL|ok)|failover_test.go' "$out" || cat "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
