/*  test_metrics.c - the metrics registry (common/metrics.c): the text
    format, labels and their escaping, exact scaled values, saturation,
    the series limit, histograms, listen addresses, and the endpoint itself
    (an in-process HTTP thread on a free port, read with a plain socket). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/metrics.h"

static char *s_text(metrics_t *m)
{
    char *t = metrics_render(m);
    cr_assert_not_null(t);
    return t;
}

Test(metrics, counters_gauges_help_type)
{
    metrics_t *m = metrics_new("ledger");
    cr_assert_not_null(m);
    metric_t *c = metrics_counter(m, "emads_x_total", "things done", "agent,model", 1);
    metric_t *g = metrics_gauge(m, "emads_x_open", "things open", NULL, 1);
    cr_assert(c && g);
    metric_add(c, METRICS_LABELS("cto_agent", "gpt-4o"), 3);
    metric_add(c, METRICS_LABELS("cto_agent", "gpt-4o"), 2);
    metric_add(c, METRICS_LABELS("coo_agent", NULL), 1);
    metric_add(c, METRICS_LABELS("coo_agent", NULL), -7); /* counters never go down */
    metric_set(g, NULL, 4);
    metric_add(g, NULL, -1);
    char *t = s_text(m);
    cr_expect(strstr(t, "# HELP emads_x_total things done\n# TYPE emads_x_total counter\n"), "%s",
              t);
    cr_expect(strstr(t, "emads_x_total{agent=\"cto_agent\",model=\"gpt-4o\"} 5\n"), "%s", t);
    cr_expect(strstr(t, "emads_x_total{agent=\"coo_agent\",model=\"\"} 1\n"), "%s", t);
    cr_expect(strstr(t, "# TYPE emads_x_open gauge\nemads_x_open 3\n"), "%s", t);
    cr_expect(strstr(t, "emads_build_info{daemon=\"ledger\"} 1\n"), "%s", t);
    cr_expect_eq(metric_value(c, METRICS_LABELS("cto_agent", "gpt-4o")), 5);
    free(t);
    metrics_destroy(&m);
    cr_expect_null(m);
    metrics_destroy(&m); /* twice is fine */
}

Test(metrics, scaled_values_are_exact)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *usd = metrics_counter(m, "emads_spend_usd_total", "dollars", "agent", 1000000);
    metric_t *sec = metrics_counter(m, "emads_x_seconds_total", "seconds", NULL, 1000);
    metric_t *neg = metrics_gauge(m, "emads_x_usd", "dollars", NULL, 1000000);
    /* 0.1 + 0.2 in micro-USD: exactly 0.3, unlike in floating point */
    metric_add(usd, METRICS_LABELS("a"), 100000);
    metric_add(usd, METRICS_LABELS("a"), 200000);
    metric_add(usd, METRICS_LABELS("b"), 12345678901);
    metric_add(sec, NULL, 1500);
    metric_set(neg, NULL, -2500001);
    char *t = s_text(m);
    cr_expect(strstr(t, "emads_spend_usd_total{agent=\"a\"} 0.300000\n"), "%s", t);
    cr_expect(strstr(t, "emads_spend_usd_total{agent=\"b\"} 12345.678901\n"), "%s", t);
    cr_expect(strstr(t, "emads_x_seconds_total 1.500\n"), "%s", t);
    cr_expect(strstr(t, "emads_x_usd -2.500001\n"), "%s", t);
    free(t);
    metrics_destroy(&m);
}

Test(metrics, saturates_instead_of_wrapping)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *c = metrics_counter(m, "emads_big_total", "big", NULL, 1);
    metric_add(c, NULL, INT64_MAX - 1);
    metric_add(c, NULL, 10);
    metric_add(c, NULL, INT64_MAX);
    cr_expect_eq(metric_value(c, NULL), INT64_MAX);
    metrics_destroy(&m);
}

Test(metrics, label_values_escaped)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *c = metrics_counter(m, "emads_e_total", "a \\ help\nline", "agent", 1);
    metric_add(c, METRICS_LABELS("we\"ird\\na\nme"), 1);
    char *t = s_text(m);
    cr_expect(strstr(t, "# HELP emads_e_total a \\\\ help\\nline\n"), "%s", t);
    cr_expect(strstr(t, "emads_e_total{agent=\"we\\\"ird\\\\na\\nme\"} 1\n"), "%s", t);
    free(t);
    metrics_destroy(&m);
}

Test(metrics, histogram)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *h = metrics_histogram(m, "emads_d_seconds", "durations", "agent",
                                    metrics_buckets_fast_s, metrics_buckets_fast_n);
    cr_assert_not_null(h);
    metric_observe(h, METRICS_LABELS("x"), 0.00015); /* le 0.00025 */
    metric_observe(h, METRICS_LABELS("x"), 2.0);     /* only +Inf */
    char *t = s_text(m);
    cr_expect(strstr(t, "# TYPE emads_d_seconds histogram\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_bucket{agent=\"x\",le=\"0.0001\"} 0\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_bucket{agent=\"x\",le=\"0.00025\"} 1\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_bucket{agent=\"x\",le=\"1\"} 1\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_bucket{agent=\"x\",le=\"+Inf\"} 2\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_sum{agent=\"x\"} 2.00015\n"), "%s", t);
    cr_expect(strstr(t, "emads_d_seconds_count{agent=\"x\"} 2\n"), "%s", t);
    free(t);
    metrics_destroy(&m);
}

Test(metrics, series_limit_counts_drops)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *c = metrics_counter(m, "emads_many_total", "many", "id", 1);
    char id[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 5; i++) {
        snprintf(id, sizeof id, "%d", i);
        metric_add(c, METRICS_LABELS(id), 1);
    }
    cr_expect_eq(metric_value(c, METRICS_LABELS("0")), 1);
    snprintf(id, sizeof id, "%d", METRICS_MAX_SERIES);
    cr_expect_eq(metric_value(c, METRICS_LABELS(id)), 0, "beyond the limit: not stored");
    char *t = s_text(m);
    cr_expect(strstr(t, "emads_metrics_series_dropped_total{metric=\"emads_many_total\"} 5\n"),
              "%s", t);
    free(t);
    metrics_destroy(&m);
}

Test(metrics, registration_rules)
{
    metrics_t *m = metrics_new(NULL);
    metric_t *c = metrics_counter(m, "emads_r_total", "r", "agent", 1);
    cr_assert_not_null(c);
    cr_expect_eq(metrics_counter(m, "emads_r_total", "again", "agent", 1), c, "same family");
    cr_expect_null(metrics_gauge(m, "emads_r_total", "r", "agent", 1), "other type");
    cr_expect_null(metrics_counter(m, "emads_r_total", "r", "model", 1), "other labels");
    cr_expect_null(metrics_counter(m, "9bad", "r", NULL, 1), "bad name");
    cr_expect_null(metrics_counter(m, "emads_l_total", "r", "a-b", 1), "bad label");
    cr_expect_null(metrics_counter(m, "emads_l_total", "r", "le", 1), "reserved label");
    cr_expect_null(metrics_counter(m, "emads_s_total", "r", NULL, 0), "scale 0");
    const double down[] = {2, 1};
    cr_expect_null(metrics_histogram(m, "emads_h", "h", NULL, down, 2), "bounds not ascending");
    metrics_destroy(&m);
}

Test(metrics, listen_addresses)
{
    char err[200];
    cr_expect_eq(metrics_listen_check("127.0.0.1:9464", err, sizeof err), 0);
    cr_expect_eq(metrics_listen_check("127.0.0.1:0", err, sizeof err), 0);
    cr_expect_eq(metrics_listen_check("[::1]:9464", err, sizeof err), 0);
    cr_expect_eq(metrics_listen_check("localhost:1", err, sizeof err), 0);
    cr_expect_eq(metrics_listen_check("127.0.0.1:65536", err, sizeof err), -1);
    cr_expect(strstr(err, "0..65535"), "%s", err);
    cr_expect_eq(metrics_listen_check("127.0.0.1", err, sizeof err), -1);
    cr_expect_eq(metrics_listen_check("example.org:80", err, sizeof err), -1);
    cr_expect(strstr(err, "numeric"), "%s", err);
    cr_expect_eq(metrics_listen_check("[::1:80", err, sizeof err), -1);
    cr_expect_eq(metrics_listen_check("127.0.0.1:-1", err, sizeof err), -1);
}

/* GET path from host:port over a plain socket; the whole response. */
static char *s_get(const char *addr, const char *path)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    cr_assert_not_null(colon);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    cr_assert_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1, "%s", addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect %s", addr);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    ssize_t r;
    while (len + 1 < cap && (r = read(fd, buf + len, cap - len - 1)) > 0)
        len += (size_t)r;
    close(fd);
    return buf;
}

Test(metrics, serves_on_a_free_port_and_writes_its_address)
{
    char dir[] = "/tmp/emads-metrics-test.XXXXXX", err[256], addr[128] = "";
    cr_assert_not_null(mkdtemp(dir));
    metrics_t *m = metrics_new("bus");
    metric_add(metrics_counter(m, "emads_x_total", "x", "agent", 1), METRICS_LABELS("a"), 7);
    cr_assert_eq(metrics_serve_daemon(m, "127.0.0.1:0", dir, "emads-bus", err, sizeof err), 0, "%s",
                 err);
    char file[256];
    snprintf(file, sizeof file, "%s/metrics/emads-bus.%ld.addr", dir, (long)getpid());
    FILE *f = fopen(file, "r");
    cr_assert_not_null(f, "no address file %s", file);
    cr_assert_not_null(fgets(addr, sizeof addr, f));
    fclose(f);
    addr[strcspn(addr, "\n")] = 0;
    cr_expect_str_eq(addr, metrics_address(m));
    cr_expect(strncmp(addr, "127.0.0.1:", 10) == 0 && atoi(addr + 10) > 0, "%s", addr);
    char *ok = s_get(addr, "/metrics");
    cr_expect(strstr(ok, "HTTP/1.0 200") || strstr(ok, "HTTP/1.1 200"), "%s", ok);
    cr_expect(strstr(ok, "text/plain; version=0.0.4"), "%s", ok);
    cr_expect(strstr(ok, "\r\n\r\n# HELP "), "%s", ok);
    cr_expect(strstr(ok, "emads_x_total{agent=\"a\"} 7\n"), "%s", ok);
    free(ok);
    char *nf = s_get(addr, "/other");
    cr_expect(strstr(nf, " 404 "), "%s", nf);
    free(nf);
    cr_expect_eq(metrics_serve(m, "127.0.0.1:0", NULL, err, sizeof err), -1, "serving twice");
    metrics_t *other = metrics_new(NULL);
    cr_expect_eq(metrics_serve(other, addr, NULL, err, sizeof err), -1, "port in use");
    cr_expect(strstr(err, "cannot listen on"), "%s", err);
    metrics_destroy(&other);
    metrics_destroy(&m);
    cr_expect_eq(access(file, F_OK), -1, "the address file is removed on destroy");
    char sub[256];
    snprintf(sub, sizeof sub, "%s/metrics", dir);
    rmdir(sub);
    rmdir(dir);
}
