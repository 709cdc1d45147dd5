#!/usr/bin/env bash
# Check and apply of one big file (SIZE_MB, default 200) copied from a bundle's files/,
# against a live copy with three lines changed: peak RSS and time of check, apply and the
# no-op apply after it. The file is far past the 1 MiB that is diffed, so the report carries
# a summary; memory should stay near the run's floor, not grow with the file.
# Usage: benches/big-file.sh [SIZE_MB]; BIN=path measures another converge binary.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-200}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin=${BIN:-$PWD/target/release/converge}
work=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work dir kept: $work" || trap 'rm -rf "$work"' EXIT

mkdir -p "$work/src/roles" "$work/src/files" "$work/root/srv"
# 42-byte lines, like a generated host list or ACL.
lines=$(( size_mb * 1000 * 1000 / 42 ))
awk -v n="$lines" 'BEGIN { for (i = 0; i < n; i++) printf "host-%09d 10.%03d.%03d.%03d allow # gen\n", i, int(i/65536)%256, int(i/256)%256, i%256 }' \
  > "$work/src/files/hosts.allow"
cat > "$work/src/roles/big.toml" <<'TOML'
[[file]]
path = "/srv/hosts.allow"
source = "hosts.allow"
mode = "0644"
TOML
# The live copy: the first line changed, one in the middle, one at the end.
awk -v mid=$(( lines / 2 )) -v last="$lines" '
  NR == 1 || NR == mid || NR == last { print "edited by hand " NR; next } { print }' \
  "$work/src/files/hosts.allow" > "$work/root/srv/hosts.allow"

common=(--source "$work/src" --root "$work/root" --role big --color never -q)
run() { # $1: label, rest: converge command
  local label=$1; shift
  /usr/bin/time -f "%M %e" -o "$work/time" "$bin" "$@" "${common[@]}" --format json > "$work/out.json" || true
  read -r rss secs < <(tail -n1 "$work/time")
  awk -v l="$label" -v r="$rss" -v s="$secs" 'BEGIN { printf "%-22s %10.1f MiB %8.2f s\n", l, r/1024, s }'
}
echo "file: $(stat -c %s "$work/src/files/hosts.allow") bytes, $lines lines; binary: $bin"
run "check (3 lines differ)" check
grep -A2 "\"reason\"" "$work/out.json" | tr -s " " || true
run "apply" apply
cmp -s "$work/src/files/hosts.allow" "$work/root/srv/hosts.allow" && echo "applied content matches the source"
run "no-op apply" apply
run "no-op check" check
