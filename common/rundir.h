/*  rundir.h - the run directory: one folder per constellation holding
    sockets, pid files, logs, certificates, the ledger and task databases and
    the policy.

      <run>/bus.sock  ledger.db  tasks.db  policy.json
      <run>/pids/<name>.pid   <run>/logs/<name>.log
      <run>/pids/<name>.<pid>.pid   (further copies of one agent on this host)
      <run>/certs/public/<name>.cert     (public certificates, the bus's store)
      <run>/certs/private/<name>.cert_secret (one per process + emadsctl)
      <run>/metrics/<name>.<pid>.addr   (where that process serves /metrics)

    Resolution order: explicit --home, $EMADS_HOME, $XDG_STATE_HOME/emads,
    $HOME/.local/state/emads. */
#ifndef EMADS_RUNDIR_H_INCLUDED
#define EMADS_RUNDIR_H_INCLUDED
#include <stdbool.h>
#include <stddef.h>

/* Resolve the run directory into out (PATH_MAX). home may be NULL.
   Returns 0, -1 if nothing could be resolved. Does not create it. */
int rundir_resolve(const char *home, char *out, size_t outlen);
/* The run directory of a process that loaded a config: home (--home) if
   set, else $EMADS_HOME, else cfg_run_dir (the config's run_dir) if
   non-empty, else as rundir_resolve. Every process resolves it this way. */
int rundir_resolve_cfg(const char *home, const char *cfg_run_dir, char *out, size_t outlen);
/* The bus endpoint: override (--endpoint) if set, else cfg_endpoint if
   non-empty, else the first line of <run>/bus.endpoint (written by
   `emadsctl certs export` for another host) if present, else
   ipc://<run>/bus.sock. Returns 0, -1 if truncated. */
int rundir_endpoint(const char *override, const char *cfg_endpoint, const char *run, char *out,
                    size_t outlen);
/* The ledger's direct endpoint (ledger.direct) for a process whose bus is
   bus_endpoint: "" when cfg_direct is "" (off: calls go through the bus),
   ipc://<run>/ledger.sock for "local" when the bus is an ipc:// endpoint
   too ("" with a tcp:// bus: peers on other hosts could not reach an ipc
   socket, so everyone keeps the bus path), else cfg_direct. Returns 0, -1
   if truncated (out is then ""). */
int rundir_ledger_endpoint(const char *cfg_direct, const char *bus_endpoint, const char *run,
                           char *out, size_t outlen);
/* Create dir and its subfolders (pids, logs, certs/public, certs/private),
   mode 0700. Returns 0 or -1 with errno set. */
int rundir_create(const char *dir);
/* snprintf(out, "%s/%s", dir, rel); returns 0, -1 if truncated. */
int rundir_path(const char *dir, const char *rel, char *out, size_t outlen);
/* mkdir -p with mode; 0 or -1. */
int rundir_mkdirs(const char *path, int mode);

/* Pid files (<run>/pids/<name>.pid): one decimal pid and a newline.
   rundir_pid_read: the pid in path, 0 when the file is missing, unreadable
   or holds no pid in 1..INT_MAX. rundir_pid_write: write pid to path
   (replacing it); 0 or -1. rundir_pid_remove_own: remove path if it still
   names this process (another instance may have replaced it since). */
long rundir_pid_read(const char *path);
/* True if pid is a live process positively identified as program prog
   (the file name of /proc/PID/exe; a rebuilt binary's " (deleted)" is
   ignored) serving name: its command line has `--name NAME` or argv[0]
   NAME (name NULL: any). When /proc/PID/exe or cmdline cannot be read
   (another user's process), its command name (15 bytes, which emads-agent
   sets to the agent's name) must equal name, or prog when name is NULL.
   A process that cannot be identified is never taken for ours. */
bool rundir_pid_serves(long pid, const char *prog, const char *name);
int rundir_pid_write(const char *path, long pid);
void rundir_pid_remove_own(const char *path);

#endif
