/*  bus_certs_unit.c - the certificate store: creation, names, idempotence,
    refusal of bad names. Pure file work in a temporary folder. */
#include "bus/bus.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[256];

static void s_setup(void)
{
    snprintf(s_dir, sizeof(s_dir), "/tmp/emads-certs-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
}

static void s_teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s_dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(bus_certs, .init = s_setup, .fini = s_teardown);

Test(bus_certs, creates_named_certificates_once)
{
    const char *names[] = {"emadsctl", "cto_agent", NULL};
    cr_assert_eq(bus_certs_init(s_dir, names), 3); /* bus + 2 */
    char path[512];
    snprintf(path, sizeof(path), "%s/certs/public/cto_agent.cert", s_dir);
    zcert_t *pub = zcert_load(path);
    cr_assert_not_null(pub);
    cr_expect_str_eq(zcert_meta(pub, "name"), "cto_agent");
    snprintf(path, sizeof(path), "%s/certs/private/cto_agent.cert", s_dir);
    zcert_t *sec = zcert_load(path);
    cr_assert_not_null(sec);
    cr_expect_str_eq(zcert_public_txt(sec), zcert_public_txt(pub));
    cr_expect_str_neq(zcert_secret_txt(sec), "0000000000000000000000000000000000000000");
    snprintf(path, sizeof(path), "%s/certs/private/cto_agent.cert_secret", s_dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 077, 0, "secret file must not be readable by others");

    /* a second run keeps every key and adds only the new name */
    const char *more[] = {"emadsctl", "cto_agent", "coo_agent", NULL};
    cr_expect_eq(bus_certs_init(s_dir, more), 1);
    snprintf(path, sizeof(path), "%s/certs/public/cto_agent.cert", s_dir);
    zcert_t *again = zcert_load(path);
    cr_assert_not_null(again);
    cr_expect_str_eq(zcert_public_txt(again), zcert_public_txt(pub));
    zcert_destroy(&pub);
    zcert_destroy(&sec);
    zcert_destroy(&again);
}

Test(bus_certs, refuses_bad_names)
{
    const char *bad[] = {"../escape", NULL};
    cr_expect_eq(bus_certs_init(s_dir, bad), -1);
    const char *empty[] = {"", NULL};
    cr_expect_eq(bus_certs_init(s_dir, empty), -1);
    cr_expect_eq(bus_certs_init(NULL, NULL), -1);
}

Test(bus_certs, security_init_fills_paths)
{
    bus_security_t sec;
    bus_security_init(&sec, "/run/x", "ledger", true);
    cr_expect(sec.curve);
    cr_expect_str_eq(sec.certs_dir, "/run/x/certs");
    cr_expect_str_eq(sec.name, "ledger");
}

Test(bus_certs, security_init_takes_the_instance_from_the_environment)
{
    bus_security_t sec;
    setenv("EMADS_INSTANCE", "cto_agent.2", 1);
    bus_security_init(&sec, "/run/x", "cto_agent", true);
    unsetenv("EMADS_INSTANCE");
    cr_expect_str_eq(sec.name, "cto_agent.2");
    setenv("EMADS_INSTANCE", "", 1);
    bus_security_init(&sec, "/run/x", "cto_agent", true);
    unsetenv("EMADS_INSTANCE");
    cr_expect_str_eq(sec.name, "cto_agent", "an empty EMADS_INSTANCE means none");
}

typedef struct {
    int n;
    char seen[8][160];
} s_seen_t;

static void s_collect(const char *name, const char *principal, const char *key, void *arg)
{
    s_seen_t *s = (s_seen_t *)arg;
    cr_expect_eq(strlen(key), 40);
    if (s->n < 8)
        snprintf(s->seen[s->n++], sizeof(s->seen[0]), "%s=%s", name, principal);
}

static bool s_has(const s_seen_t *s, const char *entry)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->seen[i], entry))
            return true;
    return false;
}

Test(bus_certs, issue_names_instance_and_principal)
{
    cr_assert_eq(bus_certs_issue(s_dir, "cto_agent.2", "cto_agent"), 1);
    cr_expect_eq(bus_certs_issue(s_dir, "cto_agent.2", "cto_agent"), 0, "kept, same key");
    cr_expect_eq(bus_certs_issue(s_dir, "cto_agent.2", "coo_agent"), -1,
                 "another principal for an existing instance");
    cr_expect_eq(bus_certs_issue(s_dir, "cto_agent", NULL), 1);
    cr_expect_eq(bus_certs_issue(s_dir, "bus", NULL), -1, "the server's name");
    cr_expect_eq(bus_certs_issue(s_dir, "x@host", "cto_agent"), -1);
    cr_expect_eq(bus_certs_issue(s_dir, "x", "no/slash"), -1);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/certs/public", s_dir);
    s_seen_t seen = {0};
    cr_expect_eq(bus_certs_each(dir, s_collect, &seen), 2, "bus.cert is not listed");
    cr_expect(s_has(&seen, "cto_agent.2=cto_agent"));
    cr_expect(s_has(&seen, "cto_agent=cto_agent"), "no principal: the name");
    snprintf(dir, sizeof(dir), "%s/certs/nowhere", s_dir);
    cr_expect_eq(bus_certs_each(dir, s_collect, &seen), -1);
}

Test(bus_certs, revoke_moves_the_certificate_out_of_the_store)
{
    cr_assert_eq(bus_certs_issue(s_dir, "cto_agent.2", "cto_agent"), 1);
    cr_assert_eq(bus_certs_revoke(s_dir, "cto_agent.2"), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/certs/public/cto_agent.2.cert", s_dir);
    cr_expect_neq(access(path, F_OK), 0, "still in the store");
    snprintf(path, sizeof(path), "%s/certs/private/cto_agent.2.cert_secret", s_dir);
    cr_expect_neq(access(path, F_OK), 0, "the secret is still usable");
    snprintf(path, sizeof(path), "%s/certs/revoked/cto_agent.2.cert", s_dir);
    cr_expect_eq(access(path, F_OK), 0);
    cr_expect_eq(bus_certs_revoke(s_dir, "cto_agent.2"), -1, "twice");
    cr_expect_eq(bus_certs_revoke(s_dir, "bus"), -1);
    cr_expect_eq(bus_certs_revoke(s_dir, "../x"), -1);
    /* issued again: a new key */
    cr_expect_eq(bus_certs_issue(s_dir, "cto_agent.2", "cto_agent"), 1);
}
