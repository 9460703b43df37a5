/*  ctlhosts.c - partial start-up over several hosts (see ctlhosts.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rundir.h"
#include "ctl/ctlhosts.h"

/* ---- --only --------------------------------------------------------------- */

static bool s_word_selects(const char *w, size_t len, const ctl_proc_t *p)
{
    bool agent = p->binary != NULL;
    if (len == 4 && !strncmp(w, "core", 4))
        return !agent;
    if (len == 6 && !strncmp(w, "agents", 6))
        return agent;
    return (strlen(p->name) == len && !strncmp(w, p->name, len)) ||
           (strlen(p->service) == len && !strncmp(w, p->service, len));
}

int ctl_only_parse(const char *spec, const ctl_proc_t *procs, int n, bool *sel, char *err,
                   size_t errlen)
{
    bool all = !spec || !*spec;
    for (int i = 0; i < n; i++)
        sel[i] = all;
    if (all)
        return 0;
    for (const char *w = spec; *w;) {
        size_t len = strcspn(w, ",");
        bool any = false;
        for (int i = 0; i < n && len > 0; i++)
            if (s_word_selects(w, len, &procs[i]))
                sel[i] = any = true;
        if (!any) {
            int k = snprintf(err, errlen, "--only: unknown part '%.*s' (one of core, agents",
                             (int)len, w);
            for (int i = 0; i < n && k > 0 && (size_t)k < errlen; i++)
                k += snprintf(err + k, errlen - (size_t)k, ", %s", procs[i].name);
            if (k > 0 && (size_t)k < errlen)
                snprintf(err + k, errlen - (size_t)k, ")");
            return -1;
        }
        w += len;
        if (*w == ',')
            w++;
    }
    return 0;
}

/* ---- where the bus is ------------------------------------------------------ */

static bool s_addr_local(const struct sockaddr *sa)
{
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return false;
    bool found = false;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET)
            found = ((const struct sockaddr_in *)sa)->sin_addr.s_addr ==
                    ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
        else if (sa->sa_family == AF_INET6)
            found = !memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr,
                            &((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                            sizeof(struct in6_addr));
    }
    freeifaddrs(ifs);
    return found;
}

bool ctl_endpoint_local(const char *endpoint)
{
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return true; /* ipc:// (and anything bound by path) */
    char host[256];
    const char *h = endpoint + 6, *end;
    if (*h == '[') { /* [IPv6]:port */
        end = strchr(h, ']');
        h++;
    } else
        end = strrchr(h, ':');
    if (!end || (size_t)(end - h) >= sizeof host)
        return false;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    if (!strcmp(host, "*") || !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
        return true;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool local = false;
    for (struct addrinfo *a = res; a && !local; a = a->ai_next)
        local = s_addr_local(a->ai_addr);
    freeaddrinfo(res);
    return local;
}

/* ---- identities ------------------------------------------------------------ */

bool ctl_certs_imported(const char *run)
{
    char pub[PATH_MAX + 64], sec[PATH_MAX + 64];
    snprintf(pub, sizeof pub, "%s/certs/public/bus.cert", run);
    snprintf(sec, sizeof sec, "%s/certs/private/bus.cert_secret", run);
    return access(pub, F_OK) == 0 && access(sec, F_OK) != 0;
}

typedef struct {
    const char *run, *principal;
    char found[PROTO_MAX_NAME + 1];
} s_find_t;

static void s_find_cert(const char *name, const char *principal, const char *key, void *arg)
{
    (void)key;
    s_find_t *f = (s_find_t *)arg;
    char sec[PATH_MAX + 128];
    snprintf(sec, sizeof sec, "%s/certs/private/%s.cert_secret", f->run, name);
    if (!f->found[0] && !strcmp(principal, f->principal) && access(sec, R_OK) == 0)
        snprintf(f->found, sizeof f->found, "%s", name);
}

int ctl_instance_for(const char *run, const char *principal, char *out, size_t outlen)
{
    char path[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/certs/private/%s.cert_secret", run, principal);
    if (access(path, R_OK) == 0) {
        snprintf(out, outlen, "%s", principal);
        return 0;
    }
    s_find_t f = {.run = run, .principal = principal, .found = ""};
    snprintf(path, sizeof path, "%s/certs/public", run);
    bus_certs_each(path, s_find_cert, &f);
    if (!f.found[0])
        return -1;
    snprintf(out, outlen, "%s", f.found);
    return 0;
}

char *ctl_step_served_by(const ev_t *step, char *out, size_t outlen)
{
    snprintf(out, outlen, "-");
    const ev_t *atts = ev_get(step, "attempts");
    for (size_t k = 0; k < ev_len(atts); k++) {
        const ev_t *a = ev_at(atts, k);
        if (ev_get_str(a, "served_by", NULL))
            snprintf(out, outlen, "%s@%s", ev_get_str(a, "served_by", ""),
                     ev_get_str(a, "host", "?"));
    }
    return out;
}

int ctl_copy_file(const char *from, const char *to, mode_t mode)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return -1;
    mode_t old = umask(077);
    FILE *out = fopen(to, "wb");
    umask(old);
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (ferror(in))
        rc = -1;
    fclose(in);
    if (fclose(out) != 0)
        rc = -1;
    return rc == 0 ? chmod(to, mode) : -1;
}

/* 1 when a and b hold the same bytes, 0 when not, -1 when a cannot be read. */
static int s_same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same == 1) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        else if (ca == EOF)
            break;
    }
    if (!fa)
        same = -1;
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* Copy every file of dir/sub whose name ends in ext into run/sub. */
static int s_import_folder(const char *dir, const char *run, const char *sub, const char *ext,
                           mode_t mode, char *err, size_t errlen)
{
    char from[PATH_MAX + 300], to[PATH_MAX + 300];
    snprintf(from, sizeof from, "%s/%s", dir, sub);
    DIR *d = opendir(from);
    if (!d) {
        snprintf(err, errlen, "%s: %s", from, strerror(errno));
        return -1;
    }
    snprintf(to, sizeof to, "%s/%s", run, sub);
    if (rundir_mkdirs(to, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", to, strerror(errno));
        closedir(d);
        return -1;
    }
    int copied = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), el = strlen(ext);
        if (e->d_name[0] == '.' || len <= el || strcmp(e->d_name + len - el, ext) != 0)
            continue;
        snprintf(from, sizeof from, "%s/%s/%s", dir, sub, e->d_name);
        snprintf(to, sizeof to, "%s/%s/%s", run, sub, e->d_name);
        if (access(to, F_OK) == 0) {
            if (s_same_file(from, to) == 1)
                continue;
            snprintf(err, errlen, "%s exists with other content than %s; not overwritten", to,
                     from);
            closedir(d);
            return -1;
        }
        if (ctl_copy_file(from, to, mode) != 0) {
            snprintf(err, errlen, "cannot copy %s to %s: %s", from, to, strerror(errno));
            closedir(d);
            return -1;
        }
        copied++;
    }
    closedir(d);
    return copied;
}

int ctl_identity_import(const char *dir, const char *run, bool write_endpoint, char *err,
                        size_t errlen)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/certs/public/bus.cert", dir);
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen,
                 "%s is no identity bundle: %s is missing (make one with 'emadsctl certs export "
                 "NAME DIR' on the bus's host)",
                 dir, path);
        return -1;
    }
    char rdir[PATH_MAX], rrun[PATH_MAX];
    if (realpath(dir, rdir) && realpath(run, rrun) && !strcmp(rdir, rrun))
        return 0; /* the bundle is the run directory itself */
    int a = s_import_folder(dir, run, "certs/public", ".cert", 0644, err, errlen);
    if (a < 0)
        return -1;
    int b = s_import_folder(dir, run, "certs/private", ".cert_secret", 0600, err, errlen);
    if (b < 0)
        return -1;
    snprintf(path, sizeof path, "%s/bus.endpoint", dir);
    if (write_endpoint && access(path, R_OK) == 0) {
        char to[PATH_MAX + 64];
        snprintf(to, sizeof to, "%s/bus.endpoint", run);
        if (ctl_copy_file(path, to, 0644) != 0) {
            snprintf(err, errlen, "cannot copy %s to %s: %s", path, to, strerror(errno));
            return -1;
        }
    }
    return a + b;
}
