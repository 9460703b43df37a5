/*  cmd_train.c - emadsctl train: run policy training in the constellation.

      emadsctl train --tasks FILE [--group K] [--rounds N] [--lambda L]
                     [--budget-usd X] [--task-budget-usd X] [--seed S]

    FILE holds one task text per line (blank lines and lines starting with
    '#' are ignored). The orchestrator starts the run at once (train ->
    train_ok) and works asynchronously; this command follows its
    train.progress / train.done events, printing one line per group, and at
    the end the mean reward per round as a small bar chart. Events are a
    convenience: when none arrives for a while the run's state is polled
    (train_status), so a lost event only delays a line. Ctrl-C asks the
    orchestrator to stop the run after its running group (train_cancel).
    The run must not outlive its client: a closed output (EPIPE; SIGPIPE
    is ignored in main), SIGHUP or SIGTERM send train_cancel too, then exit
    at once. FILE is checked first (a regular file, at most 1 MiB of UTF-8
    text, ctl_texts_parse), so nothing is read without limit.

    Exit: 0 when the run finished or stopped on its training budget (the
    output says which), 1 on any other end or a closed output, 2 on bad
    usage or a refused FILE, 3 when the constellation is not running, 130
    after SIGHUP or SIGTERM.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctlbus.h"

#define TRAIN_CALL_TIMEOUT_MS 10000
#define TRAIN_POLL_MS         3000 /* poll train_status after this long without an event */

/* Read FILE's task texts into an ev array (caller owns). NULL with a
   message: FILE must be a regular file of at most CTL_TEXTS_MAX_BYTES of
   UTF-8 text (ctl_texts_parse), so that /dev/zero, a FIFO or a database
   is refused before anything is read without limit. */
static ev_t *s_read_texts(ctl_opts_t *opts, const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: train: cannot read %s: %s\n", opts->prog, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s: train: %s is not a regular file (a text file of one task per line)\n",
                opts->prog, path);
        close(fd);
        return NULL;
    }
    if (st.st_size > CTL_TEXTS_MAX_BYTES) {
        fprintf(stderr, "%s: train: %s is larger than %d KiB\n", opts->prog, path,
                CTL_TEXTS_MAX_BYTES / 1024);
        close(fd);
        return NULL;
    }
    /* one byte more than the cap, to see a file that grew meanwhile */
    char *buf = malloc(CTL_TEXTS_MAX_BYTES + 1);
    size_t len = 0;
    while (buf && len < CTL_TEXTS_MAX_BYTES + 1) {
        ssize_t r = read(fd, buf + len, CTL_TEXTS_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "%s: train: cannot read %s: %s\n", opts->prog, path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (!buf) {
        fprintf(stderr, "%s: train: out of memory\n", opts->prog);
        return NULL;
    }
    char why[160];
    size_t n = 0;
    char **texts = ctl_texts_parse(buf, len, &n, why, sizeof why);
    free(buf);
    if (!texts) {
        fprintf(stderr, "%s: train: %s: %s\n", opts->prog, path, why);
        return NULL;
    }
    ev_t *arr = ev_new_array();
    for (size_t i = 0; i < n; i++)
        ev_push(arr, ev_new_str(texts[i]));
    ctl_texts_free(&texts);
    return arr;
}

/* SIGHUP (the terminal went away) and SIGTERM cancel the run like Ctrl-C,
   but then exit at once instead of following the run to its end. */
static volatile sig_atomic_t s_hangup = 0;
static void s_on_hangup(int sig)
{
    s_hangup = sig;
    zsys_interrupted = 1;
}

/* True when stdout can no longer be written (a closed pipe: EPIPE, since
   SIGPIPE is ignored in main). */
static bool s_output_closed(void)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return true;
    /* the reader of a pipe may be gone before anything is written (--json
       prints only at the end): the write end then polls POLLERR */
    struct pollfd pfd = {.fd = STDOUT_FILENO, .events = 0, .revents = 0};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
}

static void s_print_progress(const ev_t *d)
{
    char usd[32];
    ctl_fmt_usd(usd, sizeof usd, ev_get_int(d, "spent_uusd", 0));
    printf("round %" PRId64 "/%" PRId64 " text %" PRId64 "/%" PRId64 ":", ev_get_int(d, "round", 0),
           ev_get_int(d, "rounds", 0), ev_get_int(d, "text", 0), ev_get_int(d, "texts", 0));
    const char *skipped = ev_get_str(d, "skipped", NULL);
    if (skipped) {
        printf(" skipped (%s), spent $%s\n", skipped, usd);
        fflush(stdout);
        return;
    }
    printf(" rewards");
    const ev_t *rw = ev_get(d, "rewards");
    for (size_t i = 0; i < ev_len(rw); i++)
        printf(" %+.3f", ev_get_float(ev_at(rw, i), "reward", 0));
    printf("  mean %+.3f  %s  spent $%s\n", ev_get_float(d, "mean", 0),
           ev_get_bool(d, "updated", false) ? "updated" : "skipped (no spread)", usd);
    fflush(stdout);
}

/* The mean reward per round as bars scaled between the lowest and highest. */
static void s_print_curve(const ev_t *curve)
{
    size_t n = ev_len(curve);
    if (n == 0) {
        printf("reward curve: no group finished\n");
        return;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double m = ev_get_float(ev_at(curve, i), "mean", 0);
        lo = m < lo ? m : lo;
        hi = m > hi ? m : hi;
    }
    printf("mean reward per round:\n");
    for (size_t i = 0; i < n; i++) {
        const ev_t *c = ev_at(curve, i);
        double m = ev_get_float(c, "mean", 0);
        int w = hi > lo ? 1 + (int)lround(29.0 * (m - lo) / (hi - lo)) : 15;
        char bar[32];
        memset(bar, '#', (size_t)w);
        bar[w] = '\0';
        printf("  round %3" PRId64 "  %+8.4f  %s\n", ev_get_int(c, "round", 0), m, bar);
    }
}

static int s_usage(void)
{
    printf("usage: emadsctl [--json] train --tasks FILE [--group K] [--rounds N] [--lambda L]\n"
           "                [--budget-usd X] [--task-budget-usd X] [--seed S]\n"
           "\n"
           "Train the planner's policy: for each round and each task text of FILE (one\n"
           "per line), sample K plans (default 4) from the policy within the budgets,\n"
           "run all of them as training tasks, score each (log judged quality minus\n"
           "lambda * cost / task budget; lambda default 1) and update the policy from\n"
           "the group. --budget-usd bounds the whole run: no group starts that it\n"
           "cannot cover. --task-budget-usd lowers each training task's cost limit.\n"
           "Prints one line per group and the mean reward per round. Exit 0 when the\n"
           "run finished or stopped on its budget, 1 otherwise.\n"
           "\n"
           "FILE: a regular file of at most 1 MiB of UTF-8 text, at most 1000 texts of\n"
           "at most 16 KiB each. Ctrl-C cancels the run after its running group and\n"
           "waits for it; a closed output, SIGHUP or SIGTERM cancel it and exit.\n");
    return CTL_EXIT_OK;
}

int ctl_cmd_train(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return s_usage();
    const char *file = NULL;
    int64_t group = 4, rounds = 1, budget = -1, task_budget = -1, seed = 0;
    double lambda = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return ctl_usage_error(opts, "train: unexpected argument '%s'", a);
        if (!strcmp(a, "--tasks"))
            file = v;
        else if (!strcmp(a, "--group")) {
            if (ctl_parse_int(v, &group) != 0 || group < 2 || group > 64)
                return ctl_usage_error(opts, "train: --group must be 2..64");
        } else if (!strcmp(a, "--rounds")) {
            if (ctl_parse_int(v, &rounds) != 0 || rounds < 1 || rounds > 1000)
                return ctl_usage_error(opts, "train: --rounds must be 1..1000");
        } else if (!strcmp(a, "--lambda")) {
            char *end = NULL;
            lambda = strtod(v, &end);
            if (!end || *end || !(lambda >= 0 && lambda <= 1000))
                return ctl_usage_error(opts, "train: --lambda must be a number in 0..1000");
        } else if (!strcmp(a, "--budget-usd")) {
            if (ctl_parse_usd(v, &budget, NULL, 0) != 0)
                return ctl_usage_error(opts, "train: --budget-usd: '%s' is not a USD amount", v);
        } else if (!strcmp(a, "--task-budget-usd")) {
            if (ctl_parse_usd(v, &task_budget, NULL, 0) != 0 || task_budget < 1)
                return ctl_usage_error(opts,
                                       "train: --task-budget-usd: '%s' is not a positive "
                                       "USD amount",
                                       v);
        } else if (!strcmp(a, "--seed")) {
            if (ctl_parse_int(v, &seed) != 0)
                return ctl_usage_error(opts, "train: --seed must be a non-negative integer");
        } else
            return ctl_usage_error(opts, "train: unexpected argument '%s'", a);
        i++;
    }
    if (!file)
        return ctl_usage_error(opts, "train: --tasks FILE is required");
    ev_t *texts = s_read_texts(opts, file);
    if (!texts)
        return CTL_EXIT_USAGE;
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        ev_destroy(&texts);
        return rc;
    }
    bus_client_subscribe(conn.client, "train.");
    ev_t *b = proto_body("train");
    char rid[64];
    ctl_request_id(rid, sizeof rid);
    ev_set_str(b, "request_id", rid);
    ev_set(b, "texts", texts);
    ev_set_int(b, "group", group);
    ev_set_int(b, "rounds", rounds);
    ev_set_float(b, "lambda", lambda);
    if (budget >= 0)
        ev_set_int(b, "budget_uusd", budget);
    if (task_budget >= 0)
        ev_set_int(b, "task_budget_uusd", task_budget);
    if (seed > 0)
        ev_set_int(b, "seed", seed);
    ev_t *rep = ctl_call(opts, &conn, "orchestrator", &b, TRAIN_CALL_TIMEOUT_MS, "train", &rc);
    if (!rep) {
        ctl_conn_close(&conn);
        return rc;
    }
    char id[PROTO_MAX_ID + 1];
    snprintf(id, sizeof id, "%s", ev_get_str(rep, "train", ""));
    ev_destroy(&rep);
    if (!opts->json)
        printf("training %s: %" PRId64 " rounds, group %" PRId64 "\n", id, rounds, group);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_hangup;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    ev_t *progress = ev_new_array();
    ev_t *final = NULL; /* the run map at the end */
    bool cancel_sent = false;
    int64_t last_news = zclock_mono();
    int64_t seen_groups = 0;
    while (!final) {
        /* Ctrl-C: cancel and follow the run to its end. Output closed,
           hang-up or SIGTERM: nobody is left to read, so cancel and exit
           (the run must not go on spending for a client that is gone). */
        bool closed = s_output_closed();
        if ((zsys_interrupted || closed) && !cancel_sent) {
            zsys_interrupted = 0;
            ev_t *c = proto_body("train_cancel");
            ev_set_str(c, "train", id);
            ev_t *r = ctl_call(opts, &conn, "orchestrator", &c, TRAIN_CALL_TIMEOUT_MS,
                               "train_cancel", &rc);
            ev_destroy(&r);
            cancel_sent = true;
            if (closed || s_hangup) {
                fprintf(stderr, "%s: train: %s; training %s cancelled\n", opts->prog,
                        closed               ? "output closed"
                        : s_hangup == SIGHUP ? "hang-up"
                                             : "terminated",
                        id);
                rc = closed ? CTL_EXIT_FAIL : CTL_EXIT_INTERRUPTED;
                break;
            }
            if (!opts->json)
                fprintf(stderr, "cancelling: the running group finishes first\n");
        } else if (s_hangup && cancel_sent) {
            rc = CTL_EXIT_INTERRUPTED; /* second signal after Ctrl-C: stop following */
            break;
        }
        bus_msg_t m;
        int r = bus_client_recv(conn.client, &m, 1000);
        if (r < 0) {
            if (!cancel_sent && (zsys_interrupted || s_hangup))
                continue; /* a signal: cancel at the top of the loop */
            rc = CTL_EXIT_FAIL;
            break;
        }
        if (r == 1) {
            const ev_t *d = ev_get(m.body, "data");
            if (m.kind == BUS_MSG_EVENT && !strcmp(ev_get_str(d, "train", ""), id)) {
                last_news = zclock_mono();
                if (!strcmp(m.topic, "train.progress")) {
                    seen_groups++;
                    if (!opts->json)
                        s_print_progress(d);
                    ev_push(progress, ev_dup(d));
                } else if (!strcmp(m.topic, "train.done"))
                    final = ev_dup(d);
            }
            bus_msg_clear(&m);
            continue;
        }
        if (zclock_mono() - last_news < TRAIN_POLL_MS)
            continue;
        last_news = zclock_mono();
        ev_t *s = proto_body("train_status");
        ev_set_str(s, "train", id);
        ev_t *st =
            ctl_call(opts, &conn, "orchestrator", &s, TRAIN_CALL_TIMEOUT_MS, "train_status", &rc);
        if (!st)
            break;
        if (strcmp(ev_get_str(st, "state", "running"), "running"))
            final = ev_dup(ev_get(st, "run"));
        ev_destroy(&st);
    }
    if (final) {
        const char *state = ev_get_str(final, "state", "failed");
        rc = !strcmp(state, "finished") || !strcmp(state, "budget_exhausted") ? CTL_EXIT_OK
                                                                              : CTL_EXIT_FAIL;
        if (opts->json) {
            json_t *j = ctl_ev_json(final);
            json_object_set_new(j, "progress", ctl_ev_json(progress));
            ctl_print_json(j);
        } else {
            char usd[32];
            ctl_fmt_usd(usd, sizeof usd, ev_get_int(final, "spent_uusd", 0));
            if (ev_get_int(final, "groups", 0) > seen_groups)
                printf("(%" PRId64 " group lines were missed; see the totals)\n",
                       ev_get_int(final, "groups", 0) - seen_groups);
            s_print_curve(ev_get(final, "curve"));
            if (!strcmp(state, "finished"))
                printf("training finished: ");
            else if (!strcmp(state, "budget_exhausted"))
                printf("training stopped: budget exhausted: ");
            else
                printf("training %s: ", state);
            printf("%" PRId64 " groups (%" PRId64 " updated), spent $%s, policy version %" PRId64
                   "\n",
                   ev_get_int(final, "groups", 0), ev_get_int(final, "groups_updated", 0), usd,
                   ev_get_int(final, "version", 0));
            const char *reason = ev_get_str(final, "reason", "");
            if (reason[0])
                printf("reason: %s\n", reason);
        }
    }
    ev_destroy(&final);
    ev_destroy(&progress);
    ctl_conn_close(&conn);
    return rc;
}
