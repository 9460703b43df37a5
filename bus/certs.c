/*  certs.c - the certificate store of a run directory and socket security.

    The store lives in <run>/certs: public/<name>.cert holds each peer's public
    key with its name in the metadata "name" (the folder the bus authenticates
    against), private/<name>.cert_secret holds the matching secret key, mode
    0600, read by the process of that name. "bus" is the broker's own server
    certificate. Creation is idempotent: an existing certificate is kept, so
    `emadsctl certs init` and a later `up` agree on every key.

    When the bus runs --insecure its socket is a PLAIN server that accepts any
    password: clients then send their name as the PLAIN user name so services
    still see a sender, but that name is claimed, not proven.
*/
#include "bus/bus_priv.h"
#include "common/log.h"
#include "common/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void bus_security_init(bus_security_t *sec, const char *run_dir, const char *name, bool curve)
{
    memset(sec, 0, sizeof(*sec));
    sec->curve = curve;
    if (run_dir)
        snprintf(sec->certs_dir, sizeof(sec->certs_dir), "%s/certs", run_dir);
    const char *inst = getenv("EMADS_INSTANCE");
    if (inst && *inst)
        name = inst;
    if (name)
        snprintf(sec->name, sizeof(sec->name), "%s", name);
}

bool bus_name_valid(const char *name, size_t len, size_t max)
{
    if (!name || len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.' || c == ':';
        if (!ok)
            return false;
    }
    return true;
}

int bus_frame_name(zframe_t *frame, char *dst, size_t dstlen, size_t max)
{
    size_t len = zframe_size(frame);
    if (len >= dstlen || !bus_name_valid((const char *)zframe_data(frame), len, max))
        return -1;
    memcpy(dst, zframe_data(frame), len);
    dst[len] = '\0';
    return 0;
}

bool bus_frame_is(zframe_t *frame, const char *s)
{
    size_t len = strlen(s);
    return frame && zframe_size(frame) == len && memcmp(zframe_data(frame), s, len) == 0;
}

zframe_t *bus_body_frame(const ev_t *body)
{
    if (!body)
        return NULL;
    /* encoded straight into the frame: one allocation, no copy */
    size_t need = ev_encoded_size(body), len = 0;
    zframe_t *frame = need <= ev_wire_limits.max_bytes ? zframe_new(NULL, need) : NULL;
    if (frame && ev_encode_into(body, zframe_data(frame), need, &len) != EV_OK)
        zframe_destroy(&frame);
    return frame;
}

/* Load certificate <certs>/<sub>/<name>.cert (zcert_load looks for the
   _secret file first). */
static zcert_t *s_load(const char *certs_dir, const char *sub, const char *name)
{
    char path[1200];
    if (snprintf(path, sizeof(path), "%s/%s/%s.cert", certs_dir, sub, name) >= (int)sizeof(path))
        return NULL;
    return zcert_load(path);
}

int bus_sock_setup(zsock_t *sock, const bus_security_t *sec)
{
    zsock_set_maxmsgsize(sock, PROTO_MAX_FRAME);
    zsock_set_linger(sock, 200);
    zsock_set_rcvtimeo(sock, 0);
    zsock_set_sndtimeo(sock, 0); /* a send never blocks the caller's loop */
    if (!sec || !sec->curve) {
        const char *name = sec && sec->name[0] ? sec->name : "anonymous";
        zsock_set_plain_username(sock, name);
        zsock_set_plain_password(sock, "insecure");
        return 0;
    }
    if (!bus_name_valid(sec->name, strlen(sec->name), PROTO_MAX_NAME)) {
        log_error("bus: invalid certificate name '%s'", sec->name);
        return -1;
    }
    zcert_t *mine = s_load(sec->certs_dir, "private", sec->name);
    if (!mine) {
        log_error("bus: no certificate for '%s' in %s/private (run `emadsctl certs init`)",
                  sec->name, sec->certs_dir);
        return -1;
    }
    zcert_t *server = s_load(sec->certs_dir, "public", "bus");
    if (!server) {
        log_error("bus: no server certificate %s/public/bus.cert", sec->certs_dir);
        zcert_destroy(&mine);
        return -1;
    }
    zcert_apply(mine, sock);
    zsock_set_curve_serverkey(sock, zcert_public_txt(server));
    zcert_destroy(&mine);
    zcert_destroy(&server);
    return 0;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Make one certificate unless it exists; returns 1 created, 0 kept, -1 error.
   principal NULL: none in the metadata (the name is the principal). */
static int s_make(const char *certs, const char *name, const char *principal)
{
    char pub[1200], sec[1200];
    snprintf(pub, sizeof(pub), "%s/public/%s.cert", certs, name);
    snprintf(sec, sizeof(sec), "%s/private/%s.cert_secret", certs, name);
    if (s_exists(sec)) {
        if (s_exists(pub))
            return 0;
        /* public half lost: rewrite it from the secret file */
        zcert_t *cert = s_load(certs, "private", name);
        if (!cert) {
            log_error("bus: cannot read %s", sec);
            return -1;
        }
        int rc = zcert_save_public(cert, pub);
        zcert_destroy(&cert);
        return rc == 0 ? 0 : -1;
    }
    zcert_t *cert = zcert_new();
    if (!cert)
        return -1;
    zcert_set_meta(cert, "name", "%s", name);
    if (principal)
        zcert_set_meta(cert, "principal", "%s", principal);
    zcert_set_meta(cert, "created-by", "emads");
    mode_t old = umask(077);
    int rc = zcert_save_secret(cert, sec);
    umask(old);
    if (rc == 0) {
        chmod(sec, 0600);
        rc = zcert_save_public(cert, pub);
    }
    zcert_destroy(&cert);
    if (rc != 0) {
        log_error("bus: cannot write certificate %s: %s", sec, strerror(errno));
        return -1;
    }
    return 1;
}

/* <run>/certs into certs (1100 bytes), creating public/ and private/. */
static int s_store(const char *run_dir, char *certs)
{
    char sub[1200];
    if (!run_dir || snprintf(certs, 1100, "%s/certs", run_dir) >= 1100)
        return -1;
    snprintf(sub, sizeof(sub), "%s/public", certs);
    if (rundir_mkdirs(sub, 0700) != 0)
        return -1;
    snprintf(sub, sizeof(sub), "%s/private", certs);
    return rundir_mkdirs(sub, 0700);
}

int bus_certs_init(const char *run_dir, const char *const *names)
{
    char certs[1100];
    if (s_store(run_dir, certs) != 0)
        return -1;
    int created = 0;
    int rc = s_make(certs, "bus", NULL);
    if (rc < 0)
        return -1;
    created += rc;
    for (size_t i = 0; names && names[i]; i++) {
        if (!bus_name_valid(names[i], strlen(names[i]), PROTO_MAX_NAME)) {
            log_error("bus: invalid certificate name '%s'", names[i]);
            return -1;
        }
        rc = s_make(certs, names[i], NULL);
        if (rc < 0)
            return -1;
        created += rc;
    }
    return created;
}

int bus_certs_issue(const char *run_dir, const char *name, const char *principal)
{
    char certs[1100];
    if (!principal)
        principal = name;
    if (!name || !bus_name_valid(name, strlen(name), PROTO_MAX_NAME) || streq(name, "bus") ||
        !bus_name_valid(principal, strlen(principal), PROTO_MAX_NAME)) {
        log_error("bus: invalid instance or principal name '%s' / '%s'", name ? name : "",
                  principal ? principal : "");
        return -1;
    }
    if (s_store(run_dir, certs) != 0 || s_make(certs, "bus", NULL) < 0)
        return -1;
    zcert_t *old = s_load(certs, "public", name);
    if (old) {
        const char *p = zcert_meta(old, "principal");
        bool same = streq(p && *p ? p : name, principal);
        zcert_destroy(&old);
        if (!same) {
            log_error("bus: '%s' exists already for another principal; revoke it first", name);
            return -1;
        }
        return 0;
    }
    return s_make(certs, name, streq(name, principal) ? NULL : principal);
}

int bus_certs_revoke(const char *run_dir, const char *name)
{
    char certs[1100], from[1300], to[1300];
    if (!run_dir || !name || !bus_name_valid(name, strlen(name), PROTO_MAX_NAME) ||
        streq(name, "bus") || snprintf(certs, sizeof(certs), "%s/certs", run_dir) >= 1100)
        return -1;
    snprintf(from, sizeof(from), "%s/public/%s.cert", certs, name);
    if (!s_exists(from)) {
        log_error("bus: no certificate '%s' in %s/public", name, certs);
        return -1;
    }
    snprintf(to, sizeof(to), "%s/revoked", certs);
    if (rundir_mkdirs(to, 0700) != 0)
        return -1;
    snprintf(to, sizeof(to), "%s/revoked/%s.cert", certs, name);
    if (rename(from, to) != 0) {
        log_error("bus: cannot move %s to %s: %s", from, to, strerror(errno));
        return -1;
    }
    snprintf(from, sizeof(from), "%s/private/%s.cert_secret", certs, name);
    snprintf(to, sizeof(to), "%s/revoked/%s.cert_secret", certs, name);
    if (s_exists(from) && rename(from, to) != 0) {
        log_error("bus: cannot move %s to %s: %s", from, to, strerror(errno));
        return -1;
    }
    return 0;
}

int bus_certs_each(const char *dir, bus_cert_fn *fn, void *arg)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".cert") || streq(e->d_name, "bus.cert"))
            continue;
        char path[1400];
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        zcert_t *cert = zcert_load(path);
        if (!cert)
            continue;
        const char *name = zcert_meta(cert, "name"), *p = zcert_meta(cert, "principal");
        if (!p || !*p)
            p = name;
        if (!name || !bus_name_valid(name, strlen(name), PROTO_MAX_NAME) ||
            !bus_name_valid(p, strlen(p), PROTO_MAX_NAME))
            log_warn("certificate %s skipped: no valid name or principal in its metadata", path);
        else {
            fn(name, p, zcert_public_txt(cert), arg);
            n++;
        }
        zcert_destroy(&cert);
    }
    closedir(d);
    return n;
}
