#!/bin/sh
# check_dims.sh - the budget dimensions are defined once (common/dims.h).
#
# Counts the non-test source files (C under agents/ bench/ budgets/ bus/
# common/ ctl/ gateway/ orchestrator/ proto/, except the definition
# common/dims.h) that name an individual dimension, and fails when there are
# more than MAX (default 5): adding a dimension stays an edit of the X-macro
# plus those few files (docs/ARCHITECTURE.md, "Adding a dimension"). A file
# names a dimension when its code, comments stripped, has
#   - an enumerator DIM_<dim>, or PROTO_MAX_<dim> / PLANNER_<dim> (the
#     names the per-layer copies had);
#   - a string literal that is a dimension's wire name ("tokens",
#     "latency_ms", "tool_calls", "cost_uusd"), YAML key ("max_tokens",
#     "max_latency_ms", "max_tool_calls", "max_cost_usd", "cost_usd") or
#     emadsctl flag ("--max-tokens", "--max-latency-ms",
#     "--max-tool-calls", "--max-cost").
# Not counted: in agents/ and gateway/, "tool_calls" and "max_tokens" are
# fields of the LLM providers' JSON (a message's tool calls, the output
# limit parameter, a stop reason), not the dimensions, and so is
# "max_tokens" on a line about a model's output_limit_param; and the roles
# DIMS_MONEY / DIMS_TIME, which the definition assigns by its aggregation
# column rather than by name.
#
# usage: check_dims.sh [SOURCE_ROOT [MAX]]      prints the files it counted
#        check_dims.sh --self-test SOURCE_ROOT  the check fails on a sixth file
set -eu

if [ "${1:-}" = "--self-test" ]; then
    src=$2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for d in agents bench budgets bus common ctl gateway orchestrator proto; do
        cp -R "$src/$d" "$tmp/$d"
    done
    sh "$0" "$tmp" >/dev/null || { echo "self-test: the tree itself fails" >&2; exit 1; }
    # the provider's fields are not dimension uses
    printf 'static const char *f = "tool_calls", *g = "max_tokens";\n' > "$tmp/gateway/zz_lint.c"
    sh "$0" "$tmp" >/dev/null || { echo "self-test: provider fields were counted" >&2; exit 1; }
    # a dimension named in the protocol library is
    printf 'static const char *f = "tool_calls";\n' > "$tmp/proto/zz_lint.c"
    n=$(sh "$0" "$tmp" 0 | grep -c 'zz_lint' || true)
    [ "$n" = 1 ] || { echo "self-test: \"tool_calls\" in proto/ not counted" >&2; exit 1; }
    rm "$tmp/proto/zz_lint.c"
    # a comment is not a use
    printf '/* DIM_TOKENS "tokens" */\n' > "$tmp/bus/zz_lint.c"
    sh "$0" "$tmp" >/dev/null || { echo "self-test: a comment was counted" >&2; exit 1; }
    # enough new files naming DIM_TOKENS to pass the limit fail the check
    i=0
    for d in bus orchestrator proto budgets common ctl; do
        printf 'int zz_lint%d(const int *v) { return v[DIM_TOKENS]; }\n' $i > "$tmp/$d/zz_lint$i.c"
        i=$((i + 1))
    done
    if sh "$0" "$tmp" >/dev/null; then
        echo "self-test: six more files naming DIM_TOKENS passed" >&2
        exit 1
    fi
    echo "check_dims self-test: ok"
    exit 0
fi

root=${1:-$(dirname "$0")/../..}
max=${2:-5}
cd "$root"

dims='TOKENS|LATENCY_MS|TOOL_CALLS|COST_UUSD'
ident="\\b(DIM|PROTO_MAX|PLANNER)_($dims)\\b"
keys='tokens|latency_ms|cost_uusd|max_latency_ms|max_tool_calls|max_cost_usd|cost_usd|--max-tokens|--max-latency-ms|--max-tool-calls|--max-cost'

files=$(find agents bench budgets bus common ctl gateway orchestrator proto \
    -type f \( -name '*.c' -o -name '*.h' \) ! -path common/dims.h | sort)
[ -n "$files" ] || { echo "check_dims: no sources under $root" >&2; exit 1; }
# one perl for every file: comments out (strings kept), then the patterns;
# prints "file: N line(s), e.g. LINE" per file that names a dimension
out=$(perl -e '
    my ($ident, $keys) = (shift, shift);
    for my $f (@ARGV) {
        open(my $fh, "<", $f) or die "check_dims: cannot read $f\n";
        local $/;
        my $src = <$fh>;
        close $fh;
        $src =~ s{(/\*.*?\*/)|(//[^\n]*)|("(?:\\.|[^"\\\n])*"|\x27(?:\\.|[^\x27\\\n])*\x27)}
                 {defined $3 ? $3 : defined $1 ? ($1 =~ tr/\n//) x "\n" : ""}gse;
        my $k = $f =~ m{^(agents|gateway)/} ? $keys : "$keys|tool_calls|max_tokens";
        my @hits = grep {
            (/$ident/ || /"(?:$k)"/)
              && !/^[^"]*output_limit_param.*"max_tokens"|"max_tokens".*output_limit_param/
        } split /\n/, $src;
        next unless @hits;
        (my $first = $hits[0]) =~ s/^\s+//;
        printf "%s: %d line(s), e.g. %s\n", $f, scalar @hits, $first;
    }' "$ident" "$keys" $files)
count=0
[ -z "$out" ] || { printf '%s\n' "$out"; count=$(printf '%s\n' "$out" | wc -l); }
echo "check_dims: $count file(s) name an individual dimension (at most $max)"
[ "$count" -le "$max" ]
