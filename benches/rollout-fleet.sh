#!/usr/bin/env bash
# A rollout across a simulated fleet served by one nginx:
#  1. what one unchanged agent poll costs nginx (a conditional GET of rollout.json and one of
#     the host's manifest, both answered 304), measured as nginx's own CPU time over POLLS
#     polls, and the hosts one nginx core serves on a 5-minute timer at that cost;
#  2. the time from `converge rollout OUT promote` until every one of HOSTS simulated hosts
#     (own tree, machine id and state dir; the real binary, 8 at a time) has converged the
#     promoted bundle, when each host runs once right after the promote. On a real fleet add
#     the timer's interval and splay: a host takes the change at its next run.
# Usage: benches/rollout-fleet.sh [HOSTS] [POLLS]   (defaults 100, 20000). Needs nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
hosts=${1:-100}
polls=${2:-20000}
parallel=8
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
nginx_pid=
cleanup() { [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/src/roles"
role() { printf '[[file]]\npath = "/etc/app.conf"\ncontent = "%s\\n"\n' "$1" > "$work/src/roles/app.toml"; }
"$bin" keygen "$work" >/dev/null
role v1
"$bin" publish "$work/src" "$work/out" --key "$work/converge.key" >/dev/null
role v2
"$bin" publish "$work/src" "$work/out" --candidate --key "$work/converge.key" >/dev/null
"$bin" rollout "$work/out" start --percent 10 --key "$work/converge.key" >/dev/null
serve_static "$work/out"

for i in $(seq 0 $((hosts - 1))); do
  h=$work/hosts/$i
  mkdir -p "$h/root/etc"
  printf '%032x\n' "$i" > "$h/root/etc/machine-id"
  cat > "$h/agent.toml" <<AGENT
source = "http://127.0.0.1:$port/"
roles = ["app"]
state_dir = "$h/state"
trusted_keys = ["$work/converge.pub"]
AGENT
done
round() {
  seq 0 $((hosts - 1)) | xargs -P "$parallel" -I{} sh -c \
    '"$0" apply --config "$1/{}/agent.toml" --root "$1/{}/root" -q >/dev/null; [ $? -le 2 ]' "$bin" "$work/hosts"
}
round
on=$(grep -l '"track": "candidate"' "$work"/hosts/*/state/last-run.json | wc -l)
echo "fleet of $hosts hosts at 10 %: $on on the candidate"

# 1. nginx's CPU per unchanged poll. With master_process off, $nginx_pid is the one worker.
# curl keeps its 32 connections alive, while each agent run opens its own: the cost of a
# TCP handshake per poll comes on top.
cpu() { awk '{print $14 + $15}' "/proc/$nginx_pid/stat"; }
etag() { curl -sI "http://127.0.0.1:$port/$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}'; }
half=$((polls / 2))
: > "$work/ng/logs/access.log"
c0=$(cpu); t0=$(date +%s%N)
curl -s --parallel --parallel-max 32 -w '%{http_code}\n' -H "If-None-Match: $(etag rollout.json)" \
  "http://127.0.0.1:$port/rollout.json?[1-$half]" > "$work/codes" 2>/dev/null
curl -s --parallel --parallel-max 32 -w '%{http_code}\n' -H "If-None-Match: $(etag manifest.json)" \
  "http://127.0.0.1:$port/manifest.json?[1-$half]" >> "$work/codes" 2>/dev/null
t1=$(date +%s%N); c1=$(cpu)
not304=$(grep -vc '^304$' "$work/codes" || true)
ticks=$(getconf CLK_TCK)
cpu_us=$(( (c1 - c0) * 1000000 / ticks ))
per_poll_us=$(( cpu_us * 2 / polls ))
echo "unchanged polls: $half polls ($polls requests, $not304 not 304) in $(( (t1 - t0) / 1000000 )) ms wall; nginx CPU $(( cpu_us / 1000 )) ms"
if [ "$per_poll_us" -gt 0 ]; then
  echo "  nginx CPU per poll: ${per_poll_us} us; one nginx core serves $(( 300 * 1000000 / per_poll_us )) hosts on a 5-minute timer"
else
  echo "  nginx CPU per poll: under 1 us (clock ticks too coarse; raise POLLS)"
fi

# 2. promote → every host converged.
t0=$(date +%s%N)
promoted=$("$bin" rollout "$work/out" promote --key "$work/converge.key" | awk '/^promoted/{print $NF}')
round
t1=$(date +%s%N)
done_hosts=$(grep -l "\"bundle_id\": \"$promoted\"" "$work"/hosts/*/state/last-run.json | wc -l)
echo "promote → $done_hosts of $hosts hosts on the promoted bundle: $(( (t1 - t0) / 1000000 )) ms ($parallel hosts at a time)"
