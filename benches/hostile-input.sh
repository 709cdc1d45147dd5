#!/usr/bin/env bash
# Inputs that used to hang or abort a run, timed with the release build:
#  1. check of a 5 MB text file whose every line differs (was: over 5 minutes in the diff);
#  2. check of a 400 KB file whose every line differs (under the size cap: the 2 s deadline);
#  3. validate of a template with 20,000 nested {{#if}} (was: minutes, or a parser error);
#  4. validate of partials that include each other (was: a stack overflow, abort).
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
