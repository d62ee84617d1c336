#!/bin/sh
# Reconnect storms of the presence hook (build tag storm): the in-process
# storm (TestReconnectStorm, TERN_STORM_DEVICES devices, default 1000) and
# the end-to-end TCP storm (TestTCPReconnectStorm, TERN_STORM_TCP devices,
# default 2000). Both assert their publication counts; docs/bench.md has
# the figures at 10,000 devices.
#
#   scripts/storm.sh                      # defaults
#   TERN_STORM_DEVICES=10000 TERN_STORM_TCP=10000 scripts/storm.sh
set -eu
cd "$(dirname "$0")/.."
export TERN_STORM_DEVICES="${TERN_STORM_DEVICES:-1000}"
export TERN_STORM_TCP="${TERN_STORM_TCP:-2000}"
exec go test -tags storm -count=1 -timeout 10m -v \
	-run '^(TestReconnectStorm|TestTCPReconnectStorm)$' ./hooks/presence/
