/*  cmd_top.c - `emadsctl top`: a live terminal view of the constellation.

    Every interval it asks, over the bus, as any client would:
      - the bus (ping): live workers and requests in flight per service;
      - the orchestrator (tasks, then status of each running or queued
        task): the tasks in flight and the state of each of their steps;
      - the ledger (spend per agent, then the global account): what each
        agent has used and what its steps in flight hold.
    Each frame is built as one JSON object (s_collect) and then either
    printed as one line (--json) or drawn (s_draw). On a terminal the view
    takes the alternate screen, hides the cursor and reads single keys
    (termios non-canonical mode, no echo): `q` quits. The terminal is
    restored on every way out - q, Ctrl-C, SIGTERM, SIGHUP, a lost output -
    by the one cleanup path at the end of ctl_cmd_top, since the signal
    handlers only set a flag. --once draws one frame as plain text (or one
    JSON line) and exits.
*/
#define _GNU_SOURCE
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "ctl/ctlbus.h"

#define S_MAX_TASKS    20  /* tasks shown (running first, then queued) */
#define S_INTERVAL_MIN 100 /* ms */
#define S_INTERVAL_MAX 3600000
#define S_CALL_MS      2000 /* per request; a slow service shows as "-" */

static volatile sig_atomic_t s_stop;   /* SIGINT, SIGTERM, SIGHUP */
static volatile sig_atomic_t s_resize; /* SIGWINCH */

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_winch(int sig)
{
    (void)sig;
    s_resize = 1;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- collecting a frame ---------------------------------------------------- */

/* Call service quietly: NULL when it does not answer or answers an error
   (top keeps going; the frame shows what is missing). */
static ev_t *s_ask(ctl_conn_t *conn, const char *service, ev_t *body)
{
    if (s_stop) { /* a signal came: end the frame without waiting more */
        ev_destroy(&body);
        return NULL;
    }
    ev_t *rep = bus_client_call(conn->client, service, &body, S_CALL_MS, NULL, NULL);
    if (rep && proto_is_error(rep, NULL)) {
        ev_destroy(&rep);
        return NULL;
    }
    return rep;
}

static json_t *s_amounts(const ev_t *a)
{
    json_t *j = json_object();
    for (int d = 0; d < DIM_COUNT; d++)
        json_object_set_new(j, proto_dim_names[d],
                            json_integer(ev_get_int(a, proto_dim_names[d], 0)));
    return j;
}

/* Add the amounts map src into the JSON amounts dst. */
static void s_sum(json_t *dst, const ev_t *src)
{
    for (int d = 0; d < DIM_COUNT; d++) {
        json_t *v = json_object_get(dst, proto_dim_names[d]);
        int64_t add = ev_get_int(src, proto_dim_names[d], 0);
        int64_t cur = (int64_t)json_integer_value(v);
        json_integer_set(v, add > 0 && cur > INT64_MAX - add ? INT64_MAX : cur + add);
    }
}

/* Tasks in state (newest first) with their steps, appended to arr.
   false when the orchestrator did not answer. */
static bool s_tasks(ctl_conn_t *conn, const char *state, json_t *arr, int64_t now)
{
    ev_t *b = proto_body("tasks");
    ev_set_str(b, "state", state);
    ev_set_int(b, "limit", S_MAX_TASKS);
    ev_t *rep = s_ask(conn, "orchestrator", b);
    if (!rep)
        return false;
    const ev_t *tasks = ev_get(rep, "tasks");
    for (size_t i = 0; i < ev_len(tasks) && json_array_size(arr) < S_MAX_TASKS; i++) {
        const ev_t *t = ev_at(tasks, i);
        const char *id = ev_get_str(t, "task", "");
        json_t *jt = json_pack("{s:s, s:s, s:s, s:s}", "task", id, "state", state, "class",
                               ev_get_str(t, "class", ""), "text", ev_get_str(t, "text", ""));
        int64_t created = ev_get_int(t, "created_ms", 0);
        json_object_set_new(jt, "age_ms", json_integer(created > 0 ? now - created : 0));
        json_t *steps = json_array();
        ev_t *sb = proto_body("status");
        ev_set_str(sb, "task", id);
        ev_t *st = s_ask(conn, "orchestrator", sb);
        const ev_t *ss = ev_get(st, "steps");
        for (size_t k = 0; k < ev_len(ss); k++) {
            const ev_t *s = ev_at(ss, k);
            json_t *js =
                json_pack("{s:s, s:s, s:s, s:s, s:s}", "step", ev_get_str(s, "step", ""), "agent",
                          ev_get_str(s, "agent", ""), "state", ev_get_str(s, "state", ""), "path",
                          ev_get_str(s, "path", ev_get_str(s, "planned_path", "")), "model",
                          ev_get_str(s, "model", ev_get_str(s, "planned_model", "")));
            int64_t started = ev_get_int(s, "started_ms", 0), ended = ev_get_int(s, "ended_ms", 0);
            json_object_set_new(js, "elapsed_ms",
                                started > 0 ? json_integer((ended > 0 ? ended : now) - started)
                                            : json_null());
            json_array_append_new(steps, js);
        }
        ev_destroy(&st);
        json_object_set_new(jt, "steps", steps);
        json_array_append_new(arr, jt);
    }
    ev_destroy(&rep);
    return true;
}

/* One frame: {"at_ms", "bus": bool, "workers": [...], "tasks": [...],
   "agents": [...], "global": {...} | null}. */
static json_t *s_collect(ctl_conn_t *conn)
{
    int64_t now = s_now_ms();
    json_t *f = json_object();
    json_object_set_new(f, "at_ms", json_integer(now));
    ev_t *pong = s_ask(conn, "bus", proto_body("ping"));
    json_object_set_new(f, "bus", json_boolean(pong != NULL));
    json_t *workers = json_array();
    const ev_t *svcs = ev_get(pong, "services");
    for (size_t i = 0; i < ev_len(svcs); i++) {
        const ev_t *s = ev_at(svcs, i);
        json_array_append_new(workers,
                              json_pack("{s:s, s:I, s:I}", "service", ev_key_at(svcs, i), "workers",
                                        (json_int_t)ev_get_int(s, "workers", 0), "inflight",
                                        (json_int_t)ev_get_int(s, "inflight", 0)));
    }
    bool bus_up = pong != NULL;
    ev_destroy(&pong);
    json_object_set_new(f, "workers", workers);
    if (!bus_up) { /* everything else goes through the bus: do not wait for it again */
        json_object_set_new(f, "tasks", json_array());
        json_object_set_new(f, "agents", json_array());
        json_object_set_new(f, "global", json_null());
        return f;
    }

    json_t *tasks = json_array();
    if (s_tasks(conn, "running", tasks, now))
        s_tasks(conn, "queued", tasks, now);
    json_object_set_new(f, "tasks", tasks);

    /* per agent: its accounts over every task, summed */
    json_t *agents = json_array();
    const cfg_t *cfg = conn->cfg;
    json_t *global = json_null();
    for (int a = 0; a <= cfg->n_agents; a++) {
        ev_t *b = proto_body("spend");
        if (a < cfg->n_agents)
            ev_set_str(b, "agent", cfg->agents[a].name);
        ev_t *rep = s_ask(conn, "ledger", b);
        if (!rep)
            break; /* the ledger is not answering: do not wait for it again */
        const ev_t *accs = ev_get(rep, "accounts");
        json_t *row = NULL;
        if (a < cfg->n_agents) {
            row = json_pack("{s:s, s:o, s:o, s:I}", "name", cfg->agents[a].name, "used",
                            s_amounts(NULL), "held", s_amounts(NULL), "tasks", (json_int_t)0);
            json_array_append_new(agents, row);
        }
        for (size_t k = 0; k < ev_len(accs); k++) {
            const ev_t *acc = ev_at(accs, k);
            const char *kind = ev_get_str(acc, "kind", "");
            if (row && !strcmp(kind, "agent")) {
                s_sum(json_object_get(row, "used"), ev_get(acc, "used"));
                s_sum(json_object_get(row, "held"), ev_get(acc, "held"));
                json_object_set_new(
                    row, "tasks",
                    json_integer(json_integer_value(json_object_get(row, "tasks")) + 1));
            } else if (!row && !strcmp(kind, "global") && json_is_null(global)) {
                json_decref(global);
                global = json_pack("{s:o, s:o, s:o}", "used", s_amounts(ev_get(acc, "used")),
                                   "held", s_amounts(ev_get(acc, "held")), "limit",
                                   s_amounts(ev_get(acc, "limit")));
            }
        }
        ev_destroy(&rep);
    }
    json_object_set_new(f, "agents", agents);
    json_object_set_new(f, "global", global);
    return f;
}

/* ---- drawing ---------------------------------------------------------------- */

typedef struct {
    bool tty; /* draw in place (ANSI) */
    int cols; /* cut lines to this width (0 = no cut) */
    int rows; /* stop drawing beyond this line (0 = no limit) */
    int line; /* lines drawn in this frame */
} s_screen_t;

/* One line: cut to the width, cleared to its end on a terminal. */
static void s_line(s_screen_t *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_line(s_screen_t *sc, const char *fmt, ...)
{
    if (sc->rows && sc->line >= sc->rows - 1)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ')
        buf[--n] = 0;
    if (sc->cols > 0 && (int)n > sc->cols)
        buf[sc->cols] = 0;
    fputs(buf, stdout);
    fputs(sc->tty ? "\033[K\n" : "\n", stdout);
    sc->line++;
}

/* An amounts object of the JSON view (wire names; absent = 0). */
static void s_json_amounts(const json_t *o, proto_amounts_t *a)
{
    for (int d = 0; d < DIM_COUNT; d++)
        a->v[d] = (int64_t)json_integer_value(json_object_get(o, dims_info[d].wire));
}

static void s_usd(char *out, size_t len, const json_t *amounts)
{
    proto_amounts_t a;
    s_json_amounts(amounts, &a);
    ctl_fmt_usd(out, len, a.v[DIMS_MONEY]);
}

static int64_t s_int(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static void s_draw(s_screen_t *sc, const json_t *f, const char *run, int interval_ms)
{
    sc->line = 0;
    if (sc->tty)
        fputs("\033[H", stdout);
    time_t t = (time_t)(s_int(f, "at_ms") / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char clock[16];
    strftime(clock, sizeof clock, "%H:%M:%S", &tm);
    json_t *tasks = json_object_get(f, "tasks");
    s_line(sc, "emads top - %s  %s  every %d ms%s", clock, run, interval_ms,
           sc->tty ? "  (q quits)" : "");
    if (!json_is_true(json_object_get(f, "bus")))
        s_line(sc, "the bus is not answering: showing what still answers");
    s_line(sc, "%s", "");

    s_line(sc, "%-20s %8s %9s", "SERVICE", "WORKERS", "INFLIGHT");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(f, "workers"), i, v)
    {
        char name[64];
        s_line(sc, "%-20s %8" PRId64 " %9" PRId64,
               ctl_escape(name, sizeof name, json_string_value(json_object_get(v, "service"))),
               s_int(v, "workers"), s_int(v, "inflight"));
    }
    s_line(sc, "%s", "");

    s_line(sc, "%-14s %14s %12s %14s %12s %6s", "AGENT", "USED_TOKENS", "USED_USD", "HELD_TOKENS",
           "HELD_USD", "TASKS");
    json_array_foreach(json_object_get(f, "agents"), i, v)
    {
        char cols[96];
        proto_amounts_t used, held;
        s_json_amounts(json_object_get(v, "used"), &used);
        s_json_amounts(json_object_get(v, "held"), &held);
        ctl_fmt_top_cols(cols, sizeof cols, &used, &held);
        s_line(sc, "%-14s %s %6" PRId64, json_string_value(json_object_get(v, "name")), cols,
               s_int(v, "tasks"));
    }
    json_t *g = json_object_get(f, "global");
    if (json_is_object(g)) {
        char u[32], h[32], l[32];
        s_usd(u, sizeof u, json_object_get(g, "used"));
        s_usd(h, sizeof h, json_object_get(g, "held"));
        proto_amounts_t limit;
        s_json_amounts(json_object_get(g, "limit"), &limit);
        int64_t lim = limit.v[DIMS_MONEY];
        ctl_fmt_limit(l, sizeof l, lim, true);
        s_line(sc, "%-14s %14s %12s %14s %12s   (limit %s USD this period)", "global", "", u, "", h,
               l);
    }
    s_line(sc, "%s", "");

    s_line(sc, "TASKS IN FLIGHT: %zu", json_array_size(tasks));
    json_array_foreach(tasks, i, v)
    {
        char text[256], age[32];
        ctl_escape(text, sizeof text, json_string_value(json_object_get(v, "text")));
        ctl_fmt_ms(age, sizeof age, s_int(v, "age_ms"));
        s_line(sc, "%-16s %-8s %-14s %7s  %s", json_string_value(json_object_get(v, "task")),
               json_string_value(json_object_get(v, "state")),
               json_string_value(json_object_get(v, "class")), age, text);
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(v, "steps"), k, s)
        {
            char took[32] = "-", how[96];
            json_t *el = json_object_get(s, "elapsed_ms");
            if (json_is_integer(el))
                ctl_fmt_ms(took, sizeof took, (int64_t)json_integer_value(el));
            const char *path = json_string_value(json_object_get(s, "path"));
            const char *model = json_string_value(json_object_get(s, "model"));
            snprintf(how, sizeof how, "%s%s%s", path, *model ? " " : "", model);
            s_line(sc, "    %-16s %-14s %-8s %-22s %7s",
                   json_string_value(json_object_get(s, "step")),
                   json_string_value(json_object_get(s, "agent")),
                   json_string_value(json_object_get(s, "state")), how, took);
        }
    }
    if (sc->tty)
        fputs("\033[J", stdout);
    fflush(stdout);
}

/* ---- the command ------------------------------------------------------------ */

static void s_help(void)
{
    printf("usage: emadsctl [--home DIR] [--config FILE] [--json] top [--interval MS] [--once]\n"
           "\n"
           "A live view of the constellation, redrawn in place every MS milliseconds\n"
           "(default 1000, 100..3600000), like top(1):\n"
           "  - each bus service with its live workers and requests in flight;\n"
           "  - each agent's spend over every task the ledger knows (tokens, USD), what\n"
           "    its steps in flight hold, and the global account of the period;\n"
           "  - the running and queued tasks (at most 20) with the state, path, model\n"
           "    and time of each of their steps.\n"
           "On a terminal top uses the alternate screen and restores the terminal when\n"
           "it ends: press q (or Ctrl-C) to quit. A service that does not answer within\n"
           "2 s is left out of that frame; when the bus itself stops answering the\n"
           "header says so and top keeps trying.\n"
           "\n"
           "  --interval MS  time between frames\n"
           "  --once         print one frame as plain text and exit\n"
           "  --json         print each frame as one line of JSON (with --once: one line):\n"
           "                 {\"at_ms\", \"bus\", \"workers\": [{service, workers, inflight}],\n"
           "                 \"tasks\": [{task, state, class, text, age_ms, steps: [{step,\n"
           "                 agent, state, path, model, elapsed_ms}]}], \"agents\": [{name,\n"
           "                 used, held, tasks}], \"global\": {used, held, limit} | null}\n"
           "                 (amounts in tokens, ms, tool calls and micro-USD)\n"
           "\n"
           "exit status: 0 ok (q, Ctrl-C), 2 usage error, 3 constellation not running.\n");
}

int ctl_cmd_top(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        s_help();
        return CTL_EXIT_OK;
    }
    int64_t interval = 1000;
    bool once = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--once"))
            once = true;
        else if (!strcmp(argv[i], "--interval")) {
            if (i + 1 >= argc)
                return ctl_usage_error(opts, "top: --interval needs a value in ms");
            if (ctl_parse_int(argv[++i], &interval) != 0 || interval < S_INTERVAL_MIN ||
                interval > S_INTERVAL_MAX)
                return ctl_usage_error(opts, "top: --interval must be %d..%d ms", S_INTERVAL_MIN,
                                       S_INTERVAL_MAX);
        } else if (argv[i][0] == '-')
            return ctl_usage_error(opts, "top: unknown option '%s'", argv[i]);
        else
            return ctl_usage_error(opts, "top: unexpected argument '%s'", argv[i]);
    }
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    s_screen_t sc = {.tty = !once && !opts->json && isatty(STDOUT_FILENO)};
    bool keys = sc.tty && isatty(STDIN_FILENO);
    struct termios saved;
    bool raw = false;
    if (keys && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios t = saved;
        t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    struct sigaction sa, old_int, old_term, old_hup, old_winch;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_stop; /* no SA_RESTART: poll() returns at once */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    sa.sa_handler = s_on_winch;
    sigaction(SIGWINCH, &sa, &old_winch);
    signal(SIGPIPE, SIG_IGN);
    if (sc.tty)
        fputs("\033[?1049h\033[?25l\033[H\033[2J", stdout); /* alternate screen, no cursor */

    while (!s_stop) {
        struct winsize ws;
        if (sc.tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
            sc.cols = ws.ws_col;
            sc.rows = ws.ws_row;
        }
        json_t *frame = s_collect(&conn);
        if (opts->json) {
            ctl_print_json(frame);
            fflush(stdout);
        } else {
            s_draw(&sc, frame, conn.run, (int)interval);
            json_decref(frame);
        }
        if (ferror(stdout) || once)
            break; /* the reader went away, or one frame was asked for */
        /* wait for the next frame, a key, a resize or a signal */
        int64_t until = zclock_mono() + interval;
        bool quit = false;
        while (!s_stop && !s_resize && !quit) {
            int64_t left = until - zclock_mono();
            if (left <= 0)
                break;
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            int n = poll(&p, keys ? 1 : 0, (int)left);
            if (n > 0 && (p.revents & (POLLHUP | POLLERR)))
                keys = false; /* stdin closed: keep refreshing, no keys */
            else if (n > 0) {
                char c;
                ssize_t r = read(STDIN_FILENO, &c, 1);
                if (r == 1 && (c == 'q' || c == 'Q'))
                    quit = true;
                else if (r == 0)
                    keys = false;
            }
        }
        s_resize = 0;
        if (quit)
            break;
    }

    if (sc.tty) {
        fputs("\033[?25h\033[?1049l", stdout); /* cursor back, main screen back */
        fflush(stdout);
    }
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGWINCH, &old_winch, NULL);
    ctl_conn_close(&conn);
    return CTL_EXIT_OK;
}
