/*  alerts.c - threshold crossings and the webhook thread (see alerts.h).

    The webhook thread owns one curl easy handle, reused for every POST, and
    waits on a condition variable for queued texts. The queue is bounded
    (ALERTS_QUEUE); a burst beyond it is dropped and counted rather than
    allowed to grow memory or to slow the ledger down.
*/
#include "budgets/alerts.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define ALERTS_QUEUE 256

alerts_level_t alerts_crossing(int64_t before, int64_t after, int64_t limit, double warn,
                               double critical)
{
    if (limit <= 0 || after <= before)
        return ALERT_NONE;
    double c = critical * (double)limit, w = warn * (double)limit;
    if ((double)before < c && (double)after >= c)
        return ALERT_CRITICAL;
    if ((double)before < w && (double)after >= w)
        return ALERT_WARN;
    return ALERT_NONE;
}

struct _alerts_t {
    char *url;
    long timeout_ms;
    pthread_t thread;
    bool running, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *queue[ALERTS_QUEUE];
    size_t head, count;
    uint64_t failures, sent;
    /* deduplication (the caller's thread only) */
    int64_t dedup_ms;
    struct s_seen {
        char *key;
        int64_t at_ms;
    } * seen;
    size_t n_seen;
};

static size_t s_discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb;
}

/* POST body (the JSON built by alerts_post*) */
static void s_post(alerts_t *self, CURL *curl, const char *body)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, self->url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, self->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, self->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    bool ok = rc == CURLE_OK && status >= 200 && status < 300;
    if (!ok)
        log_warn("alert webhook failed: %s (HTTP %ld)",
                 rc == CURLE_OK ? "bad status" : curl_easy_strerror(rc), status);
    pthread_mutex_lock(&self->lock);
    if (ok)
        self->sent++;
    else
        self->failures++;
    pthread_mutex_unlock(&self->lock);
    curl_slist_free_all(hdrs);
}

static void *s_thread(void *arg)
{
    alerts_t *self = arg;
    CURL *curl = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&self->lock);
        while (!self->stop && self->count == 0)
            pthread_cond_wait(&self->cond, &self->lock);
        if (self->stop) {
            pthread_mutex_unlock(&self->lock);
            break;
        }
        char *text = self->queue[self->head];
        self->head = (self->head + 1) % ALERTS_QUEUE;
        self->count--;
        pthread_mutex_unlock(&self->lock);
        if (curl)
            s_post(self, curl, text);
        free(text);
    }
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

alerts_t *alerts_new(const char *url, int timeout_ms)
{
    alerts_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, NULL);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    if (url && *url) {
        self->url = strdup(url);
        if (!self->url || pthread_create(&self->thread, NULL, s_thread, self) != 0) {
            alerts_destroy(&self);
            return NULL;
        }
        self->running = true;
    }
    return self;
}

void alerts_destroy(alerts_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    alerts_t *self = *self_p;
    if (self->running) {
        pthread_mutex_lock(&self->lock);
        self->stop = true;
        pthread_cond_signal(&self->cond);
        pthread_mutex_unlock(&self->lock);
        pthread_join(self->thread, NULL);
    }
    for (size_t i = 0; i < self->count; i++)
        free(self->queue[(self->head + i) % ALERTS_QUEUE]);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    for (size_t i = 0; i < self->n_seen; i++)
        free(self->seen[i].key);
    free(self->seen);
    free(self->url);
    free(self);
    *self_p = NULL;
}

int alerts_post(alerts_t *self, const char *text)
{
    return alerts_post_severity(self, NULL, text);
}

int alerts_post_severity(alerts_t *self, const char *severity, const char *text)
{
    if (!self || !self->running || !text)
        return -1;
    json_t *j = severity ? json_pack("{s:s, s:s}", "text", text, "severity", severity)
                         : json_pack("{s:s}", "text", text);
    char *copy = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int rc = -1;
    pthread_mutex_lock(&self->lock);
    if (copy && self->count < ALERTS_QUEUE) {
        self->queue[(self->head + self->count) % ALERTS_QUEUE] = copy;
        self->count++;
        copy = NULL;
        rc = 0;
        pthread_cond_signal(&self->cond);
    } else
        self->failures++;
    pthread_mutex_unlock(&self->lock);
    free(copy);
    return rc;
}

uint64_t alerts_failures(alerts_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t n = self->failures;
    pthread_mutex_unlock(&self->lock);
    return n;
}

uint64_t alerts_sent(alerts_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t n = self->sent;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void alerts_set_dedup(alerts_t *self, int64_t window_ms)
{
    if (self)
        self->dedup_ms = window_ms > 0 ? window_ms : 0;
}

/* At most this many keys are remembered; past it, alerts pass (an alert is
   never held back for want of memory). */
#define ALERTS_SEEN_MAX 4096

bool alerts_dedup(alerts_t *self, const char *key, int64_t now_ms)
{
    if (!self || !key || self->dedup_ms <= 0)
        return true;
    size_t keep = 0;
    bool pass = true, found = false;
    for (size_t i = 0; i < self->n_seen; i++) {
        struct s_seen *s = &self->seen[i];
        if (strcmp(s->key, key) == 0) {
            found = true;
            if (now_ms - s->at_ms < self->dedup_ms && now_ms >= s->at_ms)
                pass = false;
            else
                s->at_ms = now_ms; /* a new window starts with this alert */
        } else if (now_ms - s->at_ms >= self->dedup_ms || now_ms < s->at_ms) {
            free(s->key); /* its window is over: forget it */
            continue;
        }
        self->seen[keep++] = *s;
    }
    self->n_seen = keep;
    if (!found && self->n_seen < ALERTS_SEEN_MAX) {
        struct s_seen *v = realloc(self->seen, (self->n_seen + 1) * sizeof *v);
        char *k = strdup(key);
        if (v)
            self->seen = v;
        if (v && k)
            self->seen[self->n_seen++] = (struct s_seen){k, now_ms};
        else
            free(k);
    }
    return pass;
}
