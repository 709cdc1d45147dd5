#!/usr/bin/env bash
# What a one-file change of a 1,000-file bundle costs an agent: bytes downloaded from a real
# nginx with gzip on (as static servers and CDNs serve), and fsyncs in the state dir.
# Usage: benches/bundle-update.sh [FILES]   (default 1000). BIN=path runs another binary.
# Needs nginx and strace (scripts/test-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
files=${1:-1000}
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin=${BIN:-$PWD/target/release/converge}
work=$(mktemp -d)
nginx_pid=
cleanup() { [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/src/roles" "$work/src/templates/app" "$work/root"
echo '[vars]' > "$work/src/roles/app.toml"
for i in $(seq -w 1 "$files"); do
  printf '# service %s\nlisten = 127.0.0.1:%d\nworkers = {{facts.cpus}}\n' "$i" $((20000 + 10#$i)) \
    > "$work/src/templates/app/svc$i.conf.hbs"
done
"$bin" publish "$work/src" "$work/out" >/dev/null
serve_static "$work/out" bytes "log_format bytes '\$request_uri \$status \$body_bytes_sent \$sent_http_content_encoding';
  gzip on; gzip_types *; gzip_min_length 0;"

args=(apply --source "http://127.0.0.1:$port/" --role app --root "$work/root" --state-dir "$work/state" --color never -q)
"$bin" "${args[@]}" >/dev/null || [ $? -eq 2 ]
echo "# service 0001 changed" > "$work/src/templates/app/svc$(printf "%0${#files}d" 1).conf.hbs"
"$bin" publish "$work/src" "$work/out" >/dev/null
manifest=$(stat -c %s "$work/out/manifest.json")
: > "$work/ng/logs/access.log"
strace -f -c -o "$work/strace" -e trace=fsync,fdatasync "$bin" "${args[@]}" >/dev/null || [ $? -eq 2 ]
sleep 0.2   # nginx logs after sending
fsyncs=$(awk '$NF == "fsync" || $NF == "fdatasync" {n += $4} END {print n + 0}' "$work/strace")
echo "bundle of $files files, one file changed and republished (manifest $manifest bytes):"
awk '{n++; b += $3; printf "  GET %-80s %s %7d bytes %s\n", $1, $2, $3, $4} END {printf "  total: %d requests, %d bytes downloaded\n", n, b}' "$work/ng/logs/access.log"
echo "  fsync + fdatasync calls of that run: $fsyncs"
