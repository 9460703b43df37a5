#!/usr/bin/env bash
# agents_cfo.sh - a fourth agent added purely by configuration: with the
# example config (config/examples/cfo), `up` starts four agents (all one
# program, each showing as its own name), a task runs all four analyses,
# the reconciled recommendation reflects the three analyses (it names each
# agent with its decision and carries the cfo's own cost figure), and
# `spend` shows cfo_agent's budget used.
. "$(dirname "$0")/lib.sh"

cp "$E2E_CFG/examples/cfo/emads.yaml" "$E2E_CFG/emads.yaml"
cp "$E2E_CFG/examples/cfo/agents_budget.yaml" "$E2E_CFG/agents_budget.yaml"
edit_cfg "$E2E_CFG/emads.yaml" 's|^knowledge_dir: ../../kb|knowledge_dir: kb|'
edit_cfg "$E2E_CFG/emads.yaml" 's/^\(  *metrics_port:\).*/\1 0/'

ctl config check >/dev/null || fail "the example config does not check: $(ctl config check 2>&1)"
# the one agent program needs a configured name
agent_bin=$(dirname "$(readlink -f "$EMADSCTL")")/../agents/emads-agent
rc=0; "$agent_bin" --config "$E2E_CFG/emads.yaml" --home "$E2E_RUN" 2>"$E2E_TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q -- '--name NAME is required' "$E2E_TMP/err" || fail "no --name: exit $rc"
rc=0; "$agent_bin" --name ghost --config "$E2E_CFG/emads.yaml" --home "$E2E_RUN" 2>"$E2E_TMP/err" || rc=$?
[ $rc -eq 2 ] && grep -q 'ghost is not an agent' "$E2E_TMP/err" || fail "unknown agent: exit $rc"
up=$(ctl --json up) || fail "up failed: $up"
started=$(echo "$up" | json 'sorted(p["name"] for p in d["processes"] if p["name"].endswith("_agent") or p["name"] == "reconcile_gpt")')
[ "$started" = '["cfo_agent", "coo_agent", "cto_agent", "reconcile_gpt"]' ] ||
    fail "up started agents $started"
# certificates for exactly the processes of the config, cfo_agent included
certs=$(cd "$E2E_RUN/certs/private" && ls *.cert_secret | sed 's/\.cert_secret$//' | sort | tr '\n' ' ')
want=$(printf '%s\n' bus cfo_agent coo_agent cto_agent emadsctl gateway ledger orchestrator reconcile_gpt | sort | tr '\n' ' ')
[ "$certs" = "$want" ] || fail "certificates: '$certs', want '$want'"
st=$(ctl --json status) || fail "status: $st"
for a in cto_agent coo_agent cfo_agent reconcile_gpt; do
    [ "$(echo "$st" | json "[p['state'] for p in d['processes'] if p['name'] == '$a'][0]")" = running ] ||
        fail "$a is not running: $st"
    pid=$(cat "$E2E_RUN/pids/$a.pid")
    # one program, shown as the agent in ps (command name and argv[0])
    [ "$(cat /proc/$pid/comm)" = "$(printf %.15s "$a")" ] || fail "$a's process name: $(cat /proc/$pid/comm)"
    [ "$(basename "$(readlink /proc/$pid/exe)")" = emads-agent ] || fail "$a does not run emads-agent"
    tr '\0' ' ' </proc/$pid/cmdline | grep -q "^$a " || fail "$a's argv[0]: $(tr '\0' ' ' </proc/$pid/cmdline)"
    grep -q "$a\[$pid\]" "$E2E_RUN/logs/$a.log" || fail "$a's log lines are not prefixed with its name"
done

out=$(ctl --json submit --wait "Replace our billing vendor for \$250k within 3 months; PCI compliance and customer retention matter.") ||
    fail "task failed: $out"
[ "$(echo "$out" | json 'd["state"]')" = done ] || fail "task not done: $out"
task=$(echo "$out" | json 'd["task"]')
for s in cto_analysis coo_analysis cfo_analysis reconcile; do
    [ "$(echo "$out" | json "[s['state'] for s in d['steps'] if s['step'] == '$s'][0]")" = done ] ||
        fail "step $s did not run: $out"
done
res=$(ctl --json result "$task")
cfo=$(echo "$res" | json '[s["output"] for s in d["steps"] if s["step"] == "cfo_analysis"][0]')
[ "$(echo "$cfo" | json 'd["agent"]')" = cfo_agent ] || fail "cfo output not labelled: $cfo"
[ "$(echo "$cfo" | json 'd["role"]')" = cfo ] || fail "cfo output role: $cfo"
[ "$(echo "$cfo" | json 'd["cost_estimate_usd"]')" = 250000 ] || fail "cfo cost estimate: $cfo"
rec=$(echo "$res" | json 'd["recommendation"]')
for v in "cto_agent (cto)" "coo_agent (coo)" "cfo_agent (cfo)" "cost_estimate_usd 250000"; do
    case $rec in *"$v"*) ;; *) fail "recommendation does not reflect '$v': $rec" ;; esac
done
views=$(echo "$res" | json '[s["output"] for s in d["steps"] if s["step"] == "reconcile"][0]["views"]')
[ "$(echo "$views" | json '[v["agent"] for v in d]')" = '["cto_agent", "coo_agent", "cfo_agent"]' ] ||
    fail "reconcile views: $views"

sp=$(ctl --json spend --task "$task")
used=$(echo "$sp" | json '[a["used"]["latency_ms"] for a in d["agents"] if a["name"] == "cfo_agent"][0]')
[ "$used" -gt 0 ] || fail "spend shows no use of cfo_agent's budget: $sp"
limit=$(echo "$sp" | json '[a["limit"]["cost_uusd"] for a in d["agents"] if a["name"] == "cfo_agent"][0]')
[ "$limit" = 1000000 ] || fail "cfo_agent's limit is not its budget: $sp"
ctl spend --task "$task" | grep -q '^cfo_agent ' || fail "spend table has no cfo_agent row"
echo "agents_cfo: ok - $rec"
