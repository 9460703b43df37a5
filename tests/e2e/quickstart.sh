#!/usr/bin/env bash
# The README's quick start with the default configuration and no API key:
# up, submit --wait, spend, down. The task completes on local paths (the
# LLM endpoint of the default config does not answer), the spend shows
# latency and tool calls and zero cost, and the exit codes are the
# documented ones.
. "$(dirname "$0")/lib.sh"

# Not running yet: exit 3 with the cause named.
set +e
out=$(ctl status 2>&1); rc=$?
set -e
[ $rc -eq 3 ] || fail "status before up: exit $rc, want 3"
echo "$out" | grep -q "not running" || fail "status before up does not say 'not running': $out"

ctl up
ctl status >/dev/null || fail "status after up is not 0"
ctl up | grep -q "already running" || fail "second up does not say it is already running"

# An external-data task also runs the research tool step.
out=$(ctl submit --wait "search the latest news on current GPU prices")
echo "$out"
echo "$out" | grep -q "^task t-[0-9a-f]\{12\} done" || fail "submit --wait did not end done"
echo "$out" | grep -q "^recommendation: ." || fail "no recommendation printed"
echo "$out" | grep -q "research .* started" || fail "step starts not shown"
task=$(echo "$out" | sed -n 's/^task \(t-[0-9a-f]*\) done$/\1/p')

res=$(ctl --json result "$task")
[ "$(echo "$res" | json 'd["state"]')" = done ] || fail "result state is not done"
paths=$(echo "$res" | json '",".join(sorted(set(s.get("path","-") for s in d["steps"])))')
case ",$paths," in *,llm,*) fail "an LLM path ran with no LLM server: $paths" ;; esac
echo "$res" | json 'd["steps"][0]["state"]' | grep -q done || fail "research step did not run"

sp=$(ctl --json spend --task "$task")
echo "$sp"
tools=$(echo "$sp" | json 'sum(a["used"]["tool_calls"] for a in d["agents"])')
lat=$(echo "$sp" | json 'sum(a["used"]["latency_ms"] for a in d["agents"])')
cost=$(echo "$sp" | json 'd["total"]["used"]["cost_uusd"]')
held=$(echo "$sp" | json 'sum(d["total"]["held"].values())')
[ "$tools" -ge 1 ] || fail "spend shows no tool call"
[ "$lat" -ge 1 ] || fail "spend shows no latency"
[ "$cost" -eq 0 ] || fail "spend shows a cost without any LLM: $cost"
[ "$held" -eq 0 ] || fail "holds left after the task closed: $held"
ctl spend | grep -q "^cto_agent" || fail "spend table has no cto_agent row"

# Exit codes: unknown task 1, bad config 2.
set +e
ctl result t-000000000000 2>/dev/null; rc=$?
[ $rc -eq 1 ] || fail "result of an unknown task: exit $rc, want 1"
printf 'bogus_key: 1\n' > "$E2E_TMP/bad.yaml"
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_TMP/bad.yaml" status 2>/dev/null; rc=$?
[ $rc -eq 2 ] || fail "status with a bad config: exit $rc, want 2"
set -e

ctl tasks | grep -q "$task" || fail "tasks does not list $task"
ctl down
set +e
ctl status >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "status after down: exit $rc, want 3"
echo "quickstart: ok"
