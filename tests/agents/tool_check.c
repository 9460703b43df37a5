/*  tool_check.c - the command tool runner against real processes: input on
    stdin and output on stdout, a hanging tool killed at its timeout with its
    whole process group, the output cap, exit codes with stderr, lookup of
    the command next to the agent binary, and the config folder as working
    directory; the built-in emads-kb-search (no process: the same output as
    the program, its exit codes and messages, the cap, a decoy program of
    that name never started). A plain program (not Criterion: it forks).

      tool_check AGENT_BUILD_DIR TESTS_SOURCE_DIR
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agents/tool.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

static cfg_tool_t s_tool(const char *name, const char *const *argv, int64_t timeout, int64_t cap)
{
    cfg_tool_t t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    for (int i = 0; argv[i] && i < CFG_MAX_ARGV; i++)
        t.argv[i] = (char *)argv[i];
    t.timeout_ms = timeout;
    t.output_cap_bytes = cap;
    return t;
}

/* True when pid no longer runs (gone, or a zombie waiting for its reaper). */
static int s_dead(long pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(path, "r");
        if (!f)
            return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *paren = strrchr(buf, ')');
        if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'))
            return 1;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tool_check AGENT_BUILD_DIR TESTS_SOURCE_DIR\n");
        return 2;
    }
    /* as in emads-agent (agent_main.c): a tool that exits without reading
       its input makes the runner's write fail with EPIPE, not kill us */
    signal(SIGPIPE, SIG_IGN);
    const char *self_dir = argv[1], *src = argv[2];
    char tmp[] = "/tmp/emads-tool-XXXXXX";
    if (!mkdtemp(tmp))
        return 2;
    tool_result_t r;

    /* input on stdin, output on stdout */
    {
        const char *a[] = {"cat", NULL};
        cfg_tool_t t = s_tool("echo", a, 5000, 65536);
        CHECK(tool_run(&t, tmp, NULL, "payments and refunds", 0, &r) == 0, "%s", r.error);
        CHECK(r.output && strcmp(r.output, "payments and refunds") == 0, "got '%s'", r.output);
        CHECK(!r.truncated, "not truncated");
        tool_result_clear(&r);
    }
    /* a hanging tool and the child it started are killed at the timeout */
    {
        char script[512];
        snprintf(script, sizeof script, "sleep 30 & echo $! > %s/child.pid; wait", tmp);
        const char *a[] = {"/bin/sh", "-c", script, NULL};
        cfg_tool_t t = s_tool("hang", a, 60000, 65536);
        CHECK(tool_run(&t, tmp, NULL, "", 300, &r) == -1, "a hanging tool fails");
        CHECK(r.status == TOOL_ERR_TIMEOUT, "status %d", r.status);
        CHECK(strstr(r.error, "timed out") != NULL, "reason '%s'", r.error);
        tool_result_clear(&r);
        char pidpath[600];
        snprintf(pidpath, sizeof pidpath, "%s/child.pid", tmp);
        FILE *f = fopen(pidpath, "r");
        long pid = 0;
        CHECK(f && fscanf(f, "%ld", &pid) == 1, "the tool wrote its child's pid");
        if (f)
            fclose(f);
        if (pid > 0) {
            CHECK(s_dead(pid), "the tool's child %ld was killed with the group", pid);
            kill((pid_t)pid, SIGKILL);
        }
        unlink(pidpath);
    }
    /* output cap */
    {
        const char *a[] = {"yes", "emads", NULL};
        cfg_tool_t t = s_tool("yes", a, 5000, 1000);
        CHECK(tool_run(&t, tmp, NULL, "", 0, &r) == 0, "%s", r.error);
        CHECK(r.truncated, "truncated at the cap");
        CHECK(r.len == 1000, "len %zu", r.len);
        tool_result_clear(&r);
    }
    /* exit status and stderr */
    {
        const char *a[] = {"/bin/sh", "-c", "echo 'index missing' >&2; exit 3", NULL};
        cfg_tool_t t = s_tool("fail", a, 5000, 1000);
        CHECK(tool_run(&t, tmp, NULL, "", 0, &r) == -1, "non-zero exit fails");
        CHECK(r.status == TOOL_ERR_EXIT && r.exit_code == 3, "status %d code %d", r.status,
              r.exit_code);
        CHECK(strstr(r.error, "index missing") != NULL, "stderr in the reason: '%s'", r.error);
        tool_result_clear(&r);
    }
    /* missing command */
    {
        const char *a[] = {"emads-no-such-tool", NULL};
        cfg_tool_t t = s_tool("missing", a, 5000, 1000);
        CHECK(tool_run(&t, tmp, NULL, "", 0, &r) == -1 && r.status == TOOL_ERR_START, "status %d",
              r.status);
        CHECK(strstr(r.error, "not found") != NULL, "reason '%s'", r.error);
        tool_result_clear(&r);
    }
    /* working directory is the config folder */
    {
        const char *a[] = {"pwd", NULL};
        cfg_tool_t t = s_tool("pwd", a, 5000, 4096);
        CHECK(tool_run(&t, tmp, NULL, "", 0, &r) == 0, "%s", r.error);
        CHECK(r.output && strncmp(r.output, tmp, strlen(tmp)) == 0, "cwd '%s'", r.output);
        tool_result_clear(&r);
    }
    /* the default tool, found next to the agent binary, relative --dir */
    {
        const char *a[] = {"emads-kb-search", "--dir", "kb", NULL};
        cfg_tool_t t = s_tool("kb_search", a, 5000, 65536);
        CHECK(tool_run(&t, src, self_dir, "How do we handle card payments and refunds?", 0, &r) ==
                  0,
              "%s", r.error);
        CHECK(r.output && strstr(r.output, "## payments.md") == r.output,
              "best match first: '%.200s'", r.output ? r.output : "");
        tool_result_clear(&r);
        CHECK(tool_run(&t, src, self_dir, "kubernetes cutover rehearsal", 0, &r) == 0, "%s",
              r.error);
        CHECK(r.output && strstr(r.output, "## migration.md") == r.output, "got '%.200s'",
              r.output ? r.output : "");
        tool_result_clear(&r);
        CHECK(tool_run(&t, src, self_dir, "zebra quantum xylophone", 0, &r) == 0, "%s", r.error);
        CHECK(r.output && strstr(r.output, "no matches"), "got '%.200s'", r.output ? r.output : "");
        tool_result_clear(&r);
    }
    /* the built-in answers byte for byte what the program prints */
    {
        const char *a[] = {"emads-kb-search", "--dir", "kb", NULL};
        char prog[1024];
        snprintf(prog, sizeof prog, "%s/emads-kb-search", self_dir);
        const char *b[] = {prog, "--dir", "kb", NULL};
        const char *a1[] = {"emads-kb-search", "--dir", "kb", "--top", "1", NULL};
        const char *b1[] = {prog, "--dir", "kb", "--top", "1", NULL};
        cfg_tool_t in = s_tool("kb_search", a, 5000, 65536), out = s_tool("kb", b, 5000, 65536);
        cfg_tool_t in1 = s_tool("kb1", a1, 5000, 65536), out1 = s_tool("kb1", b1, 5000, 65536);
        const char *queries[] = {"How do we handle card payments and refunds?",
                                 "kubernetes cutover rehearsal",
                                 "zebra quantum xylophone",
                                 "a an of",
                                 "staffing payments migration plan",
                                 ""};
        for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
            for (int k = 0; k < 2; k++) {
                tool_result_t x, y;
                int rx = tool_run(k ? &in1 : &in, src, self_dir, queries[q], 0, &x);
                int ry = tool_run(k ? &out1 : &out, src, self_dir, queries[q], 0, &y);
                CHECK(rx == 0 && ry == 0, "'%s': %s / %s", queries[q], x.error, y.error);
                CHECK(x.output && y.output && x.len == y.len && !strcmp(x.output, y.output),
                      "'%s' top %d: built-in '%.120s' vs program '%.120s'", queries[q], k ? 1 : 3,
                      x.output ? x.output : "", y.output ? y.output : "");
                tool_result_clear(&x);
                tool_result_clear(&y);
            }
    }
    /* the built-in starts no process: a decoy program of that name next to
       the "agent binary" would answer DECOY */
    {
        char decoy[1024];
        snprintf(decoy, sizeof decoy, "%s/emads-kb-search", tmp);
        FILE *f = fopen(decoy, "w");
        CHECK(f != NULL, "cannot write %s", decoy);
        if (f) {
            fputs("#!/bin/sh\necho DECOY\n", f);
            fclose(f);
            chmod(decoy, 0755);
        }
        const char *a[] = {"emads-kb-search", "--dir", "kb", NULL};
        cfg_tool_t t = s_tool("kb_search", a, 5000, 65536);
        CHECK(tool_run(&t, src, tmp, "card payments refunds", 0, &r) == 0, "%s", r.error);
        CHECK(r.output && strstr(r.output, "## payments.md") == r.output &&
                  !strstr(r.output, "DECOY"),
              "got '%.200s'", r.output ? r.output : "");
        CHECK(r.elapsed_ms >= 1, "a tool that ran is charged at least 1 ms, got %lld",
              (long long)r.elapsed_ms);
        tool_result_clear(&r);
        /* named by path, the same program is spawned */
        const char *b[] = {decoy, "--dir", "kb", NULL};
        cfg_tool_t d = s_tool("decoy", b, 5000, 65536);
        CHECK(tool_run(&d, src, tmp, "card payments refunds", 0, &r) == 0, "%s", r.error);
        CHECK(r.output && !strcmp(r.output, "DECOY\n"), "got '%.200s'", r.output ? r.output : "");
        tool_result_clear(&r);
        unlink(decoy);
    }
    /* the built-in's errors are the program's: usage and unreadable folder
       exit 2 with the reason; the cap cuts the output and says so */
    {
        const char *bad[][5] = {{"emads-kb-search", NULL},
                                {"emads-kb-search", "--dir", "kb", "--top", "0"},
                                {"emads-kb-search", "--dir", "kb", "--top", "7x"},
                                {"emads-kb-search", "--dir", "kb", "--color", NULL}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            const char *a[6] = {bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4], NULL};
            cfg_tool_t t = s_tool("kb_search", a, 5000, 65536);
            CHECK(tool_run(&t, src, self_dir, "payments", 0, &r) == -1 &&
                      r.status == TOOL_ERR_EXIT && r.exit_code == 2,
                  "case %zu: status %d exit %d", i, r.status, r.exit_code);
            CHECK(strstr(r.error, "usage: emads-kb-search") != NULL, "case %zu: '%s'", i, r.error);
            tool_result_clear(&r);
        }
        const char *a[] = {"emads-kb-search", "--dir", "no-such-folder", NULL};
        cfg_tool_t t = s_tool("kb_search", a, 5000, 65536);
        CHECK(tool_run(&t, src, self_dir, "payments", 0, &r) == -1 && r.status == TOOL_ERR_EXIT &&
                  r.exit_code == 2,
              "status %d exit %d", r.status, r.exit_code);
        CHECK(strstr(r.error, "cannot read") && strstr(r.error, "no-such-folder"), "'%s'", r.error);
        tool_result_clear(&r);
        const char *c[] = {"emads-kb-search", "--dir", "kb", NULL};
        cfg_tool_t capped = s_tool("kb_search", c, 5000, 40);
        CHECK(tool_run(&capped, src, self_dir, "card payments refunds", 0, &r) == 0, "%s", r.error);
        CHECK(r.truncated && r.len == 40 && strlen(r.output) == 40 &&
                  strncmp(r.output, "## payments.md", 14) == 0,
              "truncated %d len %zu '%s'", r.truncated, r.len, r.output ? r.output : "");
        tool_result_clear(&r);
    }
    rmdir(tmp);
    if (failures)
        fprintf(stderr, "%d check(s) failed\n", failures);
    else
        printf("tool_check: all checks passed\n");
    return failures ? 1 : 0;
}
