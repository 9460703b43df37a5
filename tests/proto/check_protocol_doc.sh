#!/bin/sh
# check_protocol_doc.sh GEN DOC - fail if the generated message tables in
# DOC (docs/PROTOCOL.md) differ from what GEN (proto/gen_protocol_doc)
# prints from the schema table today. Fix: paste GEN's output between the
# markers.
set -eu
gen=$1
doc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$gen" >"$tmp/expected"
# the lines strictly between the BEGIN and END markers, minus the blank
# line that follows BEGIN
awk '/^<!-- END gen_protocol_doc/ {on = 0}
     on {print}
     /^<!-- BEGIN gen_protocol_doc/ {on = 1; next}' "$doc" |
    sed '1{/^$/d;}' >"$tmp/actual"
if ! grep -q '^<!-- BEGIN gen_protocol_doc' "$doc"; then
    echo "check_protocol_doc: no BEGIN marker in $doc" >&2
    exit 1
fi
if ! diff -u "$tmp/actual" "$tmp/expected"; then
    echo "check_protocol_doc: $doc is out of date; run $gen and paste its output" >&2
    exit 1
fi
echo "check_protocol_doc: $doc matches the schema table"
