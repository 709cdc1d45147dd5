#!/usr/bin/env bash
# First apply of N small templated files (default 4,000): all in one directory, against the
# same files spread over N/10 directories. Runs alternate; reports the median wall and CPU
# (user + system) time and their cost per file for each layout, and the ratios (1.0 = as
# cheap in one directory). Wall time is mostly fsync waits; CPU time shows the work, split
# into user (converge's own) and system (the kernel's: creates, renames, fsyncs).
# Usage: benches/first-apply.sh [RUNS] [N]   (defaults 5; 4000).
# BIN=path measures another converge binary (e.g. an older build) without building.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
runs=${1:-5}
n=${2:-4000}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin=${BIN:-$PWD/target/release/converge}
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT

source_for() { # $1: layout name, $2: directories; source in $work/$1/src
  local d=$work/$1
  mkdir -p "$d/src/roles" "$d/src/templates"
  printf 'name = {{vars.name}}\nport = {{vars.port}}\n' > "$d/src/templates/svc.conf.hbs"
  awk -v n="$n" -v dirs="$2" 'BEGIN {
    for (j = 0; j < dirs; j++) printf "[[directory]]\npath = \"/srv/app/d%04d\"\n\n", j
    for (i = 0; i < n; i++)
      printf "[[file]]\npath = \"/srv/app/d%04d/svc%05d.conf\"\ntemplate = \"svc.conf.hbs\"\n[file.vars]\nname = \"svc%05d\"\nport = %d\n\n", i % dirs, i, i, 20000 + i
  }' > "$d/src/roles/bench.toml"
}
source_for one 1
source_for spread $(( (n + 9) / 10 ))

now() { date +%s%N; }
declare -A wall cpu user sys
for _ in $(seq "$runs"); do
  for layout in one spread; do
    d=$work/$layout
    rm -rf "$d/root" && mkdir -p "$d/root/srv/app"
    t0=$(now)
    /usr/bin/time -f '%U %S' -o "$d/cpu" "$bin" apply --role bench --color never -q --source "$d/src" --root "$d/root" >/dev/null || [ $? -eq 2 ]
    t1=$(now)
    wall[$layout]+="$(( (t1 - t0) / 1000 )) "
    cpu[$layout]+="$(awk '{printf "%d", ($1 + $2) * 1e6}' "$d/cpu") "
    user[$layout]+="$(awk '{printf "%d", $1 * 1e6}' "$d/cpu") "
    sys[$layout]+="$(awk '{printf "%d", $2 * 1e6}' "$d/cpu") "
    [ "$(find "$d/root/srv/app" -type f | wc -l)" -eq "$n" ] || { echo "$layout: not all $n files written" >&2; exit 1; }
  done
done

echo "first apply of $n files, $runs runs alternated, medians"
awk -v n="$n" -v dirs=$(( (n + 9) / 10 )) \
  -v ow="$(median "${wall[one]}")" -v sw="$(median "${wall[spread]}")" \
  -v oc="$(median "${cpu[one]}")" -v sc="$(median "${cpu[spread]}")" \
  -v ou="$(median "${user[one]}")" -v su="$(median "${user[spread]}")" \
  -v os="$(median "${sys[one]}")" -v ss="$(median "${sys[spread]}")" 'BEGIN {
  printf "%-24s %8s %8s %14s %14s %14s %14s\n", "layout", "wall s", "CPU s", "wall/file us", "CPU/file us", "user/file us", "sys/file us"
  printf "%-24s %8.2f %8.2f %14.0f %14.0f %14.0f %14.0f\n", "one directory", ow/1e6, oc/1e6, ow/n, oc/n, ou/n, os/n
  printf "%-24s %8.2f %8.2f %14.0f %14.0f %14.0f %14.0f\n", "spread over " dirs " dirs", sw/1e6, sc/1e6, sw/n, sc/n, su/n, ss/n
  printf "one / spread: wall %.2f, CPU %.2f, user %.2f, sys %.2f\n", ow/sw, oc/sc, ou/su, os/ss }'
