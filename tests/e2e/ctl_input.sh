#!/usr/bin/env bash
# ctl_input: emadsctl refuses bad task texts and values before anything is
# sent (exit 2 with the reason, and no task is created), escapes control
# characters of task texts in its text output, and after `down` leaves no
# bus socket behind, so `status` says at once that nothing runs (exit 3);
# a stale socket with no bus behind it is recognised the same way. With
# the test LLM server reporting more tokens than were reserved, a task that
# ends `done` over its --max-tokens is reported as an overrun (exit 0).
. "$(dirname "$0")/lib.sh"
llm=false
if [ -x "${EMADS_TEST_LLM:-}" ]; then
    e2e_llm_server --usage 8000,8000
    llm=true
fi

# expect RC PATTERN CMD... : run ctl CMD, want exit RC and PATTERN on stderr
expect() {
    local want=$1 pat=$2 rc=0
    shift 2
    ctl "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "ctl $*: exit $rc, want $want; stderr: $(cat "$E2E_TMP/err")"
    grep -q -- "$pat" "$E2E_TMP/err" || fail "ctl $*: stderr lacks '$pat': $(cat "$E2E_TMP/err")"
}

ctl up >/dev/null

# 1. texts and values refused with exit 2 and the reason
bad=$(printf 'migrate \xff\xfe billing')
expect 2 "task text is not valid UTF-8 (byte 9)" submit "$bad"
expect 2 "task text is not valid UTF-8" plan "$bad"
expect 2 "task text is not valid UTF-8" submit --wait "$(printf 'ok \xc0\xaf overlong')"
expect 2 "task text is empty" submit "   "
expect 2 "task text is empty" submit --wait "$(printf ' \t\n ')"
expect 2 "task text is empty" plan "  "
expect 2 "more than 6 decimals" submit --max-cost 0.0000001 "a task"
expect 2 "too large (max" submit --max-tokens 99999999999999999999999 "a task"
expect 2 "unknown option '--bogus'" submit --bogus "a task"
expect 2 "Try 'emadsctl submit --help'" submit --bogus "a task"
expect 2 "needs a task id" spend --task
grep -q "internal" "$E2E_TMP/err" && fail "an internal error leaked: $(cat "$E2E_TMP/err")"
n=$(ctl --json tasks --all | json 'len(d["tasks"])')
[ "$n" -eq 0 ] || fail "$n task(s) created by refused submissions"

# 2. control characters in a task text reach the terminal escaped
task=$(ctl submit "$(printf 'evil \033[2J\001 text')")
ctl tasks >"$E2E_TMP/tasks"
grep -q "$task" "$E2E_TMP/tasks" || fail "task $task not listed"
if LC_ALL=C grep -q "$(printf '\033')" "$E2E_TMP/tasks"; then fail "raw ESC in 'tasks' output"; fi
if LC_ALL=C grep -q "$(printf '\001')" "$E2E_TMP/tasks"; then fail "raw ^A in 'tasks' output"; fi
grep -qF 'evil \x1b[2J\x01 text' "$E2E_TMP/tasks" || fail "text not shown escaped: $(cat "$E2E_TMP/tasks")"
ctl --json tasks | json '[t["text"] for t in d["tasks"]]' | grep -qF '\u001b[2J' \
    || fail "--json does not keep the text as it is"
if LC_ALL=C grep -n ' $' "$E2E_TMP/tasks"; then fail "trailing blanks in 'tasks' output"; fi
wait_final "$task" 60 >/dev/null

# 3. a task that ends over its limit says so, and still exits 0
if $llm; then
    rc=0
    ctl submit --wait --max-tokens 9000 "Should we migrate billing to Kubernetes?" \
        >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
    [ $rc -eq 0 ] || fail "overrun task: exit $rc, want 0: $(cat "$E2E_TMP/err")"
    grep -q "task .* done" "$E2E_TMP/out" || fail "overrun task not done: $(cat "$E2E_TMP/out")"
    grep -q "warning: overrun: task tokens [0-9]* > limit 9000 (" "$E2E_TMP/err" \
        || fail "no overrun warning: $(cat "$E2E_TMP/err")"
    t=$(grep -o 't-[0-9a-f]*' "$E2E_TMP/out" | head -1)
    o=$(ctl --json result "$t" | json '[x for x in d["overruns"] if x["account"] == "task" and x["dimension"] == "tokens"][0]["limit"]')
    [ "$o" = 9000 ] || fail "result --json: no task token overrun (got '$o')"
fi

# 4. down removes the bus socket; status then says at once it is not running
ctl down >/dev/null
[ -e "$E2E_RUN/bus.sock" ] && fail "bus.sock left behind by down"
expect 3 "not running (no bus socket" status
expect 3 "not running (no bus socket" submit "a task"

# 5. a stale socket (nobody listening) is "not running" too, without a ping
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$E2E_RUN/bus.sock"
[ -S "$E2E_RUN/bus.sock" ] || fail "test set-up: no stale socket"
expect 3 "stale bus socket" status
echo "ctl_input: ok"
