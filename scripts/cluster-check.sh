#!/bin/sh
# The cluster's longer checks (issue 16): the linearizability check of
# concurrent appends and reads on a three-node embedded JetStream cluster
# under a randomized schedule of leader step-downs and node restarts
# (build tag linearizability, porcupine), TERN_LIN_RUNS times with fresh
# seeds (each logs its seed), then the cluster DM benchmark (three nodes
# against one).
#
#   scripts/cluster-check.sh              # 3 runs
#   TERN_LIN_RUNS=10 scripts/cluster-check.sh
set -eu
cd "$(dirname "$0")/.."
go test -tags linearizability -count="${TERN_LIN_RUNS:-3}" -timeout 30m -v \
	-run '^TestLinearizability$' ./internal/jetstore/
exec go test -run '^$' -bench '^BenchmarkDM$' -benchtime 400x ./internal/cluster/
