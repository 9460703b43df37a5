/*  metrics_bench.c - the cost of the metrics registry on a daemon's hot
    path and of a scrape: ns per labelled counter addition and histogram
    observation (the label lookup included), and the time to render a
    registry shaped like a busy ledger's (16 agents x 4 models x 3 paths
    spend series per dimension, plus histograms) as Prometheus text.
    Prints key=value lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/metrics.h"

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    metrics_t *r = metrics_new("bench");
    metric_t *spend[DIM_COUNT];
    for (int d = 0; d < DIM_COUNT; d++) {
        char name[64];
        snprintf(name, sizeof name, "emads_spend_%s_total", metrics_dim_unit[d]);
        spend[d] = metrics_counter(r, name, "spend", "agent,model,path", metrics_dim_scale[d]);
    }
    metric_t *lat = metrics_histogram(r, "emads_step_duration_seconds", "steps", "agent,path",
                                      metrics_buckets_slow_s, metrics_buckets_slow_n);
    if (!r || !lat)
        return 1;
    char agents[16][16], models[4][16];
    const char *paths[3] = {"llm", "local", "tool"};
    for (int i = 0; i < 16; i++)
        snprintf(agents[i], sizeof agents[i], "agent_%02d", i);
    for (int i = 0; i < 4; i++)
        snprintf(models[i], sizeof models[i], "model-%d", i);
    /* fill every series once */
    for (int a = 0; a < 16; a++)
        for (int m = 0; m < 4; m++)
            for (int p = 0; p < 3; p++) {
                for (int d = 0; d < DIM_COUNT; d++)
                    metric_add(spend[d], METRICS_LABELS(agents[a], models[m], paths[p]), 1);
                metric_observe(lat, METRICS_LABELS(agents[a], paths[p]), 0.5);
            }
    const long n = 2000000;
    double t0 = s_now();
    for (long i = 0; i < n; i++)
        metric_add(spend[DIMS_MONEY],
                   METRICS_LABELS(agents[i & 15], models[(i >> 4) & 3], paths[i % 3]), 125);
    double add_ns = (s_now() - t0) / (double)n * 1e9;
    t0 = s_now();
    for (long i = 0; i < n; i++)
        metric_observe(lat, METRICS_LABELS(agents[i & 15], paths[i % 3]), (double)(i % 100) / 10);
    double obs_ns = (s_now() - t0) / (double)n * 1e9;
    const int renders = 200;
    size_t bytes = 0;
    t0 = s_now();
    for (int i = 0; i < renders; i++) {
        char *text = metrics_render(r);
        if (!text)
            return 1;
        bytes = strlen(text);
        free(text);
    }
    double render_us = (s_now() - t0) / renders * 1e6;
    printf("metrics_series=%d\n", 16 * 4 * 3 * DIM_COUNT + 16 * 3);
    printf("metrics_add_ns=%.0f\n", add_ns);
    printf("metrics_observe_ns=%.0f\n", obs_ns);
    printf("metrics_render_us=%.0f\n", render_us);
    printf("metrics_render_bytes=%zu\n", bytes);
    metrics_destroy(&r);
    return 0;
}
