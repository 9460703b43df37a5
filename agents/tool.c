/*  tool.c - command and HTTP tools (see tool.h).

    Commands: posix_spawn (a vfork-style clone: no copy of the agent's page
    tables, which fork would pay for on every call) with three pipes. The
    child becomes the leader of a new process group (so a timeout kills the
    tool and anything it spawned), changes to the config folder, has every
    other descriptor closed (the agent's ZeroMQ sockets must not leak into
    tools), SIGPIPE at its default and an empty signal mask, and execs the
    path resolved in the parent; an exec failure comes back from the spawn
    itself. The parent feeds stdin and drains stdout/stderr with poll() until
    the child exits, the output cap is reached or the deadline passes. The
    child's exit is watched through a pidfd in the same poll() set, so the
    runner wakes up the moment the tool ends instead of on a polling interval
    (kernels without pidfd fall back to a short interval).

    Elapsed times are measured on the monotonic clock in microseconds and
    rounded up to whole milliseconds: a tool that ran is charged at least
    1 ms.

    The built-in: a command whose argv[0] is the bare name emads-kb-search
    is not spawned; the agent runs the same search (kb.c) on its own thread
    with the same arguments, a relative --dir taken from the config folder,
    the input as the query, the output cap and the deadline applied as for
    the program. It reads files and writes nothing, so running it in the
    agent gives up no isolation a spawn would give; a process start (about
    3.5 ms) leaves every tool step. Naming the program by path
    (/usr/local/bin/emads-kb-search) spawns it as any other command.

    HTTP tools: one libcurl request, {input} in the URL replaced by the
    URL-escaped input (GET) or the input sent as the body (POST).
*/
#define _GNU_SOURCE
#include "agents/tool.h"

#include "agents/kb.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOOL_STDERR_KEEP 512

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Microseconds to whole milliseconds, rounded up (at least 1 ms once any
   time passed). */
static int64_t s_ceil_ms(int64_t us)
{
    return us <= 0 ? 0 : (us + 999) / 1000;
}

/* A descriptor that becomes readable when the process exits, or -1. */
static int s_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? (int)fd : -1;
#else
    (void)pid;
    return -1;
#endif
}

void tool_result_clear(tool_result_t *res)
{
    if (!res)
        return;
    free(res->output);
    memset(res, 0, sizeof *res);
}

static int s_executable(const char *path)
{
    return access(path, X_OK) == 0;
}

static int s_resolve(const char *name, const char *cfg_dir, const char *self_dir, char *out,
                     size_t outlen);

int tool_resolve_command(const char *name, const char *cfg_dir, const char *self_dir, char *out,
                         size_t outlen)
{
    if (s_resolve(name, cfg_dir, self_dir, out, outlen) != 0)
        return -1;
    if (out[0] != '/') {
        /* the child changes folder before exec: the path must be absolute */
        char abs[PATH_MAX];
        if (!realpath(out, abs) || strlen(abs) >= outlen)
            return -1;
        memcpy(out, abs, strlen(abs) + 1);
    }
    return 0;
}

static int s_resolve(const char *name, const char *cfg_dir, const char *self_dir, char *out,
                     size_t outlen)
{
    if (!name || !*name)
        return -1;
    int n;
    if (strchr(name, '/')) {
        if (name[0] == '/' || !cfg_dir || !*cfg_dir)
            n = snprintf(out, outlen, "%s", name);
        else
            n = snprintf(out, outlen, "%s/%s", cfg_dir, name);
        return (n > 0 && (size_t)n < outlen && s_executable(out)) ? 0 : -1;
    }
    if (self_dir && *self_dir) {
        n = snprintf(out, outlen, "%s/%s", self_dir, name);
        if (n > 0 && (size_t)n < outlen && s_executable(out))
            return 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        if (len > 0) {
            n = snprintf(out, outlen, "%.*s/%s", (int)len, path, name);
            if (n > 0 && (size_t)n < outlen && s_executable(out))
                return 0;
        }
        path += len;
        if (*path == ':')
            path++;
    }
    return -1;
}

static int s_append(tool_result_t *res, size_t *cap, const char *data, size_t n)
{
    if (res->len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < res->len + n + 1)
            c *= 2;
        char *d = realloc(res->output, c);
        if (!d)
            return -1;
        res->output = d;
        *cap = c;
    }
    memcpy(res->output + res->len, data, n);
    res->len += n;
    res->output[res->len] = '\0';
    return 0;
}

static void s_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The built-in emads-kb-search (see the top of this file): the program's
   exit codes and messages, without the process. */
static int s_run_builtin(const cfg_tool_t *tool, const char *cfg_dir, const char *input,
                         int64_t timeout_ms, int64_t cap, tool_result_t *res)
{
    int64_t start = s_now_us();
    const char *dir;
    int top;
    if (kb_parse_args(tool->argv, &dir, &top) != 0) {
        res->status = TOOL_ERR_EXIT;
        res->exit_code = 2;
        snprintf(res->error, sizeof res->error,
                 "tool %s exited with status 2: usage: emads-kb-search --dir DIR [--top N]",
                 tool->name);
        res->output = strdup("");
        return -1;
    }
    char path[PATH_MAX];
    int n = dir[0] == '/' || !cfg_dir || !*cfg_dir
                ? snprintf(path, sizeof path, "%s", dir)
                : snprintf(path, sizeof path, "%s/%s", cfg_dir, dir);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = n > 0 && (size_t)n < sizeof path ? open_memstream(&buf, &len) : NULL;
    if (!out) {
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: %s", tool->name,
                 n > 0 && (size_t)n < sizeof path ? "out of memory" : "--dir is too long");
        return -1;
    }
    kb_status_t st = kb_search(path, top, input, out, start + timeout_ms * 1000);
    int e = errno;
    if (fclose(out) != 0 && st == KB_OK) {
        free(buf);
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: out of memory", tool->name);
        return -1;
    }
    res->elapsed_ms = s_ceil_ms(s_now_us() - start);
    if (st == KB_ERR_TIMEOUT) {
        free(buf);
        res->output = strdup("");
        res->status = TOOL_ERR_TIMEOUT;
        snprintf(res->error, sizeof res->error, "tool %s timed out after %lld ms", tool->name,
                 (long long)timeout_ms);
        return -1;
    }
    if (st == KB_ERR_DIR) {
        free(buf);
        res->output = strdup("");
        res->status = TOOL_ERR_EXIT;
        res->exit_code = 2;
        snprintf(res->error, sizeof res->error,
                 "tool %s exited with status 2: emads-kb-search: cannot read %.100s: %s",
                 tool->name, path, strerror(e));
        return -1;
    }
    if ((int64_t)len > cap) {
        len = (size_t)cap;
        buf[len] = '\0';
        res->truncated = true;
    }
    res->output = buf;
    res->len = len;
    res->status = TOOL_OK;
    return 0;
}

static int s_run_command(const cfg_tool_t *tool, const char *cfg_dir, const char *self_dir,
                         const char *input, int64_t timeout_ms, int64_t cap, tool_result_t *res)
{
    char path[PATH_MAX];
    if (!tool->argv[0]) {
        res->status = TOOL_ERR_INVALID;
        snprintf(res->error, sizeof res->error, "tool %s has no command", tool->name);
        return -1;
    }
    if (tool_resolve_command(tool->argv[0], cfg_dir, self_dir, path, sizeof path) != 0) {
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: command %s not found or not executable",
                 tool->name, tool->argv[0]);
        return -1;
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: pipe: %s", tool->name, strerror(errno));
        for (int i = 0; i < 2; i++) {
            s_close(&in[i]);
            s_close(&out[i]);
            s_close(&err[i]);
        }
        return -1;
    }
    const char *dir = (cfg_dir && *cfg_dir) ? cfg_dir : NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    pid_t pid = -1;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc == 0) {
        rc = posix_spawnattr_init(&attr);
        if (rc != 0)
            posix_spawn_file_actions_destroy(&fa);
    }
    if (rc == 0) {
        sigset_t none, def;
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        /* dup2 onto 0/1/2 clears close-on-exec there; the pipes' own ends
           are O_CLOEXEC and everything above 2 is closed anyway */
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, err[1], 2);
        if (!rc && dir)
            rc = posix_spawn_file_actions_addchdir_np(&fa, dir);
        if (!rc)
            rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        if (!rc)
            rc = posix_spawnattr_setpgroup(&attr, 0);
        if (!rc)
            rc = posix_spawnattr_setsigmask(&attr, &none);
        if (!rc)
            rc = posix_spawnattr_setsigdefault(&attr, &def);
        if (!rc)
            rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF);
        if (!rc)
            rc = posix_spawn(&pid, path, &fa, &attr, tool->argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
    }
    s_close(&in[0]);
    s_close(&out[1]);
    s_close(&err[1]);
    if (rc != 0 || pid <= 0) {
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: cannot start %.120s: %s", tool->name,
                 path, strerror(rc ? rc : EAGAIN));
        s_close(&in[1]);
        s_close(&out[0]);
        s_close(&err[0]);
        return -1;
    }
    /* the group was set in the child before exec: the kill below cannot
       miss it */
    int pidfd = s_pidfd(pid);
    s_set_nonblock(in[1]);
    s_set_nonblock(out[0]);
    s_set_nonblock(err[0]);

    int64_t start = s_now_us(), deadline = start + timeout_ms * 1000;
    const char *inp = input ? input : "";
    size_t in_len = strlen(inp), in_off = 0;
    if (in_len == 0)
        s_close(&in[1]);
    char errbuf[TOOL_STDERR_KEEP];
    size_t errlen = 0;
    size_t outcap = 0;
    bool exited = false, timed_out = false, check_exit = true;
    int wstatus = 0;
    char chunk[8192];

    while (out[0] >= 0 || err[0] >= 0 || !exited) {
        int64_t now = s_now_us();
        if (now >= deadline) {
            timed_out = true;
            break;
        }
        if (!exited && check_exit) {
            pid_t w = waitpid(pid, &wstatus, WNOHANG);
            if (w == pid)
                exited = true;
        }
        check_exit = pidfd < 0;
        struct pollfd fds[4];
        int nf = 0, i_out = -1, i_err = -1, i_in = -1, i_pid = -1;
        if (out[0] >= 0) {
            i_out = nf;
            fds[nf++] = (struct pollfd){.fd = out[0], .events = POLLIN};
        }
        if (err[0] >= 0) {
            i_err = nf;
            fds[nf++] = (struct pollfd){.fd = err[0], .events = POLLIN};
        }
        if (in[1] >= 0) {
            i_in = nf;
            fds[nf++] = (struct pollfd){.fd = in[1], .events = POLLOUT};
        }
        int n_pipes = nf;
        if (!exited && pidfd >= 0) {
            i_pid = nf;
            fds[nf++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        }
        int64_t wait = (deadline - now + 999) / 1000;
        if (pidfd < 0 && wait > 5)
            wait = 5; /* no exit notification: re-check the child regularly */
        if (exited && n_pipes > 0)
            wait = 0; /* drain what is buffered, then stop */
        int pr = nf ? poll(fds, (nfds_t)nf, (int)wait) : 0;
        if (nf == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0) {
            if (exited) {
                /* leftovers of the group may keep the pipes open: stop here */
                break;
            }
            continue;
        }
        if (i_pid >= 0 && (fds[i_pid].revents & (POLLIN | POLLHUP | POLLERR)))
            check_exit = true;
        if (i_in >= 0 && (fds[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in[1], inp + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                in_off = in_len; /* EPIPE: the tool does not read its input */
            if (in_off >= in_len)
                s_close(&in[1]);
        }
        if (i_out >= 0 && (fds[i_out].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(out[0], chunk, sizeof chunk);
            if (r > 0) {
                size_t take = (size_t)r;
                if ((int64_t)(res->len + take) > cap) {
                    take = (size_t)(cap - (int64_t)res->len);
                    res->truncated = true;
                }
                if (s_append(res, &outcap, chunk, take) != 0)
                    res->truncated = true;
                if (res->truncated)
                    break;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                s_close(&out[0]);
        }
        if (i_err >= 0 && (fds[i_err].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(err[0], chunk, sizeof chunk);
            if (r > 0) {
                size_t take = (size_t)r;
                if (errlen + take > sizeof errbuf - 1)
                    take = sizeof errbuf - 1 - errlen;
                memcpy(errbuf + errlen, chunk, take);
                errlen += take;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                s_close(&err[0]);
        }
    }
    /* Whatever is still running in the group goes now. */
    kill(-pid, SIGKILL);
    if (!exited) {
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
    }
    s_close(&pidfd);
    s_close(&in[1]);
    s_close(&out[0]);
    s_close(&err[0]);
    res->elapsed_ms = s_ceil_ms(s_now_us() - start);
    if (!res->output) {
        res->output = strdup("");
        if (!res->output) {
            res->status = TOOL_ERR_START;
            snprintf(res->error, sizeof res->error, "out of memory");
            return -1;
        }
    }
    errbuf[errlen] = '\0';
    char *nl = strchr(errbuf, '\n');
    if (nl)
        *nl = '\0';

    if (timed_out) {
        res->status = TOOL_ERR_TIMEOUT;
        res->exit_code = 128 + SIGKILL;
        snprintf(res->error, sizeof res->error, "tool %s timed out after %lld ms and was killed",
                 tool->name, (long long)timeout_ms);
        return -1;
    }
    if (res->truncated) {
        /* killed on purpose at the cap: the output we kept is the result */
        res->status = TOOL_OK;
        res->exit_code = 0;
        return 0;
    }
    if (WIFEXITED(wstatus))
        res->exit_code = WEXITSTATUS(wstatus);
    else if (WIFSIGNALED(wstatus))
        res->exit_code = 128 + WTERMSIG(wstatus);
    if (res->exit_code != 0) {
        res->status = TOOL_ERR_EXIT;
        snprintf(res->error, sizeof res->error, "tool %s exited with status %d%s%.150s", tool->name,
                 res->exit_code, *errbuf ? ": " : "", errbuf);
        return -1;
    }
    res->status = TOOL_OK;
    return 0;
}

typedef struct {
    tool_result_t *res;
    size_t cap, limit;
} s_http_buf_t;

static size_t s_http_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    s_http_buf_t *b = arg;
    size_t n = size * nmemb;
    size_t take = n;
    if (b->res->len + take > b->limit) {
        take = b->limit - b->res->len;
        b->res->truncated = true;
    }
    if (take && s_append(b->res, &b->cap, ptr, take) != 0)
        return 0;
    return b->res->truncated ? 0 : n;
}

static int s_run_http(const cfg_tool_t *tool, const char *input, int64_t timeout_ms, int64_t cap,
                      tool_result_t *res)
{
    CURL *c = curl_easy_init();
    if (!c) {
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "tool %s: cannot create an HTTP handle",
                 tool->name);
        return -1;
    }
    const char *inp = input ? input : "";
    bool post = strcmp(tool->method, "POST") == 0;
    /* replace {input} in the url with the escaped input */
    char *esc = curl_easy_escape(c, inp, 0);
    size_t need = strlen(tool->url) + (esc ? strlen(esc) : 0) + 1;
    char *url = malloc(need);
    if (!url || !esc) {
        free(url);
        curl_free(esc);
        curl_easy_cleanup(c);
        res->status = TOOL_ERR_START;
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }
    const char *mark = strstr(tool->url, "{input}");
    if (mark)
        snprintf(url, need, "%.*s%s%s", (int)(mark - tool->url), tool->url, esc,
                 mark + strlen("{input}"));
    else
        snprintf(url, need, "%s", tool->url);
    curl_free(esc);

    s_http_buf_t buf = {.res = res, .limit = (size_t)cap};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_http_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "emads-agent/1");
    struct curl_slist *headers = NULL;
    if (post) {
        headers = curl_slist_append(NULL, "Content-Type: text/plain; charset=utf-8");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, inp);
    }
    int64_t start = s_now_us();
    CURLcode cc = curl_easy_perform(c);
    res->elapsed_ms = s_ceil_ms(s_now_us() - start);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->http_status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    free(url);
    if (!res->output)
        res->output = strdup("");
    if (res->truncated && (cc == CURLE_WRITE_ERROR || cc == CURLE_OK)) {
        res->status = TOOL_OK;
        return 0;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        res->status = TOOL_ERR_TIMEOUT;
        snprintf(res->error, sizeof res->error, "tool %s timed out after %lld ms", tool->name,
                 (long long)timeout_ms);
        return -1;
    }
    if (cc != CURLE_OK) {
        res->status = TOOL_ERR_HTTP;
        snprintf(res->error, sizeof res->error, "tool %s: %s", tool->name, curl_easy_strerror(cc));
        return -1;
    }
    if (res->http_status < 200 || res->http_status > 299) {
        res->status = TOOL_ERR_HTTP;
        snprintf(res->error, sizeof res->error, "tool %s: HTTP %ld", tool->name, res->http_status);
        return -1;
    }
    res->status = TOOL_OK;
    return 0;
}

int tool_run(const cfg_tool_t *tool, const char *cfg_dir, const char *self_dir, const char *input,
             int64_t timeout_ms, tool_result_t *res)
{
    memset(res, 0, sizeof *res);
    if (!tool) {
        res->status = TOOL_ERR_INVALID;
        snprintf(res->error, sizeof res->error, "no tool");
        return -1;
    }
    int64_t t = tool->timeout_ms > 0 ? tool->timeout_ms : 5000;
    if (timeout_ms > 0 && timeout_ms < t)
        t = timeout_ms;
    int64_t cap = tool->output_cap_bytes > 0 ? tool->output_cap_bytes : 65536;
    if (tool->is_http)
        return s_run_http(tool, input, t, cap, res);
    if (tool->argv[0] && strcmp(tool->argv[0], TOOL_BUILTIN_KB_SEARCH) == 0)
        return s_run_builtin(tool, cfg_dir, input, t, cap, res);
    return s_run_command(tool, cfg_dir, self_dir, input, t, cap, res);
}
