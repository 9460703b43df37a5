/*  test_ledger_alerts.c - threshold crossings, the webhook (against a small
    in-process HTTP server) */
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgets/alerts.h"

Test(alerts, crossing_levels)
{
    cr_expect_eq(alerts_crossing(0, 79, 100, 0.8, 0.95), ALERT_NONE);
    cr_expect_eq(alerts_crossing(0, 80, 100, 0.8, 0.95), ALERT_WARN);
    cr_expect_eq(alerts_crossing(79, 94, 100, 0.8, 0.95), ALERT_WARN);
    cr_expect_eq(alerts_crossing(80, 94, 100, 0.8, 0.95), ALERT_NONE, "warn only once");
    cr_expect_eq(alerts_crossing(80, 95, 100, 0.8, 0.95), ALERT_CRITICAL);
    cr_expect_eq(alerts_crossing(10, 200, 100, 0.8, 0.95), ALERT_CRITICAL, "highest crossed");
    cr_expect_eq(alerts_crossing(96, 200, 100, 0.8, 0.95), ALERT_NONE, "critical only once");
    cr_expect_eq(alerts_crossing(0, 1000, -1, 0.8, 0.95), ALERT_NONE, "unlimited");
    cr_expect_eq(alerts_crossing(0, 5, 0, 0.8, 0.95), ALERT_NONE);
}

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_body[4096];
static int s_posts;

static enum MHD_Result s_hook(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state)
{
    (void)cls;
    (void)url;
    (void)version;
    if (!*state) {
        *state = (void *)1;
        return MHD_YES;
    }
    if (*size) {
        pthread_mutex_lock(&s_lock);
        size_t n = strlen(s_body);
        if (n + *size < sizeof s_body)
            memcpy(s_body + n, data, *size), s_body[n + *size] = 0;
        pthread_mutex_unlock(&s_lock);
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s_lock);
    if (!strcmp(method, "POST"))
        s_posts++;
    pthread_mutex_unlock(&s_lock);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* Start the webhook receiver; its URL into url. */
static struct MHD_Daemon *s_receiver(char *url, size_t len)
{
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, s_hook,
                                            NULL, MHD_OPTION_END);
    cr_assert_not_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(url, len, "http://127.0.0.1:%u/hook", info->port);
    return d;
}

Test(alerts, webhook_posts_slack_json)
{
    char url[64];
    struct MHD_Daemon *d = s_receiver(url, sizeof url);
    alerts_t *a = alerts_new(url, 2000);
    cr_assert_not_null(a);
    cr_expect_eq(alerts_post(a, "budget \"warn\": 80%"), 0);
    for (int i = 0; i < 200 && alerts_sent(a) < 1; i++)
        usleep(10000);
    cr_expect_eq(alerts_sent(a), 1);
    cr_expect_eq(alerts_failures(a), 0);
    pthread_mutex_lock(&s_lock);
    cr_expect_eq(s_posts, 1);
    cr_expect_str_eq(s_body, "{\"text\":\"budget \\\"warn\\\": 80%\"}");
    pthread_mutex_unlock(&s_lock);
    alerts_destroy(&a);
    cr_expect_null(a);
    MHD_stop_daemon(d);
}

Test(alerts, failing_webhook_never_blocks)
{
    /* a port where nothing listens: the POST fails, post() returns at once */
    alerts_t *a = alerts_new("http://127.0.0.1:1/hook", 500);
    cr_assert_not_null(a);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(alerts_post(a, "x"), 0);
    for (int i = 0; i < 300 && alerts_failures(a) < 5; i++)
        usleep(10000);
    cr_expect_eq(alerts_failures(a), 5);
    alerts_destroy(&a);
    alerts_t *none = alerts_new(NULL, 0);
    cr_assert_not_null(none);
    cr_expect_eq(alerts_post(none, "x"), -1, "no webhook configured");
    alerts_destroy(&none);
}

Test(alerts, dedup_window_per_key)
{
    alerts_t *a = alerts_new(NULL, 0);
    cr_assert_not_null(a);
    cr_expect(alerts_dedup(a, "g/2026-12-07|cost_uusd|denied", 0), "off by default");
    cr_expect(alerts_dedup(a, "g/2026-12-07|cost_uusd|denied", 1), "off by default");
    alerts_set_dedup(a, 1000);
    cr_expect(alerts_dedup(a, "k1", 10000), "the first of a key passes");
    cr_expect_not(alerts_dedup(a, "k1", 10500), "the same key within the window is held back");
    cr_expect(alerts_dedup(a, "k2", 10500), "another key passes");
    cr_expect_not(alerts_dedup(a, "k1", 10999));
    cr_expect(alerts_dedup(a, "k1", 11000), "the window is over: a new one starts");
    cr_expect_not(alerts_dedup(a, "k1", 11500));
    cr_expect(alerts_dedup(a, "k2", 11500));
    alerts_destroy(&a);
}

Test(alerts, webhook_gets_one_post_per_key_within_the_window)
{
    pthread_mutex_lock(&s_lock);
    s_posts = 0;
    s_body[0] = 0;
    pthread_mutex_unlock(&s_lock);
    char url[64];
    struct MHD_Daemon *d = s_receiver(url, sizeof url);
    alerts_t *a = alerts_new(url, 2000);
    cr_assert_not_null(a);
    alerts_set_dedup(a, 60000);
    /* 64 denials of 12 tasks on one global account and dimension, and 3 on
       an agent's: two posts */
    int queued = 0;
    for (int i = 0; i < 64; i++)
        if (alerts_dedup(a, "global//|cost_uusd|denied", 1000 + i))
            queued += alerts_post_severity(a, "info", "denied: global") == 0;
    for (int i = 0; i < 3; i++)
        if (alerts_dedup(a, "agent/t1/cto_agent|tokens|denied", 2000 + i))
            queued += alerts_post_severity(a, "info", "denied: agent") == 0;
    cr_expect_eq(queued, 2);
    for (int i = 0; i < 300 && alerts_sent(a) < 2; i++)
        usleep(10000);
    usleep(100000); /* nothing more arrives */
    pthread_mutex_lock(&s_lock);
    cr_expect_eq(s_posts, 2);
    cr_expect(strstr(s_body, "{\"text\":\"denied: global\",\"severity\":\"info\"}") != NULL, "%s",
              s_body);
    pthread_mutex_unlock(&s_lock);
    alerts_destroy(&a);
    MHD_stop_daemon(d);
}
