#!/usr/bin/env bash
# soak.sh — the hardening soak of docs/security.md: legitimate DM load from
# firmware-sim, first alone (the baseline), then for SOAK with every attack
# of cmd/tern-attack running at the same time. Reports the legitimate
# devices' p99 in both phases, loss, the broker's RSS over time and every
# failed victim check. Everything listens on 127.0.0.0/8 and the broker is
# killed on exit.
#
#   scripts/soak.sh            # SOAK=10m BASE=2m RATE=1000
#
# Environment (defaults in brackets): SOAK [10m] BASE [2m] RATE [1000]
#   DEVICES [200] OUT [bench-out/soak] ATTACKS [all]
set -euo pipefail

SOAK=${SOAK:-10m}
BASE=${BASE:-2m}
RATE=${RATE:-1000}
DEVICES=${DEVICES:-200}
OUT=${OUT:-bench-out/soak}
TOKEN=soak-admin-token
MQTT=127.0.0.1:1897
HTTP=http://127.0.0.1:8097

cd "$(dirname "$0")/.."
rm -rf "$OUT"
mkdir -p "$OUT/bin"
BIN=$OUT/bin
ulimit -n "$(ulimit -Hn)"

go build -o "$BIN/tern" ./cmd/tern
go build -o "$BIN/firmware-sim" ./cmd/firmware-sim
go build -o "$BIN/tern-attack" ./cmd/tern-attack

cat >"$OUT/tern.yaml" <<EOF
log_level: info
admin_token: $TOKEN
mqtt: {addr: "$MQTT"}
ws: {addr: ""}
http: {addr: "127.0.0.1:8097"}
auth: {argon2_time: 1, argon2_memory: 1MiB}
# The per-address connection limits are off by default (a NAT is one
# address); a deployment facing the internet sets them, and so does the soak.
limits: {max_connections_per_ip: 500, connect_rate_per_ip: 50, connect_burst_per_ip: 200}
EOF

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/tern" serve -c "$OUT/tern.yaml" --data "$OUT/data" 2>>"$OUT/tern.log" &
TERN_PID=$!
PIDS+=("$TERN_PID")
for _ in $(seq 100); do
	curl -fsS "$HTTP/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
if ! kill -0 "$TERN_PID" 2>/dev/null; then
	echo "tern did not start (is another broker on $MQTT?); see $OUT/tern.log" >&2
	exit 1
fi

# Legitimate users and tokens, attackers with passwords, victims' extra
# "check" device tokens.
"$BIN/firmware-sim" provision --server "$HTTP" --admin-token "$TOKEN" --mqtt "$MQTT" \
	--users "$DEVICES" --out "$OUT/devices.json" >&2
export TERN_ADMIN_TOKEN=$TOKEN
ATTACKERS=()
for a in atk1 atk2 atk3; do
	echo "attacker-pw-$a" | "$BIN/tern" user add "$a" --password-stdin --server "$HTTP" >/dev/null
	ATTACKERS+=(--attacker "$a:attacker-pw-$a")
done
VICTIMS=()
for v in sim00001 sim00002 sim00003; do
	t=$("$BIN/tern" token create "$v" check --server "$HTTP")
	VICTIMS+=(--victim "$v:$t:check")
done

# rss: sample the broker's memory (kB) every 5 s into $OUT/rss-PHASE.txt:
# VmRSS, then RssAnon (heap, stacks: what the process holds) and RssFile
# (Badger's memory-mapped files: page cache the kernel reclaims).
rss() {
	while kill -0 "$TERN_PID" 2>/dev/null; do
		awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print r, a, f}' "/proc/$TERN_PID/status" >>"$OUT/rss-$1.txt"
		sleep 5
	done
}

load() { # load PHASE DURATION
	timeout 1800 "$BIN/firmware-sim" run --json --mqtt "$MQTT" --devices-file "$OUT/devices.json" \
		--scenario dm --devices "$DEVICES" --rate "$RATE" --duration "$2" --drain 10s --qos 1 --payload 64 \
		>"$OUT/$1.json"
}

echo "== baseline: $DEVICES devices, $RATE msg/s, $BASE" >&2
rss base &
RSS_PID=$!
load base "$BASE"
kill "$RSS_PID"

echo "== soak: the same load and every attack, $SOAK" >&2
rss soak &
RSS_PID=$!
attacks=()
[[ -n ${ATTACKS:-} ]] && attacks=(--attacks "$ATTACKS")
"$BIN/tern-attack" --mqtt "$MQTT" --duration "$SOAK" "${ATTACKERS[@]}" "${VICTIMS[@]}" "${attacks[@]}" \
	>"$OUT/attack.json" &
ATTACK_PID=$!
load soak "$SOAK"
wait "$ATTACK_PID"
kill "$RSS_PID"

for p in base soak; do
	jq -r --arg p "$p" '"\($p): \(.delivered_per_sec|floor) msg/s, p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) ms, delivered \(.delivered)/\(.expected), lost \(.lost) dup \(.duplicated) ooo \(.out_of_order), rejected \(.rejected)"' "$OUT/$p.json"
	awk -v p="$p" 'NR==1 {m=$1; a=$2; f=$3} {if ($1>m) m=$1; if ($2>a) a=$2; if ($3>f) f=$3; l=$1; la=$2} END {printf "%s RSS: max %d kB (anon max %d kB, file max %d kB), last %d kB (anon %d kB), samples %d\n", p, m, a, f, l, la, NR}' "$OUT/rss-$p.txt"
done
echo "soak anon RSS over time (kB, every 5 s): $(awk '{printf "%s ", $2}' "$OUT/rss-soak.txt")"
jq -c '{victim_checks, victim_failed, victim_failures, attacks}' "$OUT/attack.json"
