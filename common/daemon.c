/*  daemon.c - the start-up every emads daemon shares (see daemon.h). */
#include "common/daemon.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rundir.h"

#define DAEMON_OWN_MAX 16

static const struct option s_shared[] = {
    {"home", required_argument, NULL, 'H'},     {"config", required_argument, NULL, 'c'},
    {"endpoint", required_argument, NULL, 'e'}, {"insecure", no_argument, NULL, 'i'},
    {"foreground", no_argument, NULL, 'f'},     {"help", no_argument, NULL, 'h'}};

#define DAEMON_SHARED_COUNT (sizeof s_shared / sizeof s_shared[0])

int daemon_parse(daemon_args_t *args, int argc, char **argv, const struct option *own,
                 daemon_opt_fn *fn, void *arg, void (*usage)(FILE *out))
{
    struct option all[DAEMON_SHARED_COUNT + DAEMON_OWN_MAX + 1];
    memset(all, 0, sizeof all);
    memcpy(all, s_shared, sizeof s_shared);
    size_t n = DAEMON_SHARED_COUNT;
    for (size_t i = 0; own && own[i].name && i < DAEMON_OWN_MAX; i++)
        all[n++] = own[i];
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "H:c:e:ifh", all, NULL)) != -1) {
        switch (opt) {
        case 'H':
            args->home = optarg;
            break;
        case 'c':
            args->config = optarg;
            break;
        case 'e':
            args->endpoint = optarg;
            break;
        case 'i':
            args->insecure = true;
            break;
        case 'f':
            args->foreground = true;
            break;
        case 'h':
            args->help = true;
            usage(stdout);
            return 0;
        case '?':
        case ':':
            usage(stderr);
            return 2;
        default:
            if (!fn || fn(arg, opt, optarg) != 0) {
                usage(stderr);
                return 2;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", args->prog, argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

int daemon_start(daemon_t *self, const daemon_args_t *args, const char *log_name,
                 daemon_config_t mode, bool create_run)
{
    memset(self, 0, sizeof *self);
    log_init(log_name ? log_name : args->prog, LOG_LVL_INFO);
    const char *config = args->config;
    if (!config)
        config = getenv("EMADS_CONFIG");
    if ((!config || !*config) && mode == DAEMON_CONFIG_DEFAULT)
        config = "config/emads.yaml";
    if (config && *config) {
        if (!(self->cfg = cfg_load_report(config, args->prog)))
            return 2;
    } else if (mode == DAEMON_CONFIG_REQUIRED) {
        fprintf(stderr, "%s: no config: pass --config FILE or set EMADS_CONFIG\n", args->prog);
        return 2;
    }
    if (rundir_resolve_cfg(args->home, self->cfg ? self->cfg->run_dir : NULL, self->run,
                           sizeof self->run) != 0) {
        fprintf(stderr, "%s: cannot resolve the run directory (use --home)\n", args->prog);
        cfg_destroy(&self->cfg);
        return 2;
    }
    if (create_run && rundir_create(self->run) != 0) {
        fprintf(stderr, "%s: cannot create the run directory %s\n", args->prog, self->run);
        cfg_destroy(&self->cfg);
        return 2;
    }
    rundir_endpoint(args->endpoint, self->cfg ? self->cfg->bus_endpoint : NULL, self->run,
                    self->endpoint, sizeof self->endpoint);
    if (rundir_ledger_endpoint(self->cfg ? self->cfg->ledger_direct : NULL, self->endpoint,
                               self->run, self->ledger, sizeof self->ledger) != 0)
        log_warn("ledger.direct: the endpoint is too long; calling the ledger through the bus");
    self->curve = !args->insecure && (!self->cfg || self->cfg->curve);
    if (args->insecure)
        log_warn("--insecure: CURVE is off, peers are not authenticated");
    return 0;
}

int daemon_pid_write(daemon_t *self, const char *name)
{
    char rel[160];
    snprintf(rel, sizeof rel, "pids/%s.pid", name);
    if (rundir_path(self->run, rel, self->pidfile, sizeof self->pidfile) != 0 ||
        rundir_pid_write(self->pidfile, (long)getpid()) != 0) {
        log_warn("cannot write the pid file %s", self->pidfile);
        self->pidfile[0] = '\0';
        return -1;
    }
    return 0;
}

void daemon_stop(daemon_t *self)
{
    if (self->pidfile[0])
        rundir_pid_remove_own(self->pidfile);
    self->pidfile[0] = '\0';
    cfg_destroy(&self->cfg);
}
