/*  tool.h - running one configured tool: a command (argv, input on stdin,
    output on stdout) or an HTTP request, with a timeout and an output cap.

    Commands run in their own process group with the config folder as their
    working directory, so relative paths in argv resolve against it. A command
    name without a slash is looked up first in the folder of the agent binary
    (where emads-kb-search is installed next to it), then in $PATH. At the
    timeout the whole process group gets SIGKILL; output past the cap is cut
    (and the command killed) and the result says it was truncated.

    The built-in: a command whose argv[0] is exactly TOOL_BUILTIN_KB_SEARCH
    (the default tool, emads-kb-search, by its bare name) runs in the
    calling process, without a spawn: the same arguments, output, exit codes
    (as exit_code with TOOL_ERR_EXIT) and messages as the program, a
    relative --dir resolved against cfg_dir, the output cap and the timeout
    (checked between the files it reads) applied the same way. Name the
    program by path to have it spawned instead.

    Each tool_run() is one tool call on the ledger.
*/
#ifndef AGENTS_TOOL_H_INCLUDED
#define AGENTS_TOOL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

#define TOOL_BUILTIN_KB_SEARCH "emads-kb-search"

typedef enum {
    TOOL_OK = 0,
    TOOL_ERR_TIMEOUT, /* killed (command) or cut (http) at the timeout */
    TOOL_ERR_EXIT,    /* command exited non-zero or died of a signal */
    TOOL_ERR_START,   /* could not start: not found, not executable, fork failed */
    TOOL_ERR_HTTP,    /* http error status or transfer failure */
    TOOL_ERR_INVALID  /* bad tool definition */
} tool_status_t;

typedef struct {
    tool_status_t status;
    char *output; /* malloc'd, NUL-terminated stdout or http body (may be partial) */
    size_t len;
    bool truncated; /* output reached the cap */
    int exit_code;  /* command: exit status, or 128 + signal */
    long http_status;
    int64_t elapsed_ms;
    char error[256]; /* not TOOL_OK: a clear reason (with stderr's first line) */
} tool_result_t;

/* Run tool with input. cfg_dir is the working folder and the base of
   relative paths ("" or NULL: current folder); self_dir is the folder of the
   agent binary (may be NULL). timeout_ms <= 0 uses the tool's own timeout; the
   effective timeout is the smaller of the two. Returns 0 when res->status is
   TOOL_OK, else -1. Clear res with tool_result_clear. The caller ignores
   SIGPIPE (a tool that exits without reading its input is an EPIPE here). */
int tool_run(const cfg_tool_t *tool, const char *cfg_dir, const char *self_dir, const char *input,
             int64_t timeout_ms, tool_result_t *res);
void tool_result_clear(tool_result_t *res);

/* Resolve a command name as described above into out (PATH_MAX). Returns 0,
   or -1 when nothing executable was found. */
int tool_resolve_command(const char *name, const char *cfg_dir, const char *self_dir, char *out,
                         size_t outlen);

#endif
