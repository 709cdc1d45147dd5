#!/usr/bin/env bash
# What keeping backups costs: an apply that changes every one of 1,000 files (~2 KiB each),
# with the run history (--state-dir: each old file kept and its record synced before the
# change) and without it. Under --root an apply without --state-dir keeps no backups at all
# (on the live host it would keep them in a temp dir), so "without" is the apply alone. Both run RUNS times, alternating; reports medians and their ratio.
# Usage: benches/changed-apply.sh [RUNS]   (default 9)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
runs=${1:-9}
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/roles" "$work/src/templates" "$work/root/srv/app"

{
  echo 'generation = {{vars.generation}}'
  for i in $(seq 1 40); do echo "option_$i = value line $i of the generated config for {{vars.name}}"; done
} > "$work/src/templates/svc.conf.hbs"
{
  echo '[[directory]]'
  echo 'path = "/srv/app"'
  for i in $(seq -w 1 1000); do
    printf '\n[[file]]\npath = "/srv/app/svc%s.conf"\ntemplate = "svc.conf.hbs"\n[file.vars]\nname = "svc%s"\n' "$i" "$i"
  done
} > "$work/src/roles/bench.toml"

base=(apply --source "$work/src" --role bench --root "$work/root" --color never -q)
gen=0
# Every timed run changes all 1,000 files: the generation moves on each time. Anything but
# exit 2 (changes made) means the run did not measure what it says: stop.
run() {
  gen=$((gen + 1))
  local rc=0
  "$bin" "${base[@]}" --var "generation=$gen" "$@" >/dev/null || rc=$?
  [ "$rc" -eq 2 ] || { echo "apply exited $rc, expected 2 (every file changed)" >&2; exit 1; }
}
run; run --state-dir "$work/state"

now() { date +%s%N; }
plain=(); kept=()
for _ in $(seq "$runs"); do
  t0=$(now); run; t1=$(now); plain+=($(( (t1 - t0) / 1000 )))
  t0=$(now); run --state-dir "$work/state"; t1=$(now); kept+=($(( (t1 - t0) / 1000 )))
done
mp=$(median "${plain[@]}"); mk=$(median "${kept[@]}")
echo "1000 changed files, runs: $runs, work dir on $(df -T "$work" | awk 'NR==2 {print $2}')"
echo "apply without history: median $((mp / 1000)) ms"
echo "apply with backups:    median $((mk / 1000)) ms ($(du -sk "$work/state/runs" | cut -f1) KiB of history for $(ls "$work/state/runs" | wc -l) kept runs)"
awk -v p="$mp" -v k="$mk" 'BEGIN {printf "ratio with/without: %.2f\n", k / p}'
