#!/usr/bin/env bash
# The README's quick start with the default configuration and no API key:
# up, submit --wait, spend, down. The task completes on local paths (the
# LLM endpoint of the default config does not answer), the spend shows
# latency and tool calls and zero cost, and the exit codes are the
# documented ones. Along the way: every command's --help, `up` reporting
# each process healthy, `status` fields, the step lines of `submit --wait`
# and the columns of the spend table.
. "$(dirname "$0")/lib.sh"

# Not running yet: exit 3 with the cause named.
set +e
out=$(ctl status 2>&1); rc=$?
set -e
[ $rc -eq 3 ] || fail "status before up: exit $rc, want 3"
echo "$out" | grep -q "not running" || fail "status before up does not say 'not running': $out"

# Every command has --help (exit 0); an unknown command is a usage error.
for c in config up down status submit result cancel tasks spend plan watch train policy; do
    ctl "$c" --help | grep -q "usage: \|SYNOPSIS" || fail "$c --help prints no usage"
done
set +e
ctl bogus 2>/dev/null; rc=$?
set -e
[ $rc -eq 2 ] || fail "unknown command: exit $rc, want 2"

up=$(ctl up)
echo "$up"
for p in emads-bus emads-ledger emads-orchestrator cto_agent coo_agent reconcile_gpt emads-gateway; do
    echo "$up" | grep -q "^starting $p  *ok (pid [0-9]*, healthy after [0-9]* ms)$" ||
        fail "up does not report $p started and healthy"
done
ctl status >/dev/null || fail "status after up is not 0"
ctl --json status | json 'len(d["processes"]) == 7 and all(p["state"] == "running" and p["pid"] > 0 and p["uptime_ms"] >= 0 for p in d["processes"])' |
    grep -q true || fail "status --json: not every process running with pid and uptime"
# the six services have a live worker on the bus, with the age of its last heartbeat
ctl --json status | json 'sum(1 for p in d["processes"] if p["service"] != "bus" and isinstance(p["heartbeat_age_ms"], int) and p["heartbeat_age_ms"] >= 0) == 6' |
    grep -q true || fail "status --json: a service without a heartbeat age: $(ctl --json status)"
[ "$(ctl status | grep -c '[0-9]m\?s$')" -eq 6 ] || fail "status heartbeat column: $(ctl status)"
ctl up | grep -q "already running" || fail "second up does not say it is already running"
[ "$(ctl --json up | json 'd["already_running"]')" = true ] || fail "up --json: already_running is not true"

# An external-data task also runs the research tool step.
out=$(ctl submit --wait "search the latest news on current GPU prices")
echo "$out"
echo "$out" | grep -q "^task t-[0-9a-f]\{12\} done" || fail "submit --wait did not end done"
echo "$out" | grep -q "^recommendation: ." || fail "no recommendation printed"
echo "$out" | grep -q "research .* started" || fail "step starts not shown"
echo "$out" | grep -q 'research .* done .* 1 tool call, \$0\.000000$' || fail "step end with its spend not shown"
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
ctl spend | grep -q "^ACCOUNT  *PERIOD  *TOKENS  *LATENCY  *TOOLS  *COST_USD  *HELD tok/lat/tools/usd  *USED%$" ||
    fail "spend table header: $(ctl spend)"
ctl spend --task "$task" | grep -q "^TOTAL  *0/[0-9]*  *[0-9]*ms/.* 0\.000000/[0-9.]* " ||
    fail "spend --task has no TOTAL row against total_task_budget: $(ctl spend --task "$task")"

# Exit codes: unknown task 1, bad config 2.
set +e
ctl result t-000000000000 2>"$E2E_TMP/err"; rc=$?
[ $rc -eq 1 ] || fail "result of an unknown task: exit $rc, want 1"
grep -q "unknown task" "$E2E_TMP/err" || fail "unknown task id not named: $(cat "$E2E_TMP/err")"
printf 'bogus_key: 1\n' > "$E2E_TMP/bad.yaml"
"$EMADSCTL" --home "$E2E_RUN" --config "$E2E_TMP/bad.yaml" status 2>"$E2E_TMP/err"; rc=$?
[ $rc -eq 2 ] || fail "status with a bad config: exit $rc, want 2"
grep -q "bad.yaml:1: " "$E2E_TMP/err" || fail "bad config line not named: $(cat "$E2E_TMP/err")"
set -e

ctl tasks | grep -q "$task" || fail "tasks does not list $task"
down=$(ctl --json down)
[ "$(echo "$down" | json 'd["stopped"]')" -eq 7 ] || fail "down --json: $down"
set +e
ctl status >/dev/null 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "status after down: exit $rc, want 3"
echo "quickstart: ok"
