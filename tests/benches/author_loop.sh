#!/usr/bin/env bash
# The plugin author's loop, timed: edit -> build -> test -> extract, for one language, in a
# temporary folder outside the checkout. Usage (after `./dev build`): tests/benches/author_loop.sh rust|python|js before|after
# after: the one per-user compiled cache (the default since 0.2). before: `qpf extract` uses the
# project's own compiled cache, as it did before (`qpf plugin build`/`test` used the user's), so the
# plugin is compiled twice.
set -euo pipefail
LANG_=$1; MODE=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd); QPF=$ROOT/target/release/qpf
W=$(mktemp -d)/$LANG_-$MODE; mkdir -p "$W"; cd "$W"
export XDG_CACHE_HOME=$W/xdg QPF_LOG=warn CARGO_TARGET_DIR=$ROOT/target/plugin-new-target
$QPF plugin new --lang "$LANG_" hello >/dev/null
# A project: the example agents, one entry using the new plugin.
cp -r "$ROOT"/schemas/agents "$ROOT"/schemas/fragments "$ROOT"/schemas/kinds .
cat > map.yaml <<M
entries:
  - id: hello
    plugin: hello
    select: { kind: Agent }
    input: /spec
    out: "{name}/hello"
M
pin() { d=$(cd "$W" && $QPF digest hello/dist/hello.wasm | cut -d' ' -f1); printf 'version: 1\nschemas: ["agents/*.yaml"]\nkinds: {Agent: kinds/agent.schema.json}\nmap: map.yaml\noutput: out\nplugins:\n  hello:\n    path: hello/dist/hello.wasm\n    digest: %s\n' "$d" > qpf.yaml; }
extract() { if [ "$MODE" = before ]; then QPF_COMPILED_CACHE=$W/.qpf/cache/compiled $QPF extract --project . >/dev/null; else $QPF extract --project . >/dev/null; fi; }
t() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { print e - s }'; }
# First round (cold): build, test, extract.
$QPF plugin build hello >/dev/null 2>&1; pin; $QPF plugin test hello >/dev/null 2>&1 || true; extract
# The measured round: one edit.
case $LANG_ in
  rust) sed -i 's/hello, {}/hi, {}/' hello/src/lib.rs ;;
  python) sed -i 's/hello, /hi, /' hello/app.py ;;
  js) sed -i 's/hello, /hi, /' hello/index.js ;;
esac
b=$(t $QPF plugin build hello); pin
x=$(t $QPF plugin test hello)
e=$(t extract)
printf '%s %s: build %.1f s, test %.1f s, extract %.1f s, total %.1f s\n' "$LANG_" "$MODE" "$b" "$x" "$e" "$(awk -v b="$b" -v x="$x" -v e="$e" 'BEGIN { print b + x + e }')"
