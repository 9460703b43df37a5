/*  cmd_certs.c - emadsctl certs init | issue | list | revoke | export: the
    certificate store of the run directory (<run>/certs, see bus/certs.c and
    docs/PROTOCOL.md section 7).

    A certificate names an instance (its metadata "name", e.g. cto_agent.2)
    and the principal it acts for ("principal": the agent or service whose
    budget it spends, which it may serve, and which the access list names;
    the name itself when absent). issue and revoke change the folder and,
    when a bus runs on this run directory, send it SIGHUP so that it
    reloads at once; revoke then waits until the bus no longer lists the
    instance among its workers, so that "revoked" means "cut off".

    export NAME DIR writes what another host needs to run instance NAME
    with --home DIR (layout documented in docs/CLI.md):
        DIR/certs/public/bus.cert              the bus's public key
        DIR/certs/private/NAME.cert_secret     the instance's key pair (0600)
        DIR/certs/public/NAME.cert             its public half
        DIR/bus.endpoint                       the bus endpoint, one line
*/
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rundir.h"
#include "ctl/ctlbus.h"
#include "ctl/ctlhosts.h"

#define CERTS_WAIT_MS 5000 /* revoke: how long to wait for the bus to cut the instance */

static int s_help(void)
{
    printf("usage: emadsctl [--json] certs init\n"
           "       emadsctl [--json] certs issue NAME [--for PRINCIPAL]\n"
           "       emadsctl [--json] certs list\n"
           "       emadsctl [--json] certs revoke NAME\n"
           "       emadsctl [--json] certs export NAME DIR\n"
           "\n"
           "Manage the certificate store <run>/certs. A certificate names an instance\n"
           "(NAME: A-Z a-z 0-9 _ - . :, e.g. cto_agent.2 or cto_agent:hostb) and the\n"
           "principal it acts for (the agent or service whose budget it spends, which\n"
           "it may serve, and which the access list names; NAME itself by default).\n"
           "\n"
           "  init     create the bus's certificate and one per configured process\n"
           "           (ledger, orchestrator, every agent) and emadsctl; keeps existing ones\n"
           "  issue    create the certificate of instance NAME acting for PRINCIPAL; an\n"
           "           existing one for the same principal is kept (exit 0), one for\n"
           "           another principal is an error (exit 1)\n"
           "  list     every certificate: name, principal, state (active or revoked), key\n"
           "  revoke   move NAME's certificate to <run>/certs/revoked; a running bus is\n"
           "           told (SIGHUP) and cuts the instance off at once: the command returns\n"
           "           once the bus no longer lists it (or says that it could not tell)\n"
           "  export   write what another host needs to run NAME with --home DIR: the bus's\n"
           "           public certificate, NAME's key pair and DIR/bus.endpoint\n"
           "\n"
           "issue and revoke send SIGHUP to the bus of this run directory, if one runs,\n"
           "so it reloads the store and the access list. A process uses the\n"
           "certificate named by $EMADS_INSTANCE, else its own name: start a second\n"
           "cto_agent as EMADS_INSTANCE=cto_agent.2 after `certs issue cto_agent.2 --for\n"
           "cto_agent`. Exit codes: 0 ok, 1 failed, 2 usage.\n");
    return CTL_EXIT_OK;
}

/* The pid of the live emads-bus of run, 0 if none. */
static pid_t s_bus_pid(const char *run)
{
    pid_t pid = ctl_read_pid(run, "emads-bus");
    return pid > 0 && rundir_pid_serves(pid, "emads-bus", NULL) ? pid : 0;
}

/* SIGHUP the bus if one runs; true if signalled. */
static bool s_reload(const char *run)
{
    pid_t pid = s_bus_pid(run);
    return pid > 0 && kill(pid, SIGHUP) == 0;
}

/* ---- list ---------------------------------------------------------------- */

typedef struct {
    json_t *arr;
    const char *state;
    bool json;
} s_list_t;

static void s_list_one(const char *name, const char *principal, const char *key, void *arg)
{
    s_list_t *l = (s_list_t *)arg;
    if (l->json)
        json_array_append_new(l->arr, json_pack("{s:s, s:s, s:s, s:s}", "name", name, "principal",
                                                principal, "state", l->state, "key", key));
    else
        printf("%-24s %-20s %-8s %s\n", name, principal, l->state, key);
}

static int s_list(ctl_opts_t *opts, const char *run)
{
    char dir[PATH_MAX + 32];
    s_list_t l = {.arr = json_array(), .json = opts->json};
    if (!opts->json)
        printf("%-24s %-20s %-8s %s\n", "NAME", "PRINCIPAL", "STATE", "KEY");
    snprintf(dir, sizeof(dir), "%s/certs/public", run);
    l.state = "active";
    if (bus_certs_each(dir, s_list_one, &l) < 0) {
        fprintf(stderr,
                "%s: certs list: no certificate store in %s/certs (run 'emadsctl certs "
                "init')\n",
                opts->prog, run);
        json_decref(l.arr);
        return CTL_EXIT_FAIL;
    }
    snprintf(dir, sizeof(dir), "%s/certs/revoked", run);
    l.state = "revoked";
    bus_certs_each(dir, s_list_one, &l);
    if (opts->json)
        ctl_print_json(json_pack("{s:o}", "certificates", l.arr));
    else
        json_decref(l.arr);
    return CTL_EXIT_OK;
}

/* ---- revoke -------------------------------------------------------------- */

/* True if the bus's ping lists instance `name` among the workers of any
   service; *ok false when the bus did not answer. */
static bool s_listed(bus_client_t *c, const char *name, bool *ok)
{
    ev_t *ping = proto_body("ping");
    ev_t *pong = bus_client_call(c, "bus", &ping, 1000, NULL, NULL);
    *ok = pong && !proto_is_error(pong, NULL);
    bool found = false;
    const ev_t *svcs = *ok ? ev_get(pong, "services") : NULL;
    for (size_t i = 0; i < ev_len(svcs) && !found; i++) {
        const ev_t *inst = ev_get(ev_get(svcs, ev_key_at(svcs, i)), "instances");
        for (size_t j = 0; j < ev_len(inst) && !found; j++)
            found = ev_type(ev_at(inst, j)) == EV_STR && streq(ev_str(ev_at(inst, j)), name);
    }
    ev_destroy(&pong);
    return found;
}

/* After SIGHUP: wait until the bus no longer lists name. 1 gone, 0 still
   listed after CERTS_WAIT_MS, -1 could not ask. */
static int s_wait_gone(ctl_opts_t *opts, ctl_conn_t *conn, const char *name)
{
    bus_security_t sec;
    bus_security_init(&sec, conn->run, "emadsctl", conn->curve);
    if (streq(sec.name, name))
        return -1; /* we have just revoked ourselves */
    bus_client_t *c = bus_client_new(conn->endpoint, &sec);
    if (!c)
        return -1;
    int rc = -1;
    for (int64_t end = zclock_mono() + CERTS_WAIT_MS; zclock_mono() < end;) {
        bool ok;
        bool listed = s_listed(c, name, &ok);
        if (ok && !listed) {
            rc = 1;
            break;
        }
        rc = ok ? 0 : -1;
        zclock_sleep(50);
    }
    bus_client_destroy(&c);
    (void)opts;
    return rc;
}

static int s_revoke(ctl_opts_t *opts, ctl_conn_t *conn, const char *name)
{
    if (bus_certs_revoke(conn->run, name) != 0) {
        fprintf(stderr, "%s: certs revoke: cannot revoke '%s' (see above)\n", opts->prog, name);
        return CTL_EXIT_FAIL;
    }
    bool reloaded = s_reload(conn->run);
    int gone = reloaded ? s_wait_gone(opts, conn, name) : -1;
    if (opts->json)
        ctl_print_json(json_pack("{s:s, s:b, s:b, s:o}", "name", name, "revoked", 1, "reloaded",
                                 reloaded, "disconnected",
                                 gone < 0 ? json_null() : json_boolean(gone == 1)));
    else {
        printf("revoked %s (moved to %s/certs/revoked)\n", name, conn->run);
        if (!reloaded)
            printf("no bus runs on %s: it will refuse %s when it starts\n", conn->run, name);
        else if (gone == 1)
            printf("the bus reloaded; %s is cut off\n", name);
        else if (gone == 0)
            fprintf(stderr, "%s: warning: the bus still lists %s after %d ms (see its log)\n",
                    opts->prog, name, CERTS_WAIT_MS);
        else
            printf("the bus was told to reload (SIGHUP)\n");
    }
    return gone == 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* ---- export -------------------------------------------------------------- */

static int s_export(ctl_opts_t *opts, ctl_conn_t *conn, const char *name, const char *dir)
{
    char from[2 * PATH_MAX + 64], to[2 * PATH_MAX + 64];
    snprintf(from, sizeof(from), "%s/certs/private/%s.cert_secret", conn->run, name);
    if (access(from, R_OK) != 0) {
        fprintf(stderr, "%s: certs export: no secret certificate %s (issue it first)\n", opts->prog,
                from);
        return CTL_EXIT_FAIL;
    }
    snprintf(to, sizeof(to), "%s/certs/public", dir);
    if (rundir_mkdirs(to, 0700) != 0) {
        fprintf(stderr, "%s: certs export: cannot create %s: %s\n", opts->prog, to,
                strerror(errno));
        return CTL_EXIT_FAIL;
    }
    snprintf(to, sizeof(to), "%s/certs/private", dir);
    rundir_mkdirs(to, 0700);
    static const struct {
        const char *sub, *base, *ext; /* base NULL: the instance's name */
        mode_t mode;
    } files[] = {{"certs/public", "bus", ".cert", 0644},
                 {"certs/private", NULL, ".cert_secret", 0600},
                 {"certs/public", NULL, ".cert", 0644}};
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        const char *base = files[i].base ? files[i].base : name;
        snprintf(from, sizeof(from), "%s/%s/%s%s", conn->run, files[i].sub, base, files[i].ext);
        snprintf(to, sizeof(to), "%s/%s/%s%s", dir, files[i].sub, base, files[i].ext);
        if (ctl_copy_file(from, to, files[i].mode) != 0) {
            fprintf(stderr, "%s: certs export: cannot copy %s to %s: %s\n", opts->prog, from, to,
                    strerror(errno));
            json_decref(list);
            return CTL_EXIT_FAIL;
        }
        json_array_append_new(list, json_string(to));
    }
    snprintf(to, sizeof(to), "%s/bus.endpoint", dir);
    FILE *f = fopen(to, "w");
    if (!f || fprintf(f, "%s\n", conn->endpoint) < 0 || fclose(f) != 0) {
        fprintf(stderr, "%s: certs export: cannot write %s\n", opts->prog, to);
        json_decref(list);
        return CTL_EXIT_FAIL;
    }
    json_array_append_new(list, json_string(to));
    bool local = strncmp(conn->endpoint, "ipc://", 6) == 0;
    if (opts->json)
        ctl_print_json(json_pack("{s:s, s:s, s:s, s:o, s:b}", "name", name, "dir", dir, "endpoint",
                                 conn->endpoint, "files", list, "local_only", local));
    else {
        printf("exported %s to %s (endpoint %s)\n", name, dir, conn->endpoint);
        printf("on the other host: emadsctl up --only AGENT --identity %s\n"
               "                or: EMADS_INSTANCE=%s <program> --home %s ...\n",
               dir, name, dir);
        json_decref(list);
    }
    if (local)
        fprintf(stderr,
                "%s: warning: the bus endpoint %s is reachable from this host only; set "
                "bus.endpoint to tcp://HOST:PORT for another host\n",
                opts->prog, conn->endpoint);
    return CTL_EXIT_OK;
}

/* ---- dispatch ------------------------------------------------------------ */

int ctl_cmd_certs(ctl_opts_t *opts, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv))
        return s_help();
    if (argc < 2)
        return ctl_usage_error(opts, "certs: expected init, issue, list, revoke or export");
    const char *sub = argv[1], *principal = NULL;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--for") && i + 1 < argc && !strcmp(sub, "issue"))
            principal = argv[++i];
        else if (argv[i][0] == '-' || npos == 2)
            return ctl_usage_error(opts, "certs %s: unexpected argument '%s'", sub, argv[i]);
        else
            pos[npos++] = argv[i];
    }
    int want = !strcmp(sub, "init") || !strcmp(sub, "list") ? 0 : !strcmp(sub, "export") ? 2 : 1;
    if (strcmp(sub, "init") && strcmp(sub, "list") && strcmp(sub, "issue") &&
        strcmp(sub, "revoke") && strcmp(sub, "export"))
        return ctl_usage_error(opts, "certs: unknown subcommand '%s'", sub);
    if (npos != want)
        return ctl_usage_error(opts, "certs %s: expected %s", sub,
                               want == 0   ? "no argument"
                               : want == 1 ? "a certificate NAME"
                                           : "NAME and DIR");
    for (int i = 0; i < (want < 2 ? want : 1); i++)
        if (!bus_name_valid(pos[i], strlen(pos[i]), PROTO_MAX_NAME) || streq(pos[i], "bus"))
            return ctl_usage_error(opts, "certs %s: invalid name '%s' (A-Z a-z 0-9 _ - . :)", sub,
                                   pos[i]);
    if (principal && !bus_name_valid(principal, strlen(principal), PROTO_MAX_NAME))
        return ctl_usage_error(opts, "certs issue: invalid principal '%s'", principal);

    ctl_conn_t conn;
    int rc = ctl_conn_prepare(opts, &conn);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    if (!strcmp(sub, "init")) {
        const char *names[CFG_MAX_AGENTS + 4];
        int n = 0;
        names[n++] = "ledger";
        names[n++] = "orchestrator";
        for (int i = 0; i < conn.cfg->n_agents; i++)
            names[n++] = conn.cfg->agents[i].name;
        names[n++] = "emadsctl";
        names[n] = NULL;
        int made = bus_certs_init(conn.run, names);
        if (made < 0) {
            fprintf(stderr, "%s: certs init: cannot create certificates in %s/certs\n", opts->prog,
                    conn.run);
            rc = CTL_EXIT_FAIL;
        } else if (opts->json)
            ctl_print_json(json_pack("{s:i, s:s+}", "created", made, "dir", conn.run, "/certs"));
        else
            printf("created %d certificate%s in %s/certs\n", made, made == 1 ? "" : "s", conn.run);
    } else if (!strcmp(sub, "issue")) {
        const char *p = principal ? principal : pos[0];
        int made = bus_certs_issue(conn.run, pos[0], p);
        if (made < 0) {
            fprintf(stderr, "%s: certs issue: cannot issue '%s' for '%s' (see above)\n", opts->prog,
                    pos[0], p);
            rc = CTL_EXIT_FAIL;
        } else {
            bool reloaded = s_reload(conn.run);
            if (opts->json)
                ctl_print_json(json_pack("{s:s, s:s, s:b, s:b}", "name", pos[0], "principal", p,
                                         "created", made == 1, "reloaded", reloaded));
            else
                printf("%s %s acting for %s in %s/certs%s\n", made ? "issued" : "kept", pos[0], p,
                       conn.run, reloaded ? "; the bus reloaded" : "");
        }
    } else if (!strcmp(sub, "list"))
        rc = s_list(opts, conn.run);
    else if (!strcmp(sub, "revoke"))
        rc = s_revoke(opts, &conn, pos[0]);
    else
        rc = s_export(opts, &conn, pos[0], pos[1]);
    ctl_conn_close(&conn);
    return rc;
}
