#!/usr/bin/env bash
# converge snapshot of this host (the default scope, and /etc alone) and of the cached Debian
# rootfs (under --root), RUNS times each; reports median wall time and median CPU (user + sys,
# tools included) in ms, and the snapshot's size.
# Usage: benches/snapshot.sh [RUNS]   (default 11; the rootfs is built by the tests, once)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
cargo build --release --locked --quiet
bin=$PWD/target/release/converge
rootfs=$(ls -d /var/cache/converge-tests/rootfs-* 2>/dev/null | grep -v '\.' | head -1 || true)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() {
  local label=$1; shift
  local walls=() cpus=()
  for _ in $(seq "$runs"); do
    # %e wall seconds, %U/%S CPU seconds of converge and the tools it waited for.
    read -r wall user sys < <( { /usr/bin/time -f '%e %U %S' "$bin" snapshot "$@" -o "$out" ; } 2>&1 >/dev/null | tail -1)
    walls+=("$(awk -v w="$wall" 'BEGIN {printf "%d", w * 1000}')")
    cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%d", (u + s) * 1000}')")
  done
  local counts
  counts=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(", ".join(f"{len(s[k])} {k}" for k in ("sysctl","packages","units","files")))' "$out")
  printf '%-9s wall %5d ms  cpu %5d ms  %6d KiB  (%s)\n' "$label" \
    "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)" \
    "$(( $(stat -c %s "$out") / 1024 ))" "$counts"
}

echo "snapshot, median of $runs runs (load: $(cut -d' ' -f1-3 /proc/loadavg))"
measure host
measure host/etc --path /etc
if [ -n "$rootfs" ]; then
  measure rootfs --root "$rootfs"
else
  echo "rootfs   skipped: no cached rootfs yet (run cargo test --test snapshot once)"
fi
