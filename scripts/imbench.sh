#!/usr/bin/env bash
# imbench.sh — Tern's IM figures with firmware-sim against a real
# `tern serve`, beside plain mochi and mosquitto raw figures run
# interleaved in the same session (A B C A B C …). Everything listens on
# 127.0.0.1 and every broker is killed on exit.
#
#   scripts/imbench.sh dm|half|catchup|fanout|storm|drop
#
# Tern runs its default config (configs/tern.yaml) except: loopback
# addresses, log_level warn, an admin token, and cheap argon2 parameters
# so provisioning thousands of users is quick (passwords are never on a
# measured path: devices authenticate with tokens, SHA-256). Users and
# tokens are provisioned once per shape with `firmware-sim provision`
# into a data dir that is copied afresh for every round.
#
# Environment (defaults in brackets): ROUNDS [3] DUR [10s] RATE [half: 10000]
#   STORM [10000] OUT [bench-out/im] BROKERS ["tern mochi mosquitto"]
set -euo pipefail

MODE=${1:?usage: $0 dm|half|catchup|fanout|storm|drop}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10s}
RATE=${RATE:-10000}
STORM=${STORM:-10000}
OUT=${OUT:-bench-out/im}
BROKERS=${BROKERS:-"tern mochi mosquitto"}
SRC_IPS=127.0.0.2-127.0.0.20
TOKEN=imbench-admin-token

cd "$(dirname "$0")/.."
mkdir -p "$OUT/bin" "$OUT/results"
BIN=$OUT/bin
ulimit -n "$(ulimit -Hn)"

go build -o "$BIN/tern" ./cmd/tern
go build -o "$BIN/mochi-plain" ./cmd/mochi-plain
go build -o "$BIN/firmware-sim" ./cmd/firmware-sim

cat >"$OUT/tern.yaml" <<EOF
log_level: warn
admin_token: $TOKEN
mqtt: {addr: "127.0.0.1:1895"}
ws: {addr: ""}
http: {addr: "127.0.0.1:8095"}
auth: {argon2_time: 1, argon2_memory: 1MiB}
EOF

BROKER_PID=""
cleanup() {
	if [[ -n "$BROKER_PID" ]]; then
		kill "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	BROKER_PID=""
}
trap cleanup EXIT INT TERM

port_of() {
	case $1 in
	tern) echo 1895 ;;
	mochi) echo 1894 ;;
	mosquitto) echo 1896 ;;
	esac
}

# start NAME [DATA]: a fresh broker; tern serves DATA (a copy of a
# provisioned snapshot). Waits (bounded) for the port.
start() {
	local name=$1 port
	port=$(port_of "$name")
	case $name in
	tern) "$BIN/tern" serve -c "$OUT/tern.yaml" --data "$2" 2>>"$OUT/tern.log" & ;;
	mochi) "$BIN/mochi-plain" --addr "127.0.0.1:$port" 2>>"$OUT/mochi.log" & ;;
	mosquitto)
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$OUT/mosquitto.conf"
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

# snapshot NAME ARGS…: provisions a fresh Tern once into $OUT/snap-NAME
# (users, tokens, groups) and keeps the devices file beside it.
snapshot() {
	local name=$1
	shift
	local snap=$OUT/snap-$name
	if [[ -f $snap.json ]]; then return 0; fi
	rm -rf "$snap" "$snap.json"
	start tern "$snap"
	timeout 900 "$BIN/firmware-sim" provision --server http://127.0.0.1:8095 --admin-token "$TOKEN" \
		--mqtt 127.0.0.1:1895 --workers 8 --out "$snap.json" "$@" >&2
	stop
}

# fresh NAME: a copy of the snapshot to serve for one round.
fresh() {
	rm -rf "$OUT/data"
	cp -a "$OUT/snap-$1" "$OUT/data"
	echo "$OUT/data"
}

im() { # im RESULT SNAP ARGS…
	local result=$1 snap=$2
	shift 2
	timeout 900 "$BIN/firmware-sim" run --json --mqtt 127.0.0.1:1895 --devices-file "$OUT/snap-$snap.json" "$@" \
		>"$OUT/results/$result.json"
}

raw() { # raw NAME RESULT ARGS…
	local name=$1 result=$2
	shift 2
	timeout 900 "$BIN/firmware-sim" run --raw --json --mqtt "127.0.0.1:$(port_of "$name")" "$@" >"$OUT/results/$result.json"
}

line() { # line RESULT
	jq -r --arg r "$1" '"\($r): \(.delivered_per_sec|floor) msg/s, p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) ms, delivered \(.delivered)/\(.expected), lost \(.lost) dup \(.duplicated) ooo \(.out_of_order), rejected \(.rejected), resent \(.resent), gaps \(.gaps), catch-up p50 \(.catch_up_ms.p50) ms, storm \(.storm_seconds // "-") s"' "$OUT/results/$1.json" >&2
}

# interleave TAG ARGS…: ROUNDS × (Tern IM, mochi raw, mosquitto raw) of
# the same shape; IM and raw get the same ARGS.
interleave() {
	local tag=$1 snap=$2
	shift 2
	for r in $(seq "$ROUNDS"); do
		for b in $BROKERS; do
			if [[ $b == tern ]]; then
				start tern "$(fresh "$snap")"
				im "$tag-tern-$r" "$snap" "$@"
			else
				start "$b"
				raw "$b" "$tag-$b-$r" "$@"
			fi
			line "$tag-$b-$r"
			stop
		done
	done
}

case $MODE in
dm) # 100 DM pairs, QoS 1, 64 B, closed loop (32 in flight per device)
	snapshot pairs --users 200
	interleave dm pairs --scenario dm --devices 200 --rate 0 --window 32 --duration "$DUR" --drain 10s --qos 1 --payload 64
	;;
half) # the same pairs at a fixed offered load
	snapshot pairs --users 200
	interleave "dm$RATE" pairs --scenario dm --devices 200 --rate "$RATE" --duration "$DUR" --drain 10s --qos 1 --payload 64
	;;
catchup) # one device syncs 1,000 events it missed (a stream of 1,000)
	snapshot pairs --users 200
	for r in $(seq "$ROUNDS"); do
		start tern "$(fresh pairs)"
		# 2 devices × 100 msg/s for 5 s: 1,000 events in each user's stream.
		im "fill-$r" pairs --scenario dm --devices 2 --rate 200 --duration 5s --drain 10s --qos 1 --payload 64
		line "fill-$r"
		im "catchup-$r" pairs --scenario idle --devices 1 --replay --duration 2s
		jq -r '"catch-up: \(.catch_up_ms)"' "$OUT/results/catchup-$r.json" >&2
		stop
	done
	;;
fanout) # one sender, a group of 1,000 members (one device each)
	snapshot group1000 --users 1000 --groups 1 --group-size 1000
	interleave fanout group1000 --scenario group --group-size 1000 --senders 1 --devices 1000 --rate 10 --duration 10s \
		--drain 20s --qos 1 --payload 64 --source-ips "$SRC_IPS" --connect-concurrency 256
	;;
storm) # STORM devices cut at once; IM: back = reconnected (token) + hello + synced
	snapshot "storm$STORM" --users "$STORM"
	interleave "storm$STORM" "storm$STORM" --scenario idle --devices "$STORM" --duration 25s --storm-at 10s \
		--source-ips "$SRC_IPS" --connect-concurrency 512
	;;
drop) # 200 devices in DM pairs over links dropping 20 %/s, 60 s
	snapshot pairs --users 200
	start tern "$(fresh pairs)"
	im drop pairs --scenario dm --devices 200 --rate 1000 --duration 60s --drain 60s --qos 1 --payload 64 \
		--drop 0.2 --outage 200ms
	line drop
	stop
	;;
*) echo "usage: $0 dm|half|catchup|fanout|storm|drop" >&2; exit 2 ;;
esac
