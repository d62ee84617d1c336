#!/usr/bin/env bash
# perf.sh — the five figures of issue 15, Tern beside plain mochi (and
# mosquitto where it applies), interleaved in one run (A B C A B C …), with
# the broker's own CPU per delivered message read from /proc/PID/stat
# (utime + stime over the run ÷ messages delivered; with Tern's search
# worker process, its CPU too). Everything listens on
# 127.0.0.1; every broker is killed on exit.
#
#   scripts/perf.sh [dm|rate|sync|search|idle|storm|all]
#
#   dm     100 DM pairs, QoS 1, 64 B, closed loop, WINDOW [64] unacknowledged
#          publishes per sender: msg/s, CPU per message, p99, and whether
#          every acknowledged message arrived within the 10 s drain
#   rate   the same pairs at RATE [2000] msg/s offered: CPU per message, p99
#   sync   Tern alone, closed loop, store.sync_writes true vs false (pairs)
#   search Tern alone: the search index in its worker process (the default)
#          vs in the broker's process (search.process: false) vs no index
#          (search.enabled: false), at 5,000 msg/s offered and in a closed
#          loop, 32 in flight per sender
#   idle   IDLE [10000] devices (Tern: token login, subscribed, after
#          hello) vs raw subscribers: RSS delta per connection
#   storm  STORM [10000] devices cut at once; Tern: token auth + hello +
#          sync, raw: connect + subscribe
#   cluster one Tern node against a three-node Tern cluster on this
#          machine (three processes, embedded NATS, R3, every write
#          fsynced), the devices spread over the nodes (DM pairs always
#          span two), closed loop, CLWINDOW [1] in flight per sender, for
#          each of CLDEVICES ["16 128"] devices; CPU is all three nodes'
#
# Environment (defaults in brackets): ROUNDS [3] DUR [8s] WINDOW [64]
#   RATE [2000] IDLE [10000] STORM [10000] OUT [bench-out/perf]
#   BROKERS ["tern mochi mosquitto"] PORT [2895: tern; +1 mochi, +2
#   mosquitto, +1000 Tern's HTTP]
set -euo pipefail

MODE=${1:-all}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-8s}
WINDOW=${WINDOW:-64}
RATE=${RATE:-2000}
IDLE=${IDLE:-10000}
STORM=${STORM:-10000}
OUT=${OUT:-bench-out/perf}
BROKERS=${BROKERS:-"tern mochi mosquitto"}
CLWINDOW=${CLWINDOW:-1}
CLDEVICES=${CLDEVICES:-"16 128"}
PORT=${PORT:-2895}
HTTP=$((PORT + 1000))
SRC_IPS=127.0.0.2-127.0.0.20
TOKEN=perf-admin-token

cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin" "$OUT/results"
BIN=$OUT/bin
ulimit -n "$(ulimit -Hn)"

go build -o "$BIN/tern" ./cmd/tern
go build -o "$BIN/mochi-plain" ./cmd/mochi-plain
go build -o "$BIN/firmware-sim" ./cmd/firmware-sim

# tern.yaml: the default config (configs/tern.yaml) except loopback
# addresses, log level, an admin token and cheap argon2 (passwords are
# never on a measured path: devices log in with tokens).
base_cfg() {
	cat <<EOF
log_level: warn
admin_token: $TOKEN
mqtt: {addr: "127.0.0.1:$PORT"}
ws: {addr: ""}
http: {addr: "127.0.0.1:$HTTP"}
auth: {argon2_time: 1, argon2_memory: 1MiB}
EOF
}
base_cfg >"$OUT/tern.yaml"
{ base_cfg; echo "store: {sync_writes: false}"; } >"$OUT/tern-nosync.yaml"
{ base_cfg; echo "search: {process: false}"; } >"$OUT/tern-inline.yaml"
{ base_cfg; echo "search: {enabled: false}"; } >"$OUT/tern-nosearch.yaml"

BROKER_PID=""
NODE_PIDS=() # tern-cluster: every node (BROKER_PID is the first)
cleanup() {
	local p
	for p in $BROKER_PID "${NODE_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in $BROKER_PID "${NODE_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	BROKER_PID=""
	NODE_PIDS=()
}
trap cleanup EXIT INT TERM

port_of() {
	case $1 in
	tern-cluster) echo $((PORT + 10)) ;;
	tern*) echo "$PORT" ;;
	mochi) echo $((PORT + 1)) ;;
	mosquitto) echo $((PORT + 2)) ;;
	esac
}

# mqtt_of NAME: the MQTT address(es) the simulator dials.
mqtt_of() {
	local p
	p=$(port_of "$1")
	if [[ $1 == tern-cluster ]]; then
		echo "127.0.0.1:$p,127.0.0.1:$((p + 1)),127.0.0.1:$((p + 2))"
	else
		echo "127.0.0.1:$p"
	fi
}

# node_cfg I: node I (1..3) of the cluster, with its own MQTT, HTTP and
# NATS route ports and routes to the other two.
node_cfg() {
	local i=$1 j routes=()
	for j in 1 2 3; do
		if [[ $j != "$i" ]]; then routes+=("nats://127.0.0.1:$((PORT + 20 + j))"); fi
	done
	base_cfg | sed "s/:$PORT\"/:$((PORT + 9 + i))\"/; s/:$HTTP\"/:$((HTTP + 9 + i))\"/"
	echo "cluster: {name: perf, node: n$i, nats_listen: \"127.0.0.1:$((PORT + 20 + i))\", nats_routes: [${routes[0]}, ${routes[1]}]}"
}

# start_cluster DATA USERS: three fresh nodes under DATA/n1..n3; waits
# for their MQTT ports, then provisions USERS devices through node 1 into
# DATA/devices.json (a cluster's data cannot be copied from a snapshot).
start_cluster() {
	local i port
	for i in 1 2 3; do
		node_cfg "$i" >"$OUT/node$i.yaml"
		"$BIN/tern" serve -c "$OUT/node$i.yaml" --data "$1/n$i" 2>>"$OUT/tern-cluster.log" &
		NODE_PIDS+=($!)
	done
	BROKER_PID=${NODE_PIDS[0]}
	for i in 1 2 3; do
		port=$((PORT + 9 + i))
		for _ in $(seq 600); do
			if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
			sleep 0.1
		done
	done
	sleep 1
	timeout 900 "$BIN/firmware-sim" provision --server "http://127.0.0.1:$((HTTP + 10))" --admin-token "$TOKEN" \
		--mqtt "127.0.0.1:$((PORT + 10))" --workers 8 --out "$1/devices.json" --users "$2" >&2
}

# start NAME [DATA]: a fresh broker (Tern serves DATA); waits for its port.
start() {
	local name=$1 port
	port=$(port_of "$name")
	case $name in
	tern) "$BIN/tern" serve -c "$OUT/tern.yaml" --data "$2" 2>>"$OUT/tern.log" & ;;
	tern-*) "$BIN/tern" serve -c "$OUT/$name.yaml" --data "$2" 2>>"$OUT/tern.log" & ;;
	mochi) "$BIN/mochi-plain" --addr "127.0.0.1:$port" 2>>"$OUT/mochi.log" & ;;
	mosquitto)
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' "$port" >"$OUT/mosquitto.conf"
		mosquitto -c "$OUT/mosquitto.conf" 2>>"$OUT/mosquitto.log" &
		;;
	esac
	BROKER_PID=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			sleep 0.5
			return 0
		fi
		sleep 0.1
	done
	echo "$name did not listen on $port" >&2
	return 1
}

stop() {
	cleanup
	sleep 1
}

# cputicks: the broker's CPU ticks, and its children's (Tern's search
# worker) while they run.
cputicks() {
	local t=0 p
	for p in $BROKER_PID "${NODE_PIDS[@]:1}" $(for q in $BROKER_PID "${NODE_PIDS[@]:1}"; do pgrep -P "$q" || true; done); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# snapshot NAME USERS: a Tern data dir provisioned once (users, device
# tokens), copied afresh for every round.
snapshot() {
	local snap=$OUT/snap-$1
	if [[ -f $snap.json ]]; then return 0; fi
	rm -rf "$snap" "$snap.json"
	start tern "$snap"
	timeout 900 "$BIN/firmware-sim" provision --server "http://127.0.0.1:$HTTP" --admin-token "$TOKEN" \
		--mqtt "127.0.0.1:$PORT" --workers 8 --out "$snap.json" --users "$2" >&2
	stop
}

fresh() {
	rm -rf "$OUT/data"
	cp -a "$OUT/snap-$1" "$OUT/data"
	echo "$OUT/data"
}

# run NAME SNAP RESULT ARGS…: one broker, one simulator run; the result
# JSON gets the broker's CPU seconds over the run added as .broker_cpu_s.
run() {
	local name=$1 snap=$2 result=$3
	shift 3
	local mode=(--raw)
	if [[ $name == tern-cluster ]]; then
		rm -rf "$OUT/cluster"
		start_cluster "$OUT/cluster" "$(jq '.users | length' "$OUT/snap-$snap.json")"
		mode=(--devices-file "$OUT/cluster/devices.json")
	elif [[ $name == tern* ]]; then
		start "$name" "$(fresh "$snap")"
		mode=(--devices-file "$OUT/snap-$snap.json")
	else
		start "$name"
	fi
	local t0 t1 hz
	hz=$(getconf CLK_TCK)
	t0=$(cputicks)
	timeout 900 "$BIN/firmware-sim" run --json --mqtt "$(mqtt_of "$name")" "${mode[@]}" \
		--broker-pid "$BROKER_PID" "$@" >"$OUT/results/$result.tmp"
	t1=$(cputicks)
	jq --argjson c "$(((t1 - t0)))" --argjson hz "$hz" '. + {broker_cpu_s: ($c / $hz)}' \
		"$OUT/results/$result.tmp" >"$OUT/results/$result.json"
	rm "$OUT/results/$result.tmp"
	stop
	jq -r --arg r "$result" '"\($r): \(.delivered_per_sec|floor) msg/s, broker CPU \(if .delivered > 0 then (.broker_cpu_s * 1e6 / .delivered | floor | tostring) + " µs/msg" else "-" end), p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) ms, delivered \(.delivered)/\(.expected), lost \(.lost) dup \(.duplicated) ooo \(.out_of_order), storm \(.storm_seconds // "-") s, \((.broker_rss_per_conn // 0) / 100 | floor / 10) kB/conn"' \
		"$OUT/results/$result.json" >&2
}

# median GLOB JQ: the median of a figure over the matching results.
median() {
	jq -s "[.[] | $2] | sort | .[(length - 1) / 2 | floor]" $1
}

interleave() { # interleave TAG SNAP BROKERS ARGS…
	local tag=$1 snap=$2 brokers=$3
	shift 3
	for r in $(seq "$ROUNDS"); do
		for b in $brokers; do
			run "$b" "$snap" "$tag-$b-$r" "$@"
		done
	done
	printf '%s medians: ' "$tag" >&2
	for b in $brokers; do
		printf '%s %s msg/s %s µs/msg p99 %s ms lost %s storm %s s %s kB/conn; ' "$b" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" '.delivered_per_sec | floor')" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" 'if .delivered > 0 then .broker_cpu_s * 1e6 / .delivered | floor else 0 end')" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" '.latency_ms.p99')" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" '.lost')" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" '.storm_seconds // 0')" \
			"$(median "$OUT/results/$tag-$b-[0-9]*.json" '(.broker_rss_per_conn // 0) / 100 | floor / 10')" >&2
	done
	echo >&2
}

dm_args=(--scenario dm --devices 200 --duration "$DUR" --drain 10s --qos 1 --payload 64)

case $MODE in dm | rate | sync | search | all) snapshot pairs 200 ;; esac
case $MODE in idle | storm | all) snapshot "n$STORM" "$STORM" ;; esac
case $MODE in dm | all) interleave dm pairs "$BROKERS" "${dm_args[@]}" --rate 0 --window "$WINDOW" ;; esac
case $MODE in rate | all) interleave "rate$RATE" pairs "$BROKERS" "${dm_args[@]}" --rate "$RATE" ;; esac
case $MODE in sync | all) interleave sync pairs "tern tern-nosync" "${dm_args[@]}" --rate 0 --window 32 ;; esac
case $MODE in search | all)
	interleave search-half pairs "tern tern-inline tern-nosearch" "${dm_args[@]}" --rate 5000 --window 32
	interleave search-dm pairs "tern tern-inline tern-nosearch" "${dm_args[@]}" --rate 0 --window 32
	;;
esac
case $MODE in cluster)
	for n in $CLDEVICES; do
		snapshot "c$n" "$n"
		interleave "cluster$n" "c$n" "tern tern-cluster" --scenario dm --devices "$n" --duration "$DUR" \
			--drain 20s --qos 1 --payload 64 --rate 0 --window "$CLWINDOW"
	done
	;;
esac
case $MODE in idle | all)
	interleave "idle$IDLE" "n$STORM" "$BROKERS" --scenario idle --devices "$IDLE" --duration 5s \
		--source-ips "$SRC_IPS" --connect-concurrency 512
	;;
esac
case $MODE in storm | all)
	interleave "storm$STORM" "n$STORM" "$BROKERS" --scenario idle --devices "$STORM" --duration 25s --storm-at 10s \
		--source-ips "$SRC_IPS" --connect-concurrency 512
	;;
esac
