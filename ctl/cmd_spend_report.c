/*  cmd_spend_report.c - emadsctl spend --by agent|key|model|task|day|class
    [--since T] [--until T] [--csv]: spend charged in a time range, grouped,
    in one request to the ledger (spend_report, budgets/report.h).

    A step counts when its hold was charged: a commit's actual, or the whole
    hold of one that expired; steps still holding budget are not spend yet.
    T is a UTC date or time (2026-12-07, 2026-12-07T10:00, ...:30Z) or a
    duration back from now (90s, 30m, 12h, 7d).
*/
#define _GNU_SOURCE
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctlbus.h"
#include "ctl/ctlutil.h"

int ctl_parse_when(const char *s, int64_t now_ms, int64_t *out_ms)
{
    if (!s || !*s)
        return -1;
    size_t n = strlen(s);
    char unit = s[n - 1];
    if (strchr("smhd", unit) && n >= 2) { /* a duration back from now */
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        static const int64_t scale[] = {1000, 60000, 3600000, 86400000};
        int64_t k = scale[strchr("smhd", unit) - "smhd"];
        if (end != s + n - 1 || v < 0 || v > 3660LL * 86400000 / k)
            return -1;
        *out_ms = now_ms - v * k;
        return *out_ms >= 0 ? 0 : -1;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *fmts[] = {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ",
                          "%Y-%m-%dT%H:%M", "%Y-%m-%d"};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        memset(&tm, 0, sizeof tm);
        const char *e = strptime(s, fmts[i], &tm);
        if (e && !*e) {
            time_t t = timegm(&tm);
            if (t < 0)
                return -1;
            *out_ms = (int64_t)t * 1000;
            return 0;
        }
    }
    return -1;
}

int ctl_spend_report(ctl_opts_t *opts, const char *by, int64_t since_ms, int64_t until_ms, bool csv)
{
    ctl_conn_t conn;
    int rc = ctl_conn_open(opts, &conn, 2000, NULL);
    if (rc) {
        ctl_conn_close(&conn);
        return rc;
    }
    ev_t *b = proto_body("spend_report");
    ev_set_str(b, "by", by);
    if (since_ms > 0)
        ev_set_int(b, "since_ms", since_ms);
    if (until_ms >= 0)
        ev_set_int(b, "until_ms", until_ms);
    ev_t *rep = ctl_call(opts, &conn, "ledger", &b, 10000, "spend", &rc);
    if (rep && opts->json) {
        json_t *j = ctl_ev_json(rep);
        json_object_del(j, "v");
        json_object_del(j, "type");
        ctl_print_json(j);
    } else if (rep) {
        const ev_t *rows = ev_get(rep, "rows");
        char usd[32];
        if (csv) {
            printf("%s,steps", by);
            for (int d = 0; d < DIM_COUNT; d++)
                printf(",%s", dims_info[d].est_key); /* cost in USD: cost_usd */
            printf("\n");
        } else {
            ctl_printf("%-32s %8s", by, "STEPS");
            for (int d = 0; d < DIM_COUNT; d++)
                ctl_printf(" %14s", dims_is_money(d) ? "USD" : proto_dim_names[d]);
            ctl_printf("\n");
        }
        for (size_t i = 0; i <= ev_len(rows); i++) {
            bool total = i == ev_len(rows);
            const ev_t *r = total ? rep : ev_at(rows, i);
            const ev_t *spent = ev_get(r, total ? "total" : "spent");
            const char *group = total ? "TOTAL" : ev_get_str(r, "group", "");
            if (csv && total)
                break;
            if (csv) { /* RFC 4180: quote every group */
                printf("\"");
                for (const char *p = group; *p; p++)
                    printf(*p == '"' ? "\"\"" : "%c", *p);
                printf("\",%" PRId64, ev_get_int(r, "steps", 0));
            } else
                ctl_printf("%-32s %8" PRId64, group, ev_get_int(r, "steps", 0));
            for (int d = 0; d < DIM_COUNT; d++) {
                int64_t v = ev_get_int(spent, proto_dim_names[d], 0);
                if (dims_is_money(d))
                    ctl_fmt_usd(usd, sizeof usd, v);
                else
                    snprintf(usd, sizeof usd, "%" PRId64, v);
                if (csv)
                    printf(",%s", usd);
                else
                    ctl_printf(" %14s", usd);
            }
            if (csv)
                printf("\n");
            else
                ctl_printf("\n");
        }
    }
    ev_destroy(&rep);
    ctl_conn_close(&conn);
    return rc;
}
