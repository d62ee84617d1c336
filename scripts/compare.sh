#!/usr/bin/env bash
# compare.sh — the same plain-MQTT load against Tern, plain mochi v2.7.9
# and mosquitto on this machine, interleaved (A B C A B C …), with medians
# and ratios. Everything listens on 127.0.0.1 and is killed on exit.
#
#   scripts/compare.sh [dm|idle|storm|all]
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DUR [10s]  PAIRS [100]  QOS [1]  PAYLOAD [64]  WINDOW [32]
#   RATE [0: closed loop, each client keeps WINDOW in flight; else msgs/s total]
#   IDLE [10000]  STORM [10000]  BROKERS ["tern mochi mosquitto"]
#   OUT [bench-out]
set -euo pipefail

MODE=${1:-all}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10s}
PAIRS=${PAIRS:-100}
QOS=${QOS:-1}
PAYLOAD=${PAYLOAD:-64}
WINDOW=${WINDOW:-32}
RATE=${RATE:-0}
IDLE=${IDLE:-10000}
STORM=${STORM:-10000}
BROKERS=${BROKERS:-"tern mochi mosquitto"}
OUT=${OUT:-bench-out}
SRC_IPS=127.0.0.2-127.0.0.20

cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin" "$OUT/results"
BIN=$OUT/bin
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== build" >&2
go build -o "$BIN/tern" ./cmd/tern
go build -o "$BIN/mochi-plain" ./cmd/mochi-plain
go build -o "$BIN/firmware-sim" ./cmd/firmware-sim
command -v mosquitto >/dev/null || { echo "mosquitto not installed: BROKERS without it" >&2; BROKERS=${BROKERS//mosquitto/}; }

BROKER_PID=""
cleanup() {
	if [[ -n "$BROKER_PID" ]]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT INT TERM

port_of() {
	case $1 in
	tern) echo 1885 ;;
	mochi) echo 1884 ;;
	mosquitto) echo 1886 ;;
	esac
}

# start NAME: starts a fresh broker and waits (bounded) for its port.
start() {
	local name=$1 port
	port=$(port_of "$name")
	case $name in
	tern)
		rm -rf "$OUT/data-tern"
		"$BIN/tern" serve -c configs/bench.yaml --data "$OUT/data-tern" 2>"$OUT/tern.log" &
		;;
	mochi)
		"$BIN/mochi-plain" --addr "127.0.0.1:$port" 2>"$OUT/mochi.log" &
		;;
	mosquitto)
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$OUT/mosquitto.conf"
		mosquitto -c "$OUT/mosquitto.conf" 2>"$OUT/mosquitto.log" &
		;;
	esac
	BROKER_PID=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			sleep 0.5 # let it settle (tern publishes im/sys/server)
			return 0
		fi
		sleep 0.1
	done
	echo "$name did not listen on $port" >&2
	return 1
}

stop() {
	cleanup
	BROKER_PID=""
	sleep 1 # let TIME_WAIT settle a little between runs
}

sim() { # sim NAME RESULT ARGS…
	local name=$1 result=$2
	shift 2
	timeout 600 "$BIN/firmware-sim" run --raw --json --mqtt "127.0.0.1:$(port_of "$name")" "$@" >"$OUT/results/$result.json"
}

median() { # median FILE-GLOB JQ-EXPR
	jq -s "[.[] | $2] | sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end" $1
}

dm() {
	local load="closed loop (window $WINDOW)" tag=dm
	if [[ $RATE != 0 ]]; then load="$RATE msg/s offered"; tag=dm$RATE; fi
	echo "== Raw DM pairs: $PAIRS pairs, QoS $QOS, $PAYLOAD B, $load, $DUR × $ROUNDS rounds" >&2
	for r in $(seq "$ROUNDS"); do
		for b in $BROKERS; do
			start "$b"
			sim "$b" "$tag-$b-$r" --scenario dm --devices $((2 * PAIRS)) --rate "$RATE" --window "$WINDOW" \
				--duration "$DUR" --drain 10s --qos "$QOS" --payload "$PAYLOAD"
			jq -r --arg b "$b" --arg r "$r" '"round \($r) \($b): \(.delivered_per_sec|floor) msg/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, lost \(.lost)"' "$OUT/results/$tag-$b-$r.json" >&2
			stop
		done
	done
	printf '\n%-10s %12s %10s %10s %8s %8s\n' broker "msg/s(med)" "p50 ms" "p99 ms" lost "vs mochi"
	local base
	base=$(median "$OUT/results/$tag-mochi-*.json" .delivered_per_sec 2>/dev/null || echo 0)
	for b in $BROKERS; do
		local v p50 p99 lost
		v=$(median "$OUT/results/$tag-$b-*.json" .delivered_per_sec)
		p50=$(median "$OUT/results/$tag-$b-*.json" .latency_ms.p50)
		p99=$(median "$OUT/results/$tag-$b-*.json" .latency_ms.p99)
		lost=$(median "$OUT/results/$tag-$b-*.json" .lost)
		printf '%-10s %12.0f %10.2f %10.2f %8.0f %8s\n' "$b" "$v" "$p50" "$p99" "$lost" \
			"$(awk -v v="$v" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", v / b; else print "-" }')"
	done
}

idle() {
	echo "== Idle connections: $IDLE subscribers, $ROUNDS rounds" >&2
	for r in $(seq "$ROUNDS"); do
		for b in $BROKERS; do
			start "$b"
			sim "$b" "idle-$b-$r" --scenario idle --devices "$IDLE" --duration 5s \
				--source-ips "$SRC_IPS" --broker-pid "$BROKER_PID" --connect-concurrency 512
			jq -r --arg b "$b" --arg r "$r" '"round \($r) \($b): \(.online) online, \(.connect_per_sec|floor) conn/s, RSS \(.broker_rss_before/1048576|floor) → \(.broker_rss_after/1048576|floor) MiB, \(.broker_rss_per_conn/1000*10|floor/10) kB/conn"' "$OUT/results/idle-$b-$r.json" >&2
			stop
		done
	done
	printf '\n%-10s %14s %14s %12s\n' broker "kB/conn(med)" "conn/s(med)" "vs mochi"
	local base
	base=$(median "$OUT/results/idle-mochi-*.json" .broker_rss_per_conn 2>/dev/null || echo 0)
	for b in $BROKERS; do
		local v c
		v=$(median "$OUT/results/idle-$b-*.json" .broker_rss_per_conn)
		c=$(median "$OUT/results/idle-$b-*.json" .connect_per_sec)
		printf '%-10s %14.1f %14.0f %12s\n' "$b" "$(awk -v v="$v" 'BEGIN { print v / 1000 }')" "$c" \
			"$(awk -v v="$v" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", v / b; else print "-" }')"
	done
}

storm() {
	echo "== Reconnect storm: $STORM devices cut at once, $ROUNDS rounds" >&2
	for r in $(seq "$ROUNDS"); do
		for b in $BROKERS; do
			start "$b"
			sim "$b" "storm-$b-$r" --scenario idle --devices "$STORM" --duration 20s --storm-at 5s \
				--source-ips "$SRC_IPS" --connect-concurrency 512
			jq -r --arg b "$b" --arg r "$r" '"round \($r) \($b): \(.storm_devices) back in \(.storm_seconds) s (initial connect \(.connect_seconds) s)"' "$OUT/results/storm-$b-$r.json" >&2
			stop
		done
	done
	printf '\n%-10s %14s %12s\n' broker "storm s(med)" "vs mochi"
	local base
	base=$(median "$OUT/results/storm-mochi-*.json" .storm_seconds 2>/dev/null || echo 0)
	for b in $BROKERS; do
		local v
		v=$(median "$OUT/results/storm-$b-*.json" .storm_seconds)
		printf '%-10s %14.3f %12s\n' "$b" "$v" \
			"$(awk -v v="$v" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f", v / b; else print "-" }')"
	done
}

case $MODE in
dm) dm ;;
idle) idle ;;
storm) storm ;;
all) dm; idle; storm ;;
*) echo "usage: $0 [dm|idle|storm|all]" >&2; exit 2 ;;
esac
