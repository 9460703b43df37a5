#!/usr/bin/env bash
# Every daemon's /metrics: after one LLM task against the test server,
# (1) each process lists its /metrics address in `status --json`, and every
# endpoint passes `promtool check metrics` with no complaint; (2) the spend
# counters (emads_spend_*_total) equal, to the micro-dollar, what
# `emadsctl --json spend --by agent` reports, per agent and in total; (3) the
# orchestrator counted the task as done and the agents' LLM counters match
# the test server's log; (4) no series is labelled by task; (5) every metric
# named in contrib/grafana/emads.json and contrib/prometheus/emads-rules.yml
# is exported by some endpoint; (6) provider errors are counted by HTTP code
# and denials by account kind and dimension. The gateway is among the
# endpoints: one call through it is in the ledger's spend, and its own
# counters equal that call's charge; one call over a key's budget is
# counted as a denial by account kind and dimension.
. "$(dirname "$0")/../e2e/lib.sh"
: "${EMADS_TEST_LLM:?EMADS_TEST_LLM must name emads-test-llm}"
: "${EMADS_SRC:?EMADS_SRC must name the source tree}"
command -v promtool >/dev/null || { echo "promtool not installed: skipped"; exit 77; }

e2e_llm_server --usage 1000,1000
ctl up >/dev/null
ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk." \
    >"$E2E_TMP/task.json" || fail "LLM task failed"
task=$(json 'd["task"]' <"$E2E_TMP/task.json")
# one call through the gateway (charged to cto_agent in task gw-obs), and
# one refused: a key whose whole budget is below the prompt's cost
GW=$(cat "$E2E_RUN/gateway.addr")
KEY=$(ctl keys issue obs --for cto_agent)
KEY_POOR=$(ctl keys issue poor --for cto_agent --max-cost-usd 0.000001)
gw_call() { # gw_call KEY [HEADER] -> status
    curl -s -o "$E2E_TMP/gw.json" -w '%{http_code}' "http://$GW/v1/chat/completions" \
        -H "Authorization: Bearer $1" -H 'Content-Type: application/json' ${2:+-H "$2"} \
        -d '{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}'
}
[ "$(gw_call "$KEY" 'x-emads-task: gw-obs')" = 200 ] || fail "gateway call failed: $(cat "$E2E_TMP/gw.json")"
[ "$(gw_call "$KEY_POOR")" = 429 ] || fail "a call over the key's budget was not refused: $(cat "$E2E_TMP/gw.json")"
for _ in $(seq 1 50); do # the gateway commits after the response
    [ "$(ctl --json spend --task gw-obs | json 'd["total"]["held"]["tokens"]')" = 0 ] && break
    sleep 0.1
done
ctl --json spend --task gw-obs >"$E2E_TMP/gwspend.json" || fail "spend --task gw-obs failed"
ctl --json status >"$E2E_TMP/status.json" || fail "status failed"
ctl --json spend --by agent >"$E2E_TMP/spend.json" || fail "spend --by agent failed"

mkdir -p "$E2E_TMP/scrape"
n=0
while read -r name addr; do
    [ -n "$addr" ] || fail "$name lists no /metrics address in status --json"
    out="$E2E_TMP/scrape/$name.prom"
    curl -sf "http://$addr/metrics" >"$out" || fail "GET http://$addr/metrics ($name) failed"
    lint=$(promtool check metrics <"$out" 2>&1) || fail "promtool check metrics ($name): $lint"
    [ -z "$lint" ] || fail "promtool check metrics ($name) complains: $lint"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/other")
    [ "$code" = 404 ] || fail "$name: GET /other answered $code, not 404"
    n=$((n + 1))
done < <(json '"\n".join(p["name"] + " " + (p["metrics"][0] if p["metrics"] else "") for p in d["processes"])' <"$E2E_TMP/status.json")
[ "$n" -ge 6 ] || fail "only $n processes listed"
echo "promtool check metrics: $n endpoints clean"

grep -l 'task="' "$E2E_TMP"/scrape/*.prom && fail "series labelled by task id"

python3 - "$E2E_TMP" "$task" "$EMADS_SRC" <<'PY' || fail "metrics disagree (see above)"
import json, re, sys, glob, decimal, os
tmp, task, src = sys.argv[1], sys.argv[2], sys.argv[3]
series = []   # (name, labels dict, value string, file)
types = {}    # family -> type
for f in glob.glob(tmp + "/scrape/*.prom"):
    for line in open(f):
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split()
            types[fam] = typ
        elif line.strip() and not line.startswith("#"):
            m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line.strip())
            labels = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            series.append((m.group(1), labels, m.group(4), os.path.basename(f)))
bad = []
def total(name, **want):
    s = decimal.Decimal(0)
    for n, l, v, _ in series:
        if n == name and all(l.get(k) == x for k, x in want.items()):
            s += decimal.Decimal(v)
    return s
spend = json.load(open(tmp + "/spend.json"))  # every charge so far, per agent
spend["total"] = {"used": spend["total"]}
spend["agents"] = [{"name": r["group"], "used": r["spent"]} for r in spend["rows"]]
units = {"tokens": ("emads_spend_tokens_total", 1), "latency_ms": ("emads_spend_latency_seconds_total", 1000),
         "tool_calls": ("emads_spend_tool_calls_total", 1), "cost_uusd": ("emads_spend_usd_total", 1000000)}
for dim, (name, scale) in units.items():
    want = spend["total"]["used"][dim]
    got = total(name) * scale
    print(f"{name}: {total(name)} = ledger {want} {dim}")
    if got != want:
        bad.append(f"{name} sums to {got} {dim}, the ledger says {want}")
    for a in spend["agents"]:
        g = total(name, agent=a["name"]) * scale
        if g != a["used"][dim]:
            bad.append(f"{name}{{agent={a['name']}}} = {g} {dim}, the ledger says {a['used'][dim]}")
gwspend = json.load(open(tmp + "/gwspend.json"))["total"]["used"]
if gwspend["cost_uusd"] <= 0:
    bad.append("the gateway call was not charged")
for dim, unit in (("tokens", ("emads_task_spend_tokens_total", 1)), ("cost_uusd", ("emads_task_spend_usd_total", 1000000))):
    got = total(unit[0], **{"class": "analysis"}) * unit[1]
    want = spend["total"]["used"][dim] - gwspend[dim]  # the orchestrator's task: all but the gateway's
    if got != want:
        bad.append(f"{unit[0]}{{class=analysis}} = {got} {dim}, the ledger says {want}")
# the gateway's own counters: its call's charge, to the micro-dollar
if total("emads_gateway_usd_total", key="obs", model="gpt-4o-mini") * 1000000 != gwspend["cost_uusd"]:
    bad.append(f"emads_gateway_usd_total{{key=obs}} = {total('emads_gateway_usd_total', key='obs')}, the ledger says {gwspend['cost_uusd']} uUSD")
if total("emads_gateway_tokens_total", key="obs") != gwspend["tokens"]:
    bad.append(f"emads_gateway_tokens_total{{key=obs}} = {total('emads_gateway_tokens_total', key='obs')}, the ledger says {gwspend['tokens']}")
if total("emads_gateway_calls_total", key="obs", principal="cto_agent", model="gpt-4o-mini", outcome="ok") != 1:
    bad.append("emads_gateway_calls_total{key=obs,outcome=ok} is not 1")
if total("emads_gateway_calls_total", key="poor", outcome="denied") != 1:
    bad.append("emads_gateway_calls_total{key=poor,outcome=denied} is not 1")
if total("emads_gateway_denials_total", account="key", dimension="cost_uusd") != 1:
    bad.append("emads_gateway_denials_total{account=key,dimension=cost_uusd} is not 1")
if total("emads_gateway_added_latency_seconds_count") != 1:
    bad.append("emads_gateway_added_latency_seconds_count is not 1 (one call forwarded)")
if spend["total"]["used"]["cost_uusd"] <= 0:
    bad.append("the LLM task spent nothing: the comparison proves little")
if total("emads_tasks_total", state="done") != 1:
    bad.append(f"emads_tasks_total{{state=done}} = {total('emads_tasks_total', state='done')}, want 1")
calls = sum(1 for l in open(tmp + "/llm.log") if json.loads(l)["status"] == 200) - 1  # one was the gateway's
if total("emads_llm_calls_total", outcome="ok") != calls:
    bad.append(f"emads_llm_calls_total{{outcome=ok}} = {total('emads_llm_calls_total', outcome='ok')}, the server answered {calls}")
if total("emads_llm_tokens_total") != 2000 * calls:
    bad.append(f"emads_llm_tokens_total = {total('emads_llm_tokens_total')}, want {2000 * calls}")
if total("emads_step_duration_seconds_count") < 3:
    bad.append("fewer than 3 steps in emads_step_duration_seconds")
for op in ("reserve", "commit", "open_task", "close_task"):
    if total("emads_ledger_request_duration_seconds_count", type=op) < 1:
        bad.append(f"no {op} in emads_ledger_request_duration_seconds")
if total("emads_bus_workers", service="ledger") != 1:
    bad.append("emads_bus_workers{service=ledger} is not 1")
# every metric a dashboard panel or an alert rule names is exported
exported = set(types)
for fam, typ in types.items():
    if typ == "histogram":
        exported |= {fam + "_bucket", fam + "_sum", fam + "_count"}
exported.add("up")  # Prometheus' own, per target
funcs = {"sum", "rate", "increase", "by", "without", "histogram_quantile", "le", "on", "and", "or",
         "unless", "clamp_min", "clamp_max", "max", "min", "avg", "count", "topk", "bool", "absent",
         "ignoring", "group_left", "group_right", "time", "delta", "irate", "vector", "offset",
         "sort_desc", "label_replace", "changes", "resets", "deriv", "abs", "max_over_time", "min_over_time"}
def names(expr):
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', '', expr)
    expr = re.sub(r'\{[^}]*\}', '', expr)
    expr = re.sub(r'\[[^\]]*\]', '', expr)
    expr = re.sub(r'"[^"]*"', '', expr)
    return {w for w in re.findall(r'[a-zA-Z_:][a-zA-Z0-9_:]*', expr) if w not in funcs and not re.fullmatch(r'\d+|e\d*', w)}
dash = json.load(open(src + "/contrib/grafana/emads.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
if len(exprs) < 8:
    bad.append(f"only {len(exprs)} panel queries in the dashboard")
rules = re.findall(r'^\s*expr:\s*(.+)$', open(src + "/contrib/prometheus/emads-rules.yml").read(), re.M)
if len(rules) < 4:
    bad.append(f"only {len(rules)} alert rules")
for e in exprs + rules:
    for n in names(e) - exported:
        bad.append(f"'{n}' in '{e}' is exported by no endpoint")
print(f"{len(exprs)} dashboard queries and {len(rules)} rules name only exported metrics" if not bad else "")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# provider errors are counted by code: the test server now answers 500
curl -sf -X POST -d '{"scenario": "500"}' "http://127.0.0.1:$E2E_LLM_PORT/control" >/dev/null ||
    fail "could not switch the test server to 500"
ctl --json submit --wait "Should we adopt a service mesh? Assess the risk." >/dev/null || true
errs=0
while read -r name addr; do
    n=$(curl -sf "http://$addr/metrics" | awk '/^emads_provider_errors_total\{.*code="500"\}/ {s += $2} END {print s + 0}')
    errs=$((errs + n))
done < <(ctl --json status | json '"\n".join(p["name"] + " " + p["metrics"][0] for p in d["processes"] if p["metrics"])')
[ "$errs" -ge 1 ] || fail "no emads_provider_errors_total{code=\"500\"} after calls that got 500"
echo "provider errors counted: $errs with code 500"

# a clean stop removes the address files
ctl down >/dev/null
left=$(ls "$E2E_RUN/metrics/" 2>/dev/null | grep -c '\.addr$' || true)
[ "$left" = 0 ] || fail "$left address files left after down: $(ls "$E2E_RUN/metrics/")"

# an address that cannot be bound: the daemon does not start, and says why
python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); open("'"$E2E_TMP"'/busy","w").write(str(s.getsockname()[1])); time.sleep(60)' &
E2E_EXTRA_PIDS="${E2E_EXTRA_PIDS:-} $!"
for _ in $(seq 1 50); do [ -s "$E2E_TMP/busy" ] && break; sleep 0.1; done
busy=$(cat "$E2E_TMP/busy")
edit_cfg "$E2E_CFG/emads.yaml" "s/^\(  orchestrator: \"127\.0\.0\.1:\)[0-9]*\"/\1$busy\"/"
grep -q "orchestrator: \"127.0.0.1:$busy\"" "$E2E_CFG/emads.yaml" || fail "could not set metrics.orchestrator"
set +e
ctl up >"$E2E_TMP/up.out" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "up succeeded although the orchestrator's metrics port is taken"
grep -q "metrics: cannot listen on 127.0.0.1:$busy" "$E2E_RUN/logs/emads-orchestrator.log" ||
    fail "the orchestrator's log does not say why: $(tail -3 "$E2E_RUN/logs/emads-orchestrator.log")"
ctl down >/dev/null 2>&1 || true

# config check shows where each daemon serves its metrics
ctl --json config check "$E2E_CFG/emads.yaml" | json 'd["metrics"]' | grep -q "\"orchestrator\": \"127.0.0.1:$busy\"" ||
    fail "config check --json does not show metrics.orchestrator"
ctl config check "$E2E_CFG/emads.yaml" | grep -q "^  metrics:  bus 127.0.0.1:0, ledger 127.0.0.1:0, orchestrator 127.0.0.1:$busy, agents 127.0.0.1:0$" ||
    fail "config check does not list the metrics addresses"

# config check: a bad address and the old key together with the new one
cp "$E2E_CFG/emads.yaml" "$E2E_CFG/bad.yaml"
edit_cfg "$E2E_CFG/bad.yaml" 's/^  bus: "127\.0\.0\.1:[0-9]*"/  bus: "example.org:80"/'
edit_cfg "$E2E_CFG/bad.yaml" 's/^ledger:$/ledger:\n  metrics_port: 9000/'
set +e
ctl config check "$E2E_CFG/bad.yaml" >/dev/null 2>"$E2E_TMP/check.err"
rc=$?
set -e
[ $rc = 2 ] || fail "config check of bad metrics keys exited $rc, not 2"
grep -Eq "bad.yaml:[0-9]+: metrics.bus: 'example.org:80': expected host:port with a numeric" "$E2E_TMP/check.err" ||
    fail "no error for metrics.bus: $(cat "$E2E_TMP/check.err")"
grep -Eq "bad.yaml:[0-9]+: metrics.ledger: set either metrics.ledger or ledger.metrics_port" "$E2E_TMP/check.err" ||
    fail "no error for metrics.ledger with ledger.metrics_port: $(cat "$E2E_TMP/check.err")"

# denials are counted by account kind and dimension: a global account of one
# cent cannot hold two cents. The planner plans within the global account
# (the ledger's replies show it), so the reserve comes from another client
# of the ledger: the bus probe, as cto_agent, on a task it opened as the
# orchestrator
edit_cfg "$E2E_CFG/emads.yaml" "s/^\(  orchestrator: \"127\.0\.0\.1:\)[0-9]*\"/\10\"/"
edit_cfg "$E2E_CFG/emads.yaml" 's/^  global: .*/  global: {period: day, max_cost_usd: 0.01}/'
grep -q '^  global: {period: day, max_cost_usd: 0.01}' "$E2E_CFG/emads.yaml" || fail "could not set the global account"
curl -sf -X POST -d '{"scenario": "usage"}' "http://127.0.0.1:$E2E_LLM_PORT/control" >/dev/null
rm -f "$E2E_RUN"/ledger.db* # the journal keeps the global account's earlier limit
ctl up >/dev/null
ctl --json submit --wait "Should we migrate billing to Kubernetes? Assess the risk." >"$E2E_TMP/denied.json" || true
EP="ipc://$E2E_RUN/bus.sock"
"$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" --name orchestrator --service ledger \
    --body-json '{"v":1,"type":"open_task","request_id":"probe-open","task":"t-obs-deny"}' >/dev/null ||
    fail "the probe could not open its task"
"$EMADS_BUS_PROBE" call --endpoint "$EP" --home "$E2E_RUN" --name cto_agent --service ledger \
    --body-json '{"v":1,"type":"reserve","request_id":"probe-r","task":"t-obs-deny","step":"s","amounts":{"tokens":0,"latency_ms":0,"tool_calls":0,"cost_uusd":20000}}' \
    >"$E2E_TMP/probe.json" || fail "the probe's reserve got no answer"
grep -q '"exceeds_budget"' "$E2E_TMP/probe.json" || fail "a 2-cent reserve on a 1-cent global account: $(cat "$E2E_TMP/probe.json")"
laddr=$(ctl --json status | json '[p["metrics"][0] for p in d["processes"] if p["name"] == "emads-ledger"][0]')
curl -sf "http://$laddr/metrics" >"$E2E_TMP/ledger.prom"
grep -Eq '^emads_ledger_denials_total\{account="global",dimension="cost_uusd"\} [1-9]' "$E2E_TMP/ledger.prom" ||
    fail "no denial of the global account's cost counted: $(grep denials "$E2E_TMP/ledger.prom"); $(cat "$E2E_TMP/denied.json")"
grep -Eq '^emads_ledger_alerts_total\{kind="denied"\} [1-9]' "$E2E_TMP/ledger.prom" ||
    fail "no denied alert counted"
echo "denials counted: $(grep '^emads_ledger_denials_total' "$E2E_TMP/ledger.prom")"
echo "metrics: ok"
