/*  alerts.h - budget alerts: threshold crossings and the webhook.

    alerts_crossing() is pure: given an account dimension's used amount
    before and after a commit and its limit, it says which configured
    fraction (warn, critical) the commit crossed. Used spend only grows, so
    each threshold of each account and dimension is crossed at most once.

    alerts_t posts Slack-compatible JSON ({"text": "..."}) to a webhook from
    its own thread, with a timeout, so that a slow or failing webhook never
    delays a grant: alerts_post() only queues (and drops, counting, when the
    queue is full). Failures are logged.
*/
#ifndef LEDGER_ALERTS_H_INCLUDED
#define LEDGER_ALERTS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef enum { ALERT_NONE = 0, ALERT_WARN = 1, ALERT_CRITICAL = 2 } alerts_level_t;

/* The highest level whose threshold (fraction * limit) used crossed going
   from before to after: before < threshold <= after. ALERT_NONE when the
   limit is unlimited (< 0) or 0. */
alerts_level_t alerts_crossing(int64_t before, int64_t after, int64_t limit, double warn,
                               double critical);

typedef struct _alerts_t alerts_t;

/* Start the webhook thread for url (http or https) with a per-POST timeout
   in ms (<= 0: 2000). url NULL or "" gives an alerts_t that posts nothing.
   NULL on failure. */
alerts_t *alerts_new(const char *url, int timeout_ms);
/* Stops the thread (waiting for at most one POST in flight). */
void alerts_destroy(alerts_t **self_p);
/* Queue text for the webhook (copied) as {"text": text}. Never blocks. 0,
   or -1 if dropped. */
int alerts_post(alerts_t *self, const char *text);
/* The same with a severity ("info", "warning", "critical"):
   {"text": text, "severity": severity}. */
int alerts_post_severity(alerts_t *self, const char *severity, const char *text);

/* Deduplication of webhook posts: one alert per key (the server uses
   account, dimension and kind) per window_ms (<= 0: off, the default). */
void alerts_set_dedup(alerts_t *self, int64_t window_ms);
/* True when an alert with key may be posted at now_ms: none with that key
   passed in the last window (that one starts a new window); false while a
   window is open. Caller's thread only. */
bool alerts_dedup(alerts_t *self, const char *key, int64_t now_ms);
/* POSTs that failed or were dropped, and that succeeded, so far. */
uint64_t alerts_failures(alerts_t *self);
uint64_t alerts_sent(alerts_t *self);

#endif
