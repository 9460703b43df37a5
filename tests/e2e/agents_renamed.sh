#!/usr/bin/env bash
# agents_renamed.sh - nothing in the code depends on the shipped names: a
# config that renames the three agents (tech, ops, judge) and their roles
# (engineering, operations, arbiter) runs end to end: up, a task through
# all three, the merge naming the renamed agents, spend per renamed agent,
# and down.
. "$(dirname "$0")/lib.sh"

for f in emads.yaml agents_budget.yaml; do
    edit_cfg "$E2E_CFG/$f" -E 's/\bcto_agent\b/tech/g'
    edit_cfg "$E2E_CFG/$f" -E 's/\bcoo_agent\b/ops/g'
    edit_cfg "$E2E_CFG/$f" -E 's/\breconcile_gpt\b/judge/g'
done
python3 - "$E2E_CFG/emads.yaml" <<'PY' || fail "the role renames did not match (above)"
import sys
p = sys.argv[1]
s = open(p).read()
for old, new in (("cto", "engineering"), ("coo", "operations"), ("reconcile", "arbiter")):
    for a, b in (("\n  %s:\n    rules:", "\n  %s:\n    rules:"), ("    role: %s\n", "    role: %s\n")):
        assert a % old in s, "%s: no %r" % (p, a % old)
        s = s.replace(a % old, b % new)
open(p, "w").write(s)
PY
! grep -Eq 'cto_agent|coo_agent|reconcile_gpt|role: (cto|coo|reconcile)$' "$E2E_CFG/emads.yaml" ||
    fail "the renamed config still names a shipped agent or role"
ctl config check >/dev/null || fail "renamed config: $(ctl config check 2>&1)"

up=$(ctl --json up) || fail "up failed: $up"
for a in tech ops judge; do
    echo "$up" | json "[p['healthy'] for p in d['processes'] if p['name'] == '$a'][0]" | grep -q true ||
        fail "$a not started: $up"
done
out=$(ctl --json submit --wait "Migrate the legacy order system to Kubernetes within 6 weeks; staff need training.") ||
    fail "task failed: $out"
[ "$(echo "$out" | json 'd["state"]')" = done ] || fail "task not done: $out"
task=$(echo "$out" | json 'd["task"]')
res=$(ctl --json result "$task")
[ "$(echo "$res" | json '[s["agent"] for s in d["steps"] if s["step"] == "reconcile"][0]')" = judge ] ||
    fail "reconcile did not run on judge: $res"
tech=$(echo "$res" | json '[s["output"] for s in d["steps"] if s["step"] == "cto_analysis"][0]')
[ "$(echo "$tech" | json 'd["role"] + " " + d["agent"]')" = "engineering tech" ] || fail "tech output: $tech"
rec=$(echo "$res" | json 'd["recommendation"]')
for v in "tech (engineering)" "ops (operations)"; do
    case $rec in *"$v"*) ;; *) fail "recommendation does not name '$v': $rec" ;; esac
done
sp=$(ctl --json spend --task "$task")
for a in tech ops judge; do
    [ "$(echo "$sp" | json "[a['used']['latency_ms'] for a in d['agents'] if a['name'] == '$a'][0]")" -gt 0 ] ||
        fail "no spend for $a: $sp"
done
ctl --json down >/dev/null
[ -z "$(ls "$E2E_RUN/pids")" ] || fail "pid files left after down: $(ls "$E2E_RUN/pids")"
echo "agents_renamed: ok - $rec"
