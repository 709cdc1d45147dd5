#!/usr/bin/env bash
# No-op apply of 1,000 templated files (~2 KiB each) against sha256sum over the same files.
# Both run RUNS times, alternating, in one session; reports medians, their ratio and peak RSS.
# Usage: benches/noop-apply.sh [RUNS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/roles" "$work/src/templates" "$work/root/srv/app"

# A ~2 KiB template using facts, role vars and per-file vars.
{
  echo '# service {{vars.name}} on {{facts.hostname}} ({{facts.cpus}} cpus)'
  echo 'listen = 127.0.0.1:{{vars.port}}'
  echo 'workers = {{facts.cpus}}'
  for i in $(seq 1 40); do echo "option_$i = {{vars.common}} value line $i of the generated config"; done
} > "$work/src/templates/svc.conf.hbs"
{
  echo '[vars]'
  echo 'common = "shared-setting"'
  echo
  echo '[[directory]]'
  echo 'path = "/srv/app"'
  for i in $(seq -w 1 1000); do
    printf '\n[[file]]\npath = "/srv/app/svc%s.conf"\ntemplate = "svc.conf.hbs"\nmode = "0644"\n[file.vars]\nname = "svc%s"\nport = %d\n' "$i" "$i" $((20000 + 10#$i))
  done
} > "$work/src/roles/bench.toml"

args=(apply --source "$work/src" --role bench --root "$work/root" --color never -q)
"$bin" "${args[@]}" >/dev/null || [ $? -eq 2 ]
"$bin" "${args[@]}" >/dev/null   # must be a no-op now (exit 0)
size=$(du -sk "$work/root/srv/app" | cut -f1)
files=("$work"/root/srv/app/*.conf)

now() { date +%s%N; }
conv=(); sums=(); rss=()
for _ in $(seq "$runs"); do
  t0=$(now); /usr/bin/time -f %M -o "$work/rss" "$bin" "${args[@]}" >/dev/null; t1=$(now)
  conv+=($(( (t1 - t0) / 1000 ))); rss+=("$(cat "$work/rss")")
  t0=$(now); sha256sum "${files[@]}" >/dev/null; t1=$(now)
  sums+=($(( (t1 - t0) / 1000 )))
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
mc=$(median "${conv[@]}"); ms=$(median "${sums[@]}"); mr=$(median "${rss[@]}")
peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
echo "files: ${#files[@]} (${size} KiB on disk), runs: $runs"
echo "converge no-op apply: median $((mc / 1000)).$(( (mc % 1000) / 100 )) ms"
echo "sha256sum same files: median $((ms / 1000)).$(( (ms % 1000) / 100 )) ms"
awk -v c="$mc" -v s="$ms" 'BEGIN {printf "ratio converge/sha256sum: %.2f (target <= 3)\n", c / s}'
echo "peak RSS: median $((mr / 1024)).$(( (mr % 1024) * 10 / 1024 )) MiB, max $((peak / 1024)).$(( (peak % 1024) * 10 / 1024 )) MiB (target <= 20 MiB)"
