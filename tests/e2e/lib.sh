# lib.sh - shared set-up of the end-to-end tests: a temporary run directory
# and a private copy of the configuration, emadsctl as `ctl`, JSON field
# access, and a trap that stops every process the test started.
#
# Environment (set by tests/e2e/meson.build):
#   EMADSCTL      the emadsctl binary of the build tree
#   EMADS_SRC_CONFIG  the source tree's config/ folder
#
# Scripts with a set-up of their own (bus_system.sh, config_check.sh) set
# E2E_HELPERS_ONLY=1 before sourcing this file for edit_cfg alone.

# edit_cfg FILE SED_ARGS...: edit a configuration file in place with
# `sed -i SED_ARGS FILE` and fail the test when the file is unchanged: the
# expression no longer matches the shipped configuration, and the test would
# go on testing something else. One expression per call, so each one
# asserts its own match.
edit_cfg() {
    _ec_file=$1
    shift
    _ec_sum=$(cksum <"$_ec_file") || {
        echo "FAIL: edit_cfg: cannot read $_ec_file" >&2
        exit 1
    }
    sed -i "$@" "$_ec_file" || {
        echo "FAIL: edit_cfg: sed $* failed on $_ec_file" >&2
        exit 1
    }
    if [ "$(cksum <"$_ec_file")" = "$_ec_sum" ]; then
        echo "FAIL: edit_cfg: sed $* changed nothing in $_ec_file (the shipped configuration no longer matches the edit)" >&2
        exit 1
    fi
}
[ "${E2E_HELPERS_ONLY:-}" = 1 ] && return 0

set -eu

: "${EMADSCTL:?EMADSCTL must name the emadsctl binary}"
: "${EMADS_SRC_CONFIG:?EMADS_SRC_CONFIG must name the config folder}"

E2E_TMP=$(mktemp -d /tmp/emads-e2e.XXXXXX)
E2E_RUN="$E2E_TMP/run"
E2E_CFG="$E2E_TMP/config"
mkdir -p "$E2E_CFG"
cp -r "$EMADS_SRC_CONFIG"/. "$E2E_CFG/"
# No fixed TCP port, so tests can run side by side: every address of the
# metrics section on port 0. (The shipped config has no ledger.metrics_port
# any more; agents_cfo.sh edits the example config that still has one.)
edit_cfg "$E2E_CFG/emads.yaml" 's/^\(  [a-z_]*: "127\.0\.0\.1:\)[0-9]*"/\10"/'
unset EMADS_HOME EMADS_CONFIG OPENAI_API_KEY

e2e_cleanup() {
    rc=$?
    "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" down >/dev/null 2>&1 || true
    # In a sanitizer build the daemons report to their logs (leaks at exit).
    if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$E2E_RUN"/logs/*.log 2>/dev/null; then
        echo "FAIL: sanitizer reports in the logs above" >&2
        rc=1
    fi
    if [ $rc -ne 0 ] && [ -d "$E2E_RUN/logs" ]; then
        for f in "$E2E_RUN"/logs/*.log; do
            echo "---- $f (last lines)" >&2
            tail -n 15 "$f" >&2 || true
        done
    fi
    # a background `ctl ... &` is a subshell running emadsctl: stop its
    # children too, or the emadsctl it started outlives the test
    for pid in ${E2E_EXTRA_PIDS:-}; do
        pkill -P "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$E2E_TMP"
    exit $rc
}
trap e2e_cleanup EXIT INT TERM

ctl() {
    "$EMADSCTL" --home "$E2E_RUN" --config "$E2E_CFG/emads.yaml" "$@"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# json EXPR < json : print python expression EXPR evaluated on the document `d`.
json() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1]); print(v if not isinstance(v,(dict,list,bool)) else json.dumps(v))' "$1"
}

# Wait until task $1 is in a final state (at most $2 s); prints the state.
wait_final() {
    local t=$1 limit=${2:-60} i=0 st
    while [ $i -lt $((limit * 10)) ]; do
        st=$(ctl --json result "$t" 2>/dev/null | json 'd["state"]' 2>/dev/null) || st=unknown
        case $st in done|failed|budget_exhausted|cancelled) echo "$st"; return 0 ;; esac
        sleep 0.1
        i=$((i + 1))
    done
    echo "timeout"
}

# wait_workers PROCESS N [TRIES]: until `status` shows at least N bus
# workers of PROCESS (every 50 ms, 100 tries by default); prints the count.
wait_workers() {
    local w=0
    for _ in $(seq 1 "${3:-100}"); do
        w=$(ctl --json status | json "[p[\"workers\"] for p in d[\"processes\"] if p[\"name\"] == \"$1\"][0]")
        [ "$w" -ge "$2" ] && break
        sleep 0.05
    done
    echo "$w"
}

# e2e_slow_research FILE: make the research step of config FILE slow (its
# tool sleeps 1.5 s, with the timeout and latency estimates raised to
# match), so that a test can kill a process while the step runs. Fails the
# test when an edit does not match.
e2e_slow_research() {
    python3 - "$1" <<'PY' || fail "the slow-tool edit of $1 did not match (above)"
import sys
p = sys.argv[1]; s = open(p).read()
def sub(s, old, new):
    assert old in s, "%s: no %r" % (p, old)
    return s.replace(old, new)
s = sub(s, 'command: [emads-kb-search, --dir, "{knowledge_dir}"]',
        'command: [sh, -c, "sleep 1.5; echo slow notes"]')
s = sub(s, 'timeout_ms: 2000', 'timeout_ms: 4000')
s = sub(s, 'tokens: 0, latency_ms: 200, tool_calls: 1', 'tokens: 0, latency_ms: 3000, tool_calls: 1')
s = sub(s, 'tokens: 1500, latency_ms: 1200, tool_calls: 1', 'tokens: 1500, latency_ms: 3000, tool_calls: 1')
open(p, 'w').write(s)
PY
}

# e2e_llm_server ARGS... : start the OpenAI-compatible test server
# (emads-test-llm) with ARGS, logging its requests to $E2E_TMP/llm.log; point
# the config's provider at it and export the API key the daemons inherit
# from `up`. Sets E2E_LLM_PORT; the trap stops the server.
e2e_llm_server() {
    "$EMADS_TEST_LLM" --port-file "$E2E_TMP/port" --log "$E2E_TMP/llm.log" "$@" >/dev/null 2>&1 &
    E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
    for _ in $(seq 1 100); do [ -s "$E2E_TMP/port" ] && break; sleep 0.05; done
    E2E_LLM_PORT=$(cat "$E2E_TMP/port")
    edit_cfg "$E2E_CFG/emads.yaml" \
        "s|base_url: \"http://127.0.0.1:8080/v1\"|base_url: \"http://127.0.0.1:$E2E_LLM_PORT/v1\"|"
    grep -q "127.0.0.1:$E2E_LLM_PORT" "$E2E_CFG/emads.yaml" ||
        fail "could not point the provider at the test server"
    export OPENAI_API_KEY=test-key
}

# e2e_ledger_denials: the reserves the ledger refused so far (the sum of
# emads_ledger_denials_total from its metrics, kept in $E2E_TMP/ledger.prom).
e2e_ledger_denials() {
    local addr
    addr=$(ctl --json status | json '[p["metrics"][0] for p in d["processes"] if p["name"] == "emads-ledger"][0]')
    curl -sf "http://$addr/metrics" >"$E2E_TMP/ledger.prom" || fail "no ledger metrics at $addr"
    awk '/^emads_ledger_denials_total/ {s += $2} END {print s + 0}' "$E2E_TMP/ledger.prom"
}

# bus_metric NAME_AND_LABELS: the value of one series of the bus's /metrics
# (0 when the series is absent).
bus_metric() {
    local addr
    addr=$(ctl --json status | json '[p["metrics"][0] for p in d["processes"] if p["name"] == "emads-bus"][0]')
    curl -sf "http://$addr/metrics" >"$E2E_TMP/bus.prom" || fail "no bus metrics at $addr"
    awk -v k="$1" '$1 == k {v = $2} END {print v + 0}' "$E2E_TMP/bus.prom"
}
