#!/usr/bin/env bash
# Rendering a big generated config: LINES lines with one expression and one
# {{#if}}...{{else}}...{{/if}} on every line, against plain text of the same output size.
# Reports wall time and peak RSS of `converge render` for both (median of RUNS runs).
# Usage: benches/render-large.sh [LINES] [RUNS]   (defaults 100000, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-100000}
runs=${2:-3}
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT

setup() { # $1: source dir, $2: template file name
  mkdir -p "$1/roles" "$1/templates"
  printf '[vars]\nhost = "backend"\nflag = true\n\n[[file]]\npath = "/etc/big.conf"\ntemplate = "%s"\n' "$2" > "$1/roles/big.toml"
}
setup "$work/hbs" big.hbs
awk -v n="$lines" 'BEGIN { for (i = 1; i <= n; i++)
  printf "server %d {{vars.host}}-%d {{#if vars.flag}}up{{else}}down{{/if}};\n", i, i }' \
  > "$work/hbs/templates/big.hbs"
"$bin" render --source "$work/hbs" --role big > "$work/rendered"
setup "$work/plain" big.txt
# The plain template is the rendered output itself: same size, no expressions.
sed 1d "$work/rendered" > "$work/plain/templates/big.txt"

measure() { # $1: label, $2: source dir
  local times=() cpus=() rss=() t0 t1
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$work/rss" "$bin" render --source "$2" --role big > /dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
    read -r kib user sys < "$work/rss"
    rss+=("$kib"); cpus+=("$(echo "($user + $sys) * 1000 / 1" | bc)")
  done
  local mid=$(( (runs + 1) / 2 )) mt mc mr
  mt=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "${mid}p")
  mc=$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "${mid}p")
  mr=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n "${mid}p")
  printf '%-36s %7d ms wall %7d ms CPU  peak RSS %6.1f MiB\n' "$1" "$mt" "$mc" "$(echo "$mr / 1024" | bc -l)"
}
size=$(stat -c %s "$work/plain/templates/big.txt")
echo "lines: $lines, output: $((size / 1024)) KiB, runs: $runs (medians)"
measure "expression + {{#if}} on every line" "$work/hbs"
measure "plain text, same size" "$work/plain"
