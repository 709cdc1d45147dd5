#!/usr/bin/env bash
# The agent's steady state, in one session:
#  1. an unchanged poll (one conditional GET answered 304 by nginx) plus a no-op converge of
#     the shipped base role into a scratch root: median wall time and peak RSS over RUNS runs;
#  2. memory over a long-running `converge agent`: peak RSS after 10 runs vs after LONG runs.
# Usage: benches/agent-poll.sh [RUNS] [LONG]   (defaults 21, 1000). Needs nginx (scripts/test-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
runs=${1:-21}
long=${2:-1000}
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
nginx_pid=
cleanup() { [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/src" "$work/root/etc"
cp -r roles templates files "$work/src/"
"$bin" publish "$work/src" "$work/out" >/dev/null
serve_static "$work/out"

args=(apply --source "http://127.0.0.1:$port/" --role base --root "$work/root" --state-dir "$work/state" --color never -q)
"$bin" "${args[@]}" >/dev/null || [ $? -eq 2 ]
: > "$work/ng/logs/access.log"
times=(); rss=()
for _ in $(seq "$runs"); do
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$work/rss" "$bin" "${args[@]}" >/dev/null
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000 ))); rss+=("$(cat "$work/rss")")
done
statuses=$(awk '{print $9}' "$work/ng/logs/access.log" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
mt=$(median "${times[@]}"); mr=$(median "${rss[@]}")
echo "unchanged poll + no-op apply of the shipped base role, $runs runs:"
echo "  wall: median $((mt / 1000)).$(( (mt % 1000) / 100 )) ms; peak RSS: median $((mr / 1024)).$(( (mr % 1024) * 10 / 1024 )) MiB"
echo "  nginx saw (count status):$statuses"

# Memory over time: the agent converges the live root, so its role only touches $work.
mkdir -p "$work/src2/roles" "$work/live"
{
  for i in $(seq 1 50); do printf '[[file]]\npath = "%s/live/f%d"\ncontent = "%d\\n"\n\n' "$work" "$i" "$i"; done
} > "$work/src2/roles/soak.toml"
"$bin" publish "$work/src2" "$work/out2" >/dev/null
cat > "$work/agent.toml" <<AGENT
source = "file://$work/out2"
roles = ["soak"]
state_dir = "$work/state2"
interval = "1ms"
splay = "0s"
AGENT
/usr/bin/time -f %M -o "$work/rss10" "$bin" agent --config "$work/agent.toml" --runs 10 -q
t0=$(date +%s%N)
/usr/bin/time -f %M -o "$work/rssL" "$bin" agent --config "$work/agent.toml" --runs "$long" -q
t1=$(date +%s%N)
echo "agent loop: peak RSS after 10 runs $(( $(cat "$work/rss10") )) KiB, after $long runs $(( $(cat "$work/rssL") )) KiB ($(( (t1 - t0) / 1000000 / long )) ms per run)"
