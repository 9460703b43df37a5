/*  cmd_task.c - emadsctl submit, result, tasks, plan, cancel and watch: the
    commands that talk to the orchestrator (and listen to the bus's events).

    submit --wait follows the task by polling its status and waking on its
    `step.` / `task.` events, printing each step when it starts and when it
    ends (agent, path, model, spend), then the final recommendation. Polling
    is the source of truth, so an event lost on the way changes nothing but
    the latency of a line.
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctlbus.h"
#include "ctl/ctlhosts.h"
#include "common/views.h"
#include "proto/ev.h"

#define TASK_CALL_TIMEOUT_MS 10000

/* ---- shared parsing -------------------------------------------------------- */

/* Budget override flags shared by submit and plan. Returns 1 if argv[*i]
   was one (consuming its value), 0 if not, or an exit code < 0 on error. */
static int s_limit_flag(ctl_opts_t *opts, int argc, char **argv, int *i, ev_t *limits)
{
    /* the same flags and ranges as the configuration's budgets (common/dims.h) */
    for (int d = 0; d < DIM_COUNT; d++) {
        const dims_info_t *di = &dims_info[d];
        bool usd = dims_is_money(d);
        if (strcmp(argv[*i], di->flag))
            continue;
        if (*i + 1 >= argc) {
            ctl_usage_error(opts, "option '%s' needs a value", di->flag);
            return -1;
        }
        const char *v = argv[++*i];
        int64_t x;
        char why[160];
        if ((usd ? ctl_parse_usd(v, &x, why, sizeof why)
                 : ctl_parse_count(v, di->limit_max, &x, why, sizeof why)) != 0) {
            if (usd) /* the reason quotes the value */
                ctl_usage_error(opts, "%s: %s (USD with up to 6 decimals, e.g. 0.50)", di->flag,
                                why);
            else
                ctl_usage_error(opts, "%s: '%.40s%s': %s", di->flag, v, strlen(v) > 40 ? "..." : "",
                                why);
            return -1;
        }
        ev_set_int(limits, di->wire, x);
        return 1;
    }
    return 0;
}

/* Join argv words into one task text (caller frees). */
static char *s_join(int n, char **words)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(words[i]) + 1;
    char *s = calloc(1, len);
    if (!s)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, words[i]);
    }
    return s;
}

typedef struct {
    const char *workflow;
    ev_t *limits;
    bool wait;
    int64_t timeout_s;
    const char *on_exhaust; /* submit --on-exhaust degrade|fail, NULL: the class's */
    char *text;
} task_args_t;

/* Parse [flags] TEXT... for submit and plan. 0 or an exit code. */
static int s_task_args(ctl_opts_t *opts, int argc, char **argv, bool submit, task_args_t *a)
{
    memset(a, 0, sizeof *a);
    a->limits = ev_new_map();
    char **words = calloc((size_t)argc + 1, sizeof *words);
    int n = 0;
    bool raw = false;
    for (int i = 1; i < argc; i++) {
        int r = raw ? 0 : s_limit_flag(opts, argc, argv, &i, a->limits);
        if (r < 0) {
            free(words);
            return CTL_EXIT_USAGE;
        }
        if (r > 0)
            continue;
        if (!raw && !strcmp(argv[i], "--")) {
            raw = true;
        } else if (!raw &&
                   (!strcmp(argv[i], "--workflow") ||
                    (submit &&
                     (!strcmp(argv[i], "--timeout") || !strcmp(argv[i], "--on-exhaust")))) &&
                   i + 1 >= argc) {
            free(words);
            return ctl_usage_error(opts, "%s: option '%s' needs a value", argv[0], argv[i]);
        } else if (!raw && !strcmp(argv[i], "--workflow")) {
            a->workflow = argv[++i];
        } else if (!raw && submit && !strcmp(argv[i], "--on-exhaust")) {
            a->on_exhaust = argv[++i];
            if (strcmp(a->on_exhaust, "degrade") && strcmp(a->on_exhaust, "fail")) {
                free(words);
                return ctl_usage_error(opts, "%s: --on-exhaust: '%.40s': must be degrade or fail",
                                       argv[0], a->on_exhaust);
            }
        } else if (!raw && submit && !strcmp(argv[i], "--wait")) {
            a->wait = true;
        } else if (!raw && submit && !strcmp(argv[i], "--timeout")) {
            char why[96];
            if (ctl_parse_count(argv[++i], 100LL * 365 * 86400, &a->timeout_s, why, sizeof why) !=
                0) {
                free(words);
                return ctl_usage_error(opts, "%s: --timeout: '%.40s': %s (seconds; 0 = no limit)",
                                       argv[0], argv[i], why);
            }
        } else if (!raw && argv[i][0] == '-' && argv[i][1]) {
            free(words);
            return ctl_usage_error(opts, "%s: unknown option '%s'", argv[0], argv[i]);
        } else
            words[n++] = argv[i];
    }
    a->text = n ? s_join(n, words) : NULL;
    free(words);
    if (!a->text || !a->text[0])
        return ctl_usage_error(opts, "%s: missing the task text", argv[0]);
    /* checked here: the bus client cannot encode such a text and would only
       say that the request could not be sent */
    long bad = ev_utf8_invalid(a->text, strlen(a->text));
    if (bad >= 0)
        return ctl_usage_error(opts, "%s: task text is not valid UTF-8 (byte %ld)", argv[0],
                               bad + 1);
    if (ctl_blank(a->text))
        return ctl_usage_error(opts, "%s: task text is empty (only white space)", argv[0]);
    if (strlen(a->text) > 16 * 1024)
        return ctl_usage_error(opts, "%s: the task text is longer than 16 KiB (%zu bytes)", argv[0],
                               strlen(a->text));
    return 0;
}

static void s_task_args_free(task_args_t *a)
{
    ev_destroy(&a->limits);
    free(a->text);
}

/* Parse submit/plan arguments and connect to the constellation. On failure
   everything is released and the exit code returned; on success the caller
   owns *a and *conn. */
static int s_task_begin(ctl_opts_t *opts, int argc, char **argv, bool with_wait, task_args_t *a,
                        ctl_conn_t *conn)
{
    int rc = s_task_args(opts, argc, argv, with_wait, a);
    if (rc) {
        s_task_args_free(a);
        return rc;
    }
    rc = ctl_conn_open(opts, conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(conn);
        s_task_args_free(a);
    }
    return rc;
}

static void s_fill_task_body(ev_t *b, const task_args_t *a)
{
    ev_set_str(b, "text", a->text);
    if (a->workflow)
        ev_set_str(b, "workflow", a->workflow);
    if (ev_len(a->limits))
        ev_set(b, "limits", ev_dup(a->limits));
    if (a->on_exhaust)
        ev_set_str(b, "on_exhaust", a->on_exhaust);
}

/* ---- step lines -------------------------------------------------------------- */

/* How a step's spend was measured, as a mark before its amounts: "~" for
   estimated, "hold " for the whole hold charged (outcome unknown), "" when
   counted. */
static const char *s_measured_mark(const ev_t *step)
{
    const char *m = ev_get_str(step, "measured", "");
    return !strcmp(m, "estimated") ? "~" : !strcmp(m, "whole_hold") ? "hold " : "";
}

static void s_print_step_line(const ev_t *s)
{
    const char *state = ev_get_str(s, "state", "?");
    bool running = !strcmp(state, "running");
    /* started: what this attempt runs (a re-planned one differs from the
       first plan); an attempt seen only when it had ended: what ran */
    const char *path = ev_get_str(s, "path", NULL);
    const char *model = path ? ev_get_str(s, "model", NULL) : NULL;
    if (running && ev_get_str(s, "attempt_path", NULL)) {
        path = ev_get_str(s, "attempt_path", NULL);
        model = ev_get_str(s, "attempt_model", NULL);
    }
    if (!path) {
        path = ev_get_str(s, "planned_path", "-");
        model = ev_get_str(s, "planned_model", NULL);
    }
    char what[160];
    snprintf(what, sizeof what, "%s%s%s", path, model ? " " : "", model ? model : "");
    char line[1024];
    int n = snprintf(line, sizeof line, "  %-14s %-14s %-8s %-22s", ev_get_str(s, "step", "?"),
                     ev_get_str(s, "agent", "?"), running ? "started" : state,
                     !strcmp(state, "skipped") ? "-" : what);
    const ev_t *actual = ev_get(s, "actual");
    if (!running && actual && n > 0 && (size_t)n < sizeof line) {
        char sp[160];
        ctl_fmt_spend(sp, sizeof sp, actual, s_measured_mark(s));
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", sp);
    }
    const char *err = ev_get_str(ev_get(s, "error"), "reason", NULL);
    if (!running && err && err[0] && n > 0 && (size_t)n < sizeof line) {
        char esc[300];
        snprintf(line + n, sizeof line - (size_t)n, " (%s)", ctl_escape(esc, sizeof esc, err));
    }
    ctl_printf("%s\n", line);
    fflush(stdout);
}

/* "label: text" with text escaped for a terminal. */
static void s_print_text(const char *label, const char *text)
{
    char *esc = ctl_escape_dup(text);
    ctl_printf("%s%s\n", label, esc ? esc : "");
    free(esc);
}

static void s_print_result(const ev_t *r)
{
    const char *state = ev_get_str(r, "state", "?");
    printf("task %s %s\n", ev_get_str(r, "task", "?"), state);
    /* texts from the task and the agents: control characters escaped */
    const char *reason = ev_get_str(r, "reason", NULL);
    if (reason && reason[0])
        s_print_text("reason: ", reason);
    const char *rec = ev_get_str(r, "recommendation", "");
    if (rec[0]) {
        s_print_text("recommendation: ", rec);
        printf("confidence: %.2f\n", ev_get_float(r, "confidence", 0));
    }
    const ev_t *out = ev_get(r, "output");
    if (ev_get_bool(out, "partial", false)) {
        printf("partial results from:");
        int n = 0;
        for (size_t i = 0; i < ev_len(out); i++)
            if (ev_type(ev_at(out, i)) == EV_MAP) {
                printf(" %s", ev_key_at(out, i));
                n++;
            }
        printf("%s\n", n ? "" : " (no step finished)");
        return;
    }
    const ev_t *deg = ev_get(r, "degraded");
    for (size_t i = 0; i < ev_len(deg); i++) {
        const ev_t *d = ev_at(deg, i);
        char label[256];
        snprintf(label, sizeof label,
                 "degraded: %s planned %s, ran %s: ", ev_get_str(d, "step", "?"),
                 ev_get_str(d, "planned", "?"), ev_get_str(d, "ran", "?"));
        s_print_text(label, ev_get_str(d, "reason", ""));
    }
    const char *decision = ev_get_str(out, "decision", NULL);
    if (decision)
        s_print_text("decision: ", decision);
    const ev_t *conds = ev_get(out, "conditions");
    for (size_t i = 0; i < ev_len(conds); i++)
        if (ev_str(ev_at(conds, i)))
            s_print_text("  - ", ev_str(ev_at(conds, i)));
}

static void s_print_steps_table(const ev_t *steps)
{
    ctl_printf("%-14s %-14s %-8s %-6s %-12s %s\n", "STEP", "AGENT", "STATE", "PATH", "MODEL",
               ctl_step_cols_heading);
    for (size_t i = 0; i < ev_len(steps); i++) {
        const ev_t *s = ev_at(steps, i);
        char cols[128];
        ctl_fmt_step_cols(cols, sizeof cols, ev_get(s, "actual"), s_measured_mark(s));
        ctl_printf("%-14s %-14s %-8s %-6s %-12s %s\n", ev_get_str(s, "step", "?"),
                   ev_get_str(s, "agent", "?"), ev_get_str(s, "state", "?"),
                   ev_get_str(s, "path", "-"), ev_get_str(s, "model", "-"), cols);
    }
    /* which instance on which host answered each step (several hosts may
       serve one agent) */
    bool any = false;
    for (size_t i = 0; i < ev_len(steps); i++) {
        char served[160];
        if (!strcmp(ctl_step_served_by(ev_at(steps, i), served, sizeof served), "-"))
            continue;
        ctl_printf("%s %s %s", any ? "," : "served by:", ev_get_str(ev_at(steps, i), "step", "?"),
                   served);
        any = true;
    }
    if (any)
        printf("\n");
}

/* Print a task_result (JSON, or text with the steps table when `table`),
   then, once the task has ended, warn of every limit its spend went over:
   the ledger records spend that happened even beyond a hold, so a task can
   finish `done` above its budget. JSON gets the same as an `overruns`
   array. */
static void s_show_result(ctl_opts_t *opts, ctl_conn_t *conn, const ev_t *res, bool table)
{
    bool fin = ctl_task_ended(ev_get_str(res, "state", ""));
    if (opts->json) {
        json_t *j = ctl_ev_json(res);
        json_t *over = fin ? ctl_task_overruns(opts, conn, ev_get_str(res, "task", "")) : NULL;
        json_object_set_new(j, "overruns", over ? over : json_array());
        ctl_print_json(j);
        return;
    }
    s_print_result(res);
    const ev_t *awaiting = ev_get(res, "awaiting_commit");
    if (ev_get_bool(res, "provisional", false) && ev_len(awaiting)) {
        printf("spend: provisional: charged the whole hold, awaiting the commit of:");
        for (size_t i = 0; i < ev_len(awaiting); i++)
            printf(" %s", ev_str(ev_at(awaiting, i)));
        printf(" (see '%s result %s')\n", opts->prog, ev_get_str(res, "task", "?"));
    } else if (ev_get_bool(res, "provisional", false))
        printf("spend: provisional: a step's spend is not settled yet (see '%s result %s')\n",
               opts->prog, ev_get_str(res, "task", "?"));
    if (table) {
        printf("\n");
        s_print_steps_table(ev_get(res, "steps"));
    }
    fflush(stdout);
    if (fin)
        json_decref(ctl_task_overruns(opts, conn, ev_get_str(res, "task", "")));
}

/* ---- submit -------------------------------------------------------------- */

static ev_t *s_get(ctl_opts_t *opts, ctl_conn_t *conn, const char *type, const char *task, int *rc)
{
    ev_t *b = proto_body(type);
    ev_set_str(b, "task", task);
    return ctl_call(opts, conn, "orchestrator", &b, TASK_CALL_TIMEOUT_MS, type, rc);
}

static void s_stopped_following(ctl_opts_t *opts, const char *task)
{
    fprintf(stderr, "\n%s: stopped following; the task continues: see '%s result %s'\n", opts->prog,
            opts->prog, task);
}

/* True when a task_result's spend is not final yet: a step still running
   (the end is decided, its last steps finish), an attempt whose reply
   was lost without the ledger's charge for it (settled when the task is
   closed), or one charged the whole hold whose commit has not arrived
   (awaiting_commit; re-settled when it lands). */
static bool s_unsettled(const ev_t *res)
{
    if (ev_len(ev_get(res, "awaiting_commit")) > 0)
        return true; /* charged the whole hold: re-settled when its commit lands */
    const ev_t *steps = ev_get(res, "steps");
    for (size_t i = 0; i < ev_len(steps); i++) {
        const ev_t *s = ev_at(steps, i);
        if (!strcmp(ev_get_str(s, "state", ""), "running"))
            return true;
        const ev_t *atts = ev_get(s, "attempts");
        for (size_t k = 0; k < ev_len(atts); k++) {
            const ev_t *a = ev_at(atts, k);
            if (!ev_get(a, "actual") &&
                !strcmp(ev_get_str(ev_get(a, "error"), "code", ""), PROTO_E_WORKER_LOST))
                return true;
        }
    }
    return false;
}

/* How long --wait waits, once the task has ended, for its spend to settle
   before it prints the totals marked provisional, ms. */
#define TASK_SETTLE_WAIT_MS 15000

/* Follow task until it ends; prints step lines unless json. Returns the
   final task_result (caller owns) or NULL with *rc set. */
static ev_t *s_follow(ctl_opts_t *opts, ctl_conn_t *conn, const char *task, int64_t timeout_s,
                      int *rc)
{
    char last[CFG_MAX_STEPS][48];
    memset(last, 0, sizeof last);
    int64_t deadline = timeout_s > 0 ? zclock_mono() + timeout_s * 1000 : INT64_MAX;
    bool announced = false;
    while (true) {
        ev_t *st = s_get(opts, conn, "status", task, rc);
        if (!st) {
            if (*rc == CTL_EXIT_INTERRUPTED)
                s_stopped_following(opts, task);
            return NULL;
        }
        if (!announced && !opts->json) {
            printf("task %s: class %s\n", task, ev_get_str(st, "class", "?"));
            announced = true;
        }
        const ev_t *steps = ev_get(st, "steps");
        for (size_t i = 0; i < ev_len(steps) && i < CFG_MAX_STEPS; i++) {
            const ev_t *s = ev_at(steps, i);
            char key[48];
            snprintf(key, sizeof key, "%s/%" PRId64, ev_get_str(s, "state", ""),
                     ev_get_int(s, "attempt", 0));
            if (strcmp(key, last[i]) == 0)
                continue;
            const char *state = ev_get_str(s, "state", "");
            bool show = strcmp(state, "pending") != 0;
            /* a step that started and ended between two polls: show both */
            if (show && strcmp(state, "running") && strncmp(last[i], "running", 7) &&
                strcmp(state, "skipped") && !opts->json) {
                ev_t *as_running = ev_dup(s);
                ev_set_str(as_running, "state", "running");
                s_print_step_line(as_running);
                ev_destroy(&as_running);
            }
            if (show && !opts->json)
                s_print_step_line(s);
            snprintf(last[i], sizeof last[i], "%s", key);
        }
        bool fin = ctl_task_ended(ev_get_str(st, "state", ""));
        ev_destroy(&st);
        if (fin) {
            /* the totals printed are final: wait for the last steps and
               the settlement of lost replies, else mark them provisional */
            int64_t settle_until = zclock_mono() + TASK_SETTLE_WAIT_MS;
            ev_t *res = s_get(opts, conn, "result", task, rc);
            while (res && s_unsettled(res) && zclock_mono() < settle_until && !zsys_interrupted) {
                zclock_sleep(100);
                ev_destroy(&res);
                res = s_get(opts, conn, "result", task, rc);
            }
            if (!res && *rc == CTL_EXIT_INTERRUPTED)
                s_stopped_following(opts, task);
            if (res)
                ev_set_bool(res, "provisional", s_unsettled(res));
            return res;
        }
        if (zsys_interrupted) {
            s_stopped_following(opts, task);
            *rc = CTL_EXIT_INTERRUPTED;
            return NULL;
        }
        if (zclock_mono() > deadline) {
            fprintf(stderr, "%s: task %s did not finish within %" PRId64 " s\n", opts->prog, task,
                    timeout_s);
            *rc = CTL_EXIT_FAIL;
            return NULL;
        }
        /* wake on the task's events, or poll again after 200 ms */
        int64_t until = zclock_mono() + 200;
        while (zclock_mono() < until) {
            bus_msg_t m;
            int r = bus_client_recv(conn->client, &m, (int)(until - zclock_mono()));
            if (r < 0 || zsys_interrupted) {
                if (r == 1)
                    bus_msg_clear(&m);
                s_stopped_following(opts, task);
                *rc = zsys_interrupted ? CTL_EXIT_INTERRUPTED : CTL_EXIT_FAIL;
                return NULL;
            }
            if (r == 1) {
                bool ours =
                    m.kind == BUS_MSG_EVENT && !strcmp(ev_get_str(m.body, "task", ""), task);
                bus_msg_clear(&m);
                if (ours)
                    break;
            }
        }
    }
}

int ctl_cmd_submit(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        printf("usage: emadsctl [--json] submit [--wait] [--timeout S] [--workflow NAME]\n"
               "                [--max-tokens N] [--max-cost USD] [--max-latency-ms N]\n"
               "                [--max-tool-calls N] [--on-exhaust degrade|fail] [--] TEXT...\n"
               "\n"
               "Submit a task and print its id. --wait follows it step by step (agent,\n"
               "path, model, spend) and prints the final recommendation; the exit code is\n"
               "then 0 only if the task is done. The --max-* flags lower the task's\n"
               "total budget for this task.\n"
               "\n"
               "  TEXT              the task, UTF-8, not blank, at most 16 KiB (16384 bytes)\n"
               "  --timeout S       with --wait: stop following after S seconds (the task\n"
               "                    goes on); 0, the default, waits until the task ends\n"
               "  --max-tokens N    tokens (at most 1000000000)\n"
               "  --max-cost USD    US dollars, up to 6 decimals (e.g. 0.25)\n"
               "  --max-latency-ms N  milliseconds (at most 86400000)\n"
               "  --max-tool-calls N  tool calls (at most 1000000)\n"
               "  --on-exhaust degrade|fail\n"
               "                    when the budget forces a step below its best option\n"
               "                    (a cheaper model, the local path): degrade runs it so\n"
               "                    and says why ('budget forced local path: ...') in the\n"
               "                    step and in the result's 'degraded' lines; fail ends\n"
               "                    the task budget_exhausted instead. Default: the task\n"
               "                    class's on_exhaust in the config, else degrade\n"
               "\n"
               "The spend --wait prints is final (it waits up to 15 s for the last steps,\n"
               "lost replies and the commits of steps charged the whole hold to settle),\n"
               "else marked 'spend: provisional' (naming the steps charged the whole hold\n"
               "that still await their commit; --json: \"awaiting_commit\").\n"
               "When the task has ended, its spend is checked against its limits: each\n"
               "account and dimension over its limit prints 'warning: overrun: ...' on\n"
               "standard error (--json: the \"overruns\" array). An overrun does not change\n"
               "the exit code: the task did finish.\n"
               "Ctrl-C while waiting stops following only; the task continues (see\n"
               "'emadsctl result ID').\n"
               "\n"
               "Exit status: 0 submitted (with --wait: done), 1 the task failed, was\n"
               "cancelled or ran out of budget, or --timeout passed, 2 usage error (bad\n"
               "text or value), 3 not running, 130 interrupted by Ctrl-C.\n");
        return CTL_EXIT_OK;
    }
    task_args_t a;
    ctl_conn_t conn;
    int rc = s_task_begin(opts, argc, argv, true, &a, &conn);
    if (rc)
        return rc;
    if (a.wait) { /* before submitting, so no event of the task is missed */
        bus_client_subscribe(conn.client, "step.");
        bus_client_subscribe(conn.client, "task.");
    }
    ev_t *b = proto_body("submit");
    char rid[64];
    ctl_request_id(rid, sizeof rid);
    ev_set_str(b, "request_id", rid);
    s_fill_task_body(b, &a);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, TASK_CALL_TIMEOUT_MS, "submit", &rc);
    if (rep) {
        char task[PROTO_MAX_ID + 1];
        snprintf(task, sizeof task, "%s", ev_get_str(rep, "task", ""));
        ev_destroy(&rep);
        if (!a.wait) {
            if (opts->json)
                ctl_print_json(json_pack("{s:s}", "task", task));
            else
                printf("%s\n", task);
        } else {
            ev_t *res = s_follow(opts, &conn, task, a.timeout_s, &rc);
            if (!res && opts->json) {
                /* stopped early (--timeout, Ctrl-C, lost contact): the task
                   goes on; a script still needs its id */
                json_t *j = json_pack("{s:s, s:b}", "task", task, "following", 0);
                ctl_print_json(j);
            }
            if (res) {
                s_show_result(opts, &conn, res, false);
                rc = strcmp(ev_get_str(res, "state", ""), "done") ? CTL_EXIT_FAIL : CTL_EXIT_OK;
                ev_destroy(&res);
            }
        }
    }
    ctl_conn_close(&conn);
    s_task_args_free(&a);
    return rc;
}

/* ---- result, cancel ------------------------------------------------------ */

static int s_one_task(ctl_opts_t *opts, int argc, char **argv, const char *usage)
{
    if (ctl_wants_help(argc, argv)) {
        printf("%s", usage);
        return CTL_EXIT_OK;
    }
    if (argc != 2)
        return ctl_usage_error(opts, "%s: expected one task id", argv[0]);
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    ev_t *rep;
    if (!strcmp(argv[0], "cancel")) {
        ev_t *b = proto_body("cancel");
        char rid[64];
        ctl_request_id(rid, sizeof rid);
        ev_set_str(b, "request_id", rid);
        ev_set_str(b, "task", argv[1]);
        rep = ctl_call(opts, &conn, "orchestrator", &b, TASK_CALL_TIMEOUT_MS, "cancel", &rc);
        if (rep && !opts->json)
            printf("task %s %s\n", argv[1], ev_get_str(rep, "state", "?"));
    } else {
        rep = s_get(opts, &conn, "result", argv[1], &rc);
        if (rep)
            s_show_result(opts, &conn, rep, true);
    }
    if (rep && opts->json && !strcmp(argv[0], "cancel"))
        ctl_print_json(ctl_ev_json(rep));
    ev_destroy(&rep);
    ctl_conn_close(&conn);
    return rc;
}

int ctl_cmd_result(ctl_opts_t *opts, int argc, char **argv)
{
    return s_one_task(opts, argc, argv,
                      "usage: emadsctl [--json] result TASK\n"
                      "\nPrint a task's state, final recommendation and steps with their spend"
                      "\n(tokens, latency, tool calls, USD with 6 decimals). Once the task has"
                      "\nended, every limit its spend went over is reported as 'warning:"
                      "\noverrun: ...' on standard error (--json: the \"overruns\" array); the"
                      "\nexit code stays 0.\n"
                      "\nExit status: 0 ok, 1 unknown task id, 2 usage error, 3 not running.\n");
}

int ctl_cmd_cancel(ctl_opts_t *opts, int argc, char **argv)
{
    return s_one_task(opts, argc, argv,
                      "usage: emadsctl [--json] cancel TASK\n"
                      "\nCancel a queued or running task (steps in flight finish; nothing new"
                      "\nstarts).\n"
                      "\nExit status: 0 ok, 1 unknown task id, 2 usage error, 3 not running.\n");
}

/* ---- tasks --------------------------------------------------------------- */

int ctl_cmd_tasks(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        printf("usage: emadsctl [--json] tasks [--limit N] [--state STATE] [--all]\n"
               "\nList recent tasks, newest first (default 20). STATE is one of queued,\n"
               "running, done, failed, budget_exhausted, cancelled. Policy-training tasks\n"
               "(emadsctl train) are listed only with --all, marked in the TRAIN column.\n"
               "Control characters in task texts are shown escaped (\\x1b); --json gives\n"
               "the texts as they are.\n"
               "\nExit status: 0 ok, 2 usage error, 3 not running.\n");
        return CTL_EXIT_OK;
    }
    int64_t limit = 20;
    const char *state = NULL;
    bool all = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all"))
            all = true;
        else if ((!strcmp(argv[i], "--limit") || !strcmp(argv[i], "--state")) && i + 1 >= argc)
            return ctl_usage_error(opts, "tasks: option '%s' needs a value", argv[i]);
        else if (!strcmp(argv[i], "--limit")) {
            if (ctl_parse_int(argv[++i], &limit) != 0 || limit < 1 || limit > 1000)
                return ctl_usage_error(opts, "tasks: --limit must be 1..1000");
        } else if (!strcmp(argv[i], "--state"))
            state = argv[++i];
        else if (argv[i][0] == '-')
            return ctl_usage_error(opts, "tasks: unknown option '%s'", argv[i]);
        else
            return ctl_usage_error(opts, "tasks: unexpected argument '%s'", argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    ev_t *b = view_tasks_request(limit, state, all);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, TASK_CALL_TIMEOUT_MS, "tasks", &rc);
    if (rep) {
        const ev_t *tasks = ev_get(rep, "tasks");
        if (opts->json)
            ctl_print_json(ctl_ev_json(rep));
        else {
            ctl_printf("%s%-16s %-17s %-14s %-20s %s\n", all ? "TRAIN " : "", "TASK", "STATE",
                       "CLASS", "CREATED", "TEXT");
            for (size_t i = 0; i < ev_len(tasks); i++) {
                const ev_t *t = ev_at(tasks, i);
                time_t secs = (time_t)(ev_get_int(t, "created_ms", 0) / 1000);
                struct tm tm;
                char when[32];
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&secs, &tm));
                /* one line per task: white space folded, control
                   characters escaped, cut at 60 bytes */
                char flat[256], text[64];
                snprintf(flat, sizeof flat, "%s", ev_get_str(t, "text", ""));
                for (char *p = flat; *p; p++)
                    if (*p == '\n' || *p == '\t' || *p == '\r')
                        *p = ' ';
                ctl_escape(text, sizeof text, flat);
                if (strlen(ev_get_str(t, "text", "")) >= sizeof flat && strlen(text) < 60)
                    snprintf(text + strlen(text), sizeof text - strlen(text), "...");
                ctl_printf("%s%-16s %-17s %-14s %-20s %s\n",
                           all ? (ev_get_bool(t, "training", false) ? "yes   " : "-     ") : "",
                           ev_get_str(t, "task", "?"), ev_get_str(t, "state", "?"),
                           ev_get_str(t, "class", "-"), when, text);
            }
        }
        ev_destroy(&rep);
    }
    ctl_conn_close(&conn);
    return rc;
}

/* ---- plan ---------------------------------------------------------------- */

static void s_print_plan_steps(const ev_t *steps)
{
    for (size_t i = 0; i < ev_len(steps); i++) {
        const ev_t *s = ev_at(steps, i);
        if (ev_get_bool(s, "skipped", false)) {
            printf("    %-14s %-14s skipped\n", ev_get_str(s, "step", "?"),
                   ev_get_str(s, "agent", "?"));
            continue;
        }
        const char *model = ev_get_str(s, "model", NULL);
        const char *tool = ev_get_str(s, "tool", NULL);
        char what[160];
        snprintf(what, sizeof what, "%s%s%s%s%s", ev_get_str(s, "path", "?"), tool ? " " : "",
                 tool ? tool : "", model ? " " : "", model ? model : "");
        char sp[160];
        ctl_fmt_spend(sp, sizeof sp, ev_get(s, "est"), "");
        printf("    %-14s %-14s %-26s q=%.2f  est %s\n", ev_get_str(s, "step", "?"),
               ev_get_str(s, "agent", "?"), what, ev_get_float(s, "quality", 0), sp);
    }
}

int ctl_cmd_plan(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        printf("usage: emadsctl [--json] plan [--workflow NAME] [--max-tokens N] [--max-cost USD]\n"
               "                [--max-latency-ms N] [--max-tool-calls N] [--] TEXT...\n"
               "\nShow the plan the orchestrator would choose for a task, and its\n"
               "alternatives, without running anything. TEXT and the --max-* flags are as\n"
               "for submit: UTF-8, not blank, at most 16 KiB; tokens, US dollars with up\n"
               "to 6 decimals, milliseconds, tool calls.\n"
               "\nExit status: 0 a plan fits, 1 no plan fits the budget, 2 usage error,\n"
               "3 not running.\n");
        return CTL_EXIT_OK;
    }
    task_args_t a;
    ctl_conn_t conn;
    int rc = s_task_begin(opts, argc, argv, false, &a, &conn);
    if (rc)
        return rc;
    ev_t *b = proto_body("plan");
    s_fill_task_body(b, &a);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, TASK_CALL_TIMEOUT_MS, "plan", &rc);
    if (rep) {
        bool feasible = ev_get_bool(rep, "feasible", false);
        if (opts->json)
            ctl_print_json(ctl_ev_json(rep));
        else {
            printf("class %s, workflow %s\n", ev_get_str(rep, "class", "?"),
                   ev_get_str(rep, "workflow", "?"));
            if (!strcmp(ev_get_str(rep, "scores", "prior"), "policy"))
                printf("step scores: learned policy (version %" PRId64 ")\n",
                       ev_get_int(rep, "policy_version", 0));
            else
                printf("step scores: prior (configured qualities)\n");
            const ev_t *np = ev_get(rep, "not_planned");
            for (size_t i = 0; i < ev_len(np); i++) {
                const ev_t *e = ev_at(np, i);
                char label[200];
                snprintf(label, sizeof label,
                         "not planned: %s's LLM options on %s: ", ev_get_str(e, "agent", "?"),
                         ev_get_str(e, "provider", "?"));
                s_print_text(label, ev_get_str(e, "why", ""));
            }
            if (!feasible) {
                printf("no feasible plan: the binding constraint is %s\n",
                       ev_get_str(rep, "binding", "unknown"));
            } else {
                char sp[160];
                ctl_fmt_spend(sp, sizeof sp, ev_get(rep, "total"), "");
                printf("chosen plan: quality %.3f, estimated %s\n", ev_get_float(rep, "quality", 0),
                       sp);
                s_print_plan_steps(ev_get(rep, "steps"));
                const ev_t *alts = ev_get(rep, "alternatives");
                for (size_t i = 0; i < ev_len(alts); i++) {
                    const ev_t *alt = ev_at(alts, i);
                    ctl_fmt_spend(sp, sizeof sp, ev_get(alt, "total"), "");
                    printf("alternative %zu: quality %.3f, estimated %s\n", i + 1,
                           ev_get_float(alt, "quality", 0), sp);
                    s_print_plan_steps(ev_get(alt, "steps"));
                }
            }
        }
        if (!feasible)
            rc = CTL_EXIT_FAIL;
        ev_destroy(&rep);
    }
    ctl_conn_close(&conn);
    s_task_args_free(&a);
    return rc;
}

/* ---- watch --------------------------------------------------------------- */

#define WATCH_SILENT_MS 3000 /* no event nor pong for this long: disconnected */

/* Subscribe to the prefixes, or to everything when there are none. */
static void s_subscribe(bus_client_t *client, const char *const *prefixes, int n)
{
    if (n == 0)
        bus_client_subscribe(client, "");
    for (int i = 0; i < n; i++)
        bus_client_subscribe(client, prefixes[i]);
}

int ctl_cmd_watch(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        printf("usage: emadsctl [--json] watch [--task ID] [--exit-on-disconnect] [PREFIX...]\n"
               "\nStream events and alerts until interrupted: task.*, step.*, spend.*,\n"
               "alert.* (default: everything). PREFIX narrows the topics (e.g. alert.);\n"
               "--task shows only one task's events. --json prints one object per line.\n"
               "When the bus stops answering for more than 3 s, one line on stderr says so\n"
               "and watch keeps trying; another says when events flow again.\n"
               "--exit-on-disconnect exits 3 instead. Stdout holds only events.\n"
               "\nExit status: 0 after Ctrl-C or when the output is closed, 2 usage error,\n"
               "3 not running (or the bus went away, with --exit-on-disconnect).\n");
        return CTL_EXIT_OK;
    }
    const char *task = NULL;
    const char *prefixes[16];
    int n = 0;
    bool exit_on_disconnect = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--exit-on-disconnect"))
            exit_on_disconnect = true;
        else if (!strcmp(argv[i], "--task") && i + 1 >= argc)
            return ctl_usage_error(opts, "watch: --task needs a task id");
        else if (!strcmp(argv[i], "--task"))
            task = argv[++i];
        else if (argv[i][0] == '-')
            return ctl_usage_error(opts, "watch: unknown option '%s'", argv[i]);
        else if (n < 16)
            prefixes[n++] = argv[i];
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    s_subscribe(conn.client, prefixes, n);
    if (!opts->json) {
        fprintf(stderr, "watching events on %s (Ctrl-C to stop)\n", conn.endpoint);
    }
    /* Liveness: any event or a pong proves the bus is there. Without news
       for a second a ping goes out (one at a time); more than
       WATCH_SILENT_MS without news is a disconnection. The subscriptions
       are sent again on reconnection (a restarted bus knows none). */
    int64_t last_alive = zclock_mono(), last_ping = 0;
    char ping_corr[PROTO_MAX_ID + 1] = "";
    bool disconnected = false;
    while (!zsys_interrupted) {
        bus_msg_t m;
        int r = bus_client_recv(conn.client, &m, 500);
        if (r < 0)
            break;
        int64_t now = zclock_mono();
        if (r == 1 && m.kind == BUS_MSG_REPLY && ping_corr[0] && !strcmp(m.corr_id, ping_corr)) {
            if (!proto_is_error(m.body, NULL))
                last_alive = now;
            ping_corr[0] = '\0';
        } else if (r == 1 && m.kind == BUS_MSG_EVENT)
            last_alive = now;
        if (disconnected && now - last_alive <= WATCH_SILENT_MS) {
            disconnected = false;
            fprintf(stderr, "%s: watch: reconnected to the bus at %s\n", opts->prog, conn.endpoint);
            s_subscribe(conn.client, prefixes, n);
        } else if (!disconnected && now - last_alive > WATCH_SILENT_MS) {
            disconnected = true;
            if (exit_on_disconnect) {
                fprintf(stderr, "%s: watch: the bus at %s is not answering\n", opts->prog,
                        conn.endpoint);
                if (r == 1)
                    bus_msg_clear(&m);
                rc = CTL_EXIT_NOT_RUNNING;
                break;
            }
            fprintf(stderr, "%s: watch: the bus at %s is not answering; reconnecting...\n",
                    opts->prog, conn.endpoint);
        }
        if (!ping_corr[0] && now - last_alive >= 1000 && now - last_ping >= 1000) {
            ev_t *ping = proto_body("ping");
            if (bus_client_send(conn.client, "bus", &ping, WATCH_SILENT_MS - 1000, ping_corr) != 0)
                ping_corr[0] = '\0';
            ev_destroy(&ping);
            last_ping = now;
        }
        if (r == 0 || m.kind != BUS_MSG_EVENT) {
            if (r == 1)
                bus_msg_clear(&m);
            continue;
        }
        if (task && strcmp(ev_get_str(m.body, "task", ""), task)) {
            bus_msg_clear(&m);
            continue;
        }
        if (opts->json) {
            json_t *j = ctl_ev_json(m.body);
            json_object_set_new(j, "sender", json_string(m.sender));
            json_object_del(j, "v");
            json_object_del(j, "type");
            ctl_print_json(j);
        } else {
            time_t secs = (time_t)(ev_get_int(m.body, "at_ms", 0) / 1000);
            struct tm tm;
            char when[16];
            strftime(when, sizeof when, "%H:%M:%S", localtime_r(&secs, &tm));
            /* built in one buffer: no trailing blanks, peers' texts escaped */
            char line[2048], esc[512];
            size_t used = 0;
            int k0 = snprintf(line, sizeof line, "%s.%03d %-15s %-14s", when,
                              (int)(ev_get_int(m.body, "at_ms", 0) % 1000), m.topic,
                              ev_get_str(m.body, "task", "-"));
            used = k0 > 0 ? (size_t)k0 : 0;
#define S_APPEND(...)                                                                              \
    do {                                                                                           \
        if (used < sizeof line) {                                                                  \
            int w_ = snprintf(line + used, sizeof line - used, __VA_ARGS__);                       \
            used += w_ > 0 ? (size_t)w_ : 0;                                                       \
        }                                                                                          \
    } while (0)
            const char *fields[] = {"step",  "agent",   "state",    "path",
                                    "model", "account", "dimension"};
            bool skipped = ev_get_bool(m.body, "skipped", false);
            for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
                const char *v = ev_get_str(m.body, fields[k], NULL);
                if (v)
                    S_APPEND(" %s=%s", fields[k], ctl_escape(esc, sizeof esc, v));
                else if (skipped && !strcmp(fields[k], "state"))
                    S_APPEND(" state=skipped");
            }
            const ev_t *amt = ev_get(m.body, "amounts");
            if (amt) {
                char sp[160];
                ctl_fmt_spend(sp, sizeof sp, amt, "");
                S_APPEND(" [%s]", sp);
            }
            if (ev_get(m.body, "fraction"))
                S_APPEND(" fraction=%.2f", ev_get_float(m.body, "fraction", 0));
            const char *msg = ev_get_str(m.body, "message", NULL);
            if (msg && msg[0])
                S_APPEND(" - %s", ctl_escape(esc, sizeof esc, msg));
#undef S_APPEND
            ctl_printf("%s\n", line);
        }
        bus_msg_clear(&m);
        if (fflush(stdout) != 0 || ferror(stdout))
            break; /* output closed (EPIPE): nobody reads any more */
    }
    ctl_conn_close(&conn);
    return rc;
}
