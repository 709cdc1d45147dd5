#!/usr/bin/env bash
# Inputs that used to hang or abort a run, timed with the release build:
#  1. check of a 5 MB text file whose every line differs (was: over 5 minutes in the diff);
#  2. check of a 400 KB file whose every line differs (under the size cap: the 2 s deadline);
#  3. validate of a template with 20,000 nested {{#if}} (was: minutes, or a parser error);
#  4. validate of partials that include each other (was: a stack overflow, abort);
#  5. compare and capture of snapshots with a 780 KB / 2.7 MB file whose every line differs
#     (was: 19.6 s / over 300 s in an unbounded diff);
#  6. snapshot of a tree 15,000 directories deep (was: a stack overflow, abort).
# Usage: benches/hostile-input.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/converge
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo '{"hostname":"h","fqdn":"h"}' > "$work/facts.json"

timed() { # label, command...
    local label=$1; shift
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    end=$(date +%s.%N)
    printf '%-48s %6.2f s\n' "$label" "$(echo "$end - $start" | bc)"
}

big() { # lines
    rm -rf "$work/big"; mkdir -p "$work/big/src/roles" "$work/big/src/files" "$work/big/root/etc"
    python3 - "$work/big" "$1" <<'PY'
import sys
d, n = sys.argv[1], int(sys.argv[2])
open(f"{d}/src/files/big.txt", "w").write("".join(f"new {i}\n" for i in range(n)))
open(f"{d}/root/etc/big.txt", "w").write("".join(f"old {i}\n" for i in range(n)))
PY
    printf '[[file]]\npath = "/etc/big.txt"\nsource = "big.txt"\n' > "$work/big/src/roles/r.toml"
}
big 500000
timed "check, 5 MB file, every line differs" \
    "$bin" check --source "$work/big/src" --root "$work/big/root" --facts "$work/facts.json" --role r
big 40000
timed "check, 400 KB file, every line differs" \
    "$bin" check --source "$work/big/src" --root "$work/big/root" --facts "$work/facts.json" --role r

mkdir -p "$work/t/roles" "$work/t/templates/partials"
printf '[[file]]\npath = "/x"\ntemplate = "t.hbs"\n' > "$work/t/roles/r.toml"
python3 -c "
n = 20000
open('$work/t/templates/t.hbs', 'w').write('{{#if vars.a}}\n' * n + 'x' + '{{/if}}\n' * n)"
timed "validate, 20,000 nested {{#if}}" "$bin" validate --source "$work/t" --facts "$work/facts.json"
printf '{{> a}}' > "$work/t/templates/t.hbs"
printf '{{> b}}' > "$work/t/templates/partials/a.hbs"
printf '{{> a}}' > "$work/t/templates/partials/b.hbs"
timed "validate, partials a -> b -> a" "$bin" validate --source "$work/t" --facts "$work/facts.json"

snap() { # file, lines, prefix
    python3 - "$@" <<'PY'
import json, sys
out, n, c = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = "".join(f"{c}{i:011}\n" for i in range(n))
json.dump({"format": "converge-snapshot", "version": 1,
    "host": {"hostname": "h", "root": "/", "kernel": "6.1", "taken": 1, "paths": ["/etc"]},
    "sysctl": {}, "packages": {}, "units": {}, "users": {}, "groups": {},
    "files": {"/etc/big.conf": {"type": "file", "owner": "root", "group": "root", "mode": "0644",
        "size": len(text), "sha256": c, "content": text}}}, open(out, "w"))
PY
}
for lines in 60000 210000; do
    snap "$work/a.json" $lines a
    snap "$work/b.json" $lines b
    kb=$(( $(stat -c %s "$work/a.json") / 1000 ))
    timed "compare, ${kb} KB file, every line differs" "$bin" compare "$work/a.json" "$work/b.json"
    rm -rf "$work/cap"
    timed "capture, ${kb} KB file, every line differs" \
        "$bin" capture --from "$work/a.json" --against "$work/b.json" --role r -o "$work/cap/roles/r.toml"
done

mkdir -p "$work/deep/etc"
python3 -c "
import os
fd = os.open('$work/deep/etc', os.O_RDONLY)
for _ in range(15000):
    os.mkdir('d', dir_fd=fd); n = os.open('d', os.O_RDONLY, dir_fd=fd); os.close(fd); fd = n"
timed "snapshot, a tree 15,000 directories deep" "$bin" snapshot --root "$work/deep"
