#!/usr/bin/env bash
# bound.sh — how far any cluster design on JetStream can go on this
# machine: BenchmarkDM (one node on Badger against three on JetStream, R3,
# every write fsynced) with Tern's real store, and with the store's DM
# append replaced by the least a replicated, acknowledged DM must write
# (the bound build tag, internal/jetstore/bound.go):
#
#   none    no write at all: everything but the store
#   one     one JetStream message per DM, a plain publish, no compare-and-set
#   group   the DMs waiting on a node share one message (group commit)
#   group4  group with four messages in flight per node
#
# Rounds are interleaved (real none one group group4, real …). Each line
# is a benchmark result; msgs/s of nodes=3 over nodes=1 of the same run is
# the ratio issue 16 asks for.
#
#   scripts/bound.sh            # ROUNDS [3] N [3000] messages per run
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
N=${N:-3000}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/real.test" ./internal/cluster
go test -tags bound -c -o "$dir/bound.test" ./internal/cluster
bench() { # label filter [env…]
	local label=$1 filter=$2
	shift 2
	echo "== $label $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
	(cd "$dir" && env "$@" timeout 600 "$dir/${bin}.test" -test.run '^$' \
		-test.bench "$filter" -test.benchtime "${N}x" 2>&1 | grep '^Benchmark' || true)
}
for ((r = 1; r <= ROUNDS; r++)); do
	bin=real bench "real round $r" 'DM$'
	bin=bound bench "none round $r" 'DM$' TERN_BOUND=none
	bin=bound bench "one round $r" 'DM$' TERN_BOUND=one
	bin=bound bench "group round $r" 'DM$' TERN_BOUND=group
	bin=bound bench "group4 round $r" 'DM$/nodes=3' TERN_BOUND=group TERN_BOUND_INFLIGHT=4
done
