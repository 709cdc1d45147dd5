#!/usr/bin/env bash
# No-op apply and check of N templated files (~2 KiB each, N/10 directories) against
# sha256sum over the same files, for each N, all interleaved run by run in one session;
# reports medians, the ratios to sha256sum and peak RSS (also of the first apply). apply
# and check read the plan cache; "miss" is a no-op apply right after a comment was added to
# the role, so it plans (and caches) again with nothing to change.
# Usage: benches/noop-apply.sh [RUNS] [N...]   (defaults 11; 100 1000 10000).
# BIN=path measures another converge binary (e.g. an older build) without building.
# NO_PLAN_CACHE=1 plans every run from the source (--no-plan-cache): the cost of the first
# run after each bundle change, which the plan cache cannot save.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
runs=${1:-11}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 10000)
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin=${BIN:-$PWD/target/release/converge}
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT

# A ~2 KiB template using facts, role vars and per-file vars.
template() {
  echo '# service {{vars.name}} on {{facts.hostname}} ({{facts.cpus}} cpus)'
  echo 'listen = 127.0.0.1:{{vars.port}}'
  echo 'workers = {{facts.cpus}}'
  for i in $(seq 1 40); do echo "option_$i = {{vars.common}} value line $i of the generated config"; done
}

setup() { # $1: N; source in $work/N/src, converged root in $work/N/root
  local n=$1 d=$work/$1 dirs=$(( ($1 + 9) / 10 ))
  mkdir -p "$d/src/roles" "$d/src/templates" "$d/root"
  template > "$d/src/templates/svc.conf.hbs"
  awk -v n="$n" -v dirs="$dirs" 'BEGIN {
    print "[vars]\ncommon = \"shared-setting\""
    for (j = 0; j < dirs; j++) printf "\n[[directory]]\npath = \"/srv/app/d%04d\"\n", j
    for (i = 0; i < n; i++)
      printf "\n[[file]]\npath = \"/srv/app/d%04d/svc%05d.conf\"\ntemplate = \"svc.conf.hbs\"\nmode = \"0644\"\n[file.vars]\nname = \"svc%05d\"\nport = %d\n", i % dirs, i, i, 20000 + i
  }' > "$d/src/roles/bench.toml"
  mkdir -p "$d/root/srv/app"
  # The first apply writes every file; its peak RSS is reported next to the no-op runs'.
  /usr/bin/time -f %M -o "$d/rss-first" "$bin" apply "${common[@]}" --source "$d/src" --root "$d/root" >/dev/null || [ $? -eq 2 ]
  "$bin" apply "${common[@]}" --source "$d/src" --root "$d/root" >/dev/null   # a no-op now (exit 0)
  find "$d/root/srv/app" -name '*.conf' | sort > "$d/files"
}

common=(--role bench --color never -q)
[ -n "${NO_PLAN_CACHE:-}" ] && common+=(--no-plan-cache)
for n in "${sizes[@]}"; do setup "$n"; done

now() { date +%s%N; }
declare -A t_apply t_check t_sum t_miss rss_apply rss_check rss_miss
for run in $(seq "$runs"); do
  for n in "${sizes[@]}"; do
    d=$work/$n
    echo "# run $run" >> "$d/src/roles/bench.toml"
    t0=$(now); /usr/bin/time -f %M -o "$d/rss" "$bin" apply "${common[@]}" --source "$d/src" --root "$d/root" >/dev/null; t1=$(now)
    t_miss[$n]+="$(( (t1 - t0) / 1000 )) "; rss_miss[$n]+="$(cat "$d/rss") "
    t0=$(now); /usr/bin/time -f %M -o "$d/rss" "$bin" apply "${common[@]}" --source "$d/src" --root "$d/root" >/dev/null; t1=$(now)
    t_apply[$n]+="$(( (t1 - t0) / 1000 )) "; rss_apply[$n]+="$(cat "$d/rss") "
    t0=$(now); /usr/bin/time -f %M -o "$d/rss" "$bin" check "${common[@]}" --source "$d/src" --root "$d/root" >/dev/null; t1=$(now)
    t_check[$n]+="$(( (t1 - t0) / 1000 )) "; rss_check[$n]+="$(cat "$d/rss") "
    t0=$(now); xargs -a "$d/files" sha256sum >/dev/null; t1=$(now)
    t_sum[$n]+="$(( (t1 - t0) / 1000 )) "
  done
done

maxof() { printf '%s\n' $1 | sort -n | tail -1; }
echo "runs: $runs, interleaved; medians; peak RSS is the largest of all runs"
printf '%7s %9s %9s %9s %9s %9s %9s %8s %10s %10s %10s %10s\n' N apply check miss sha256sum apply/sum check/sum miss/sum "RSS apply" "RSS check" "RSS miss" "RSS first"
for n in "${sizes[@]}"; do
  a=$(median "${t_apply[$n]}"); c=$(median "${t_check[$n]}"); m=$(median "${t_miss[$n]}"); s=$(median "${t_sum[$n]}")
  ra=$(maxof "${rss_apply[$n]}"); rc=$(maxof "${rss_check[$n]}"); rm=$(maxof "${rss_miss[$n]}"); rf=$(tail -n1 "$work/$n/rss-first")
  awk -v n="$n" -v a="$a" -v c="$c" -v m="$m" -v s="$s" -v ra="$ra" -v rc="$rc" -v rm="$rm" -v rf="$rf" 'BEGIN {
    printf "%7d %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f %8.2f %10.1f %10.1f %10.1f %10.1f\n", n, a/1000, c/1000, m/1000, s/1000, a/s, c/s, m/s, ra/1024, rc/1024, rm/1024, rf/1024 }'
done
echo "times in ms, RSS in MiB"
