#!/usr/bin/env bash
# converge snapshot of this host (the default scope, and /etc alone) and of the cached Debian
# rootfs (under --root, on an overlay so the shared tree is never written: apt saves its
# cache where it may), RUNS times each; reports median wall time and median CPU (user + sys,
# tools included) in ms, and the snapshot's size. The rootfs is measured as Debian installs
# it, with apt's binary cache (pkgcache.bin) built, and with that cache removed before each
# run (what every snapshot costs where apt is configured to keep none). Where this host's
# apt keeps no cache of its lists, converge keeps one (/var/cache/converge): host/nc is this
# host with that file removed before each run, the cost of the first snapshot after the
# lists change (and of every snapshot before converge kept one).
# Usage: benches/snapshot.sh [RUNS]   (default 11; the rootfs is built by the tests, once)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-11}
cargo build --release --locked --quiet
bin=$PWD/target/release/converge
rootfs=$(ls -d /var/cache/converge-tests/rootfs-* 2>/dev/null | grep -v '\.' | head -1 || true)
out=$(mktemp)
ovl=$(mktemp -d)
cleanup() {
  mountpoint -q "$ovl/merged" && umount "$ovl/merged"
  rm -rf "$out" "$ovl"
}
trap cleanup EXIT
# before: a command run before each measured run (not measured).
before=true

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

measure() {
  local label=$1; shift
  local walls=() cpus=()
  for _ in $(seq "$runs"); do
    $before
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
  mkdir -p "$ovl/up" "$ovl/work" "$ovl/merged"
  mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$ovl/up,workdir=$ovl/work" "$ovl/merged"
  chroot "$ovl/merged" apt-cache gencaches
  measure rootfs --root "$ovl/merged"
  no_apt_cache() { rm -f "$ovl"/merged/var/cache/apt/*.bin; }
  before=no_apt_cache
  measure rootfs/nc --root "$ovl/merged"
  before=true
else
  echo "rootfs   skipped: no cached rootfs yet (run cargo test --test snapshot once)"
fi
