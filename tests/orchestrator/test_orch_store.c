/*  test_orch_store.c - the orchestrator's task store and task classifier.

    The store: what is written is read back after the database is closed
    and reopened (as after a crash), upserts replace, lists filter and
    order, unfinished tasks are found, submit request ids map to their task;
    commits never checkpoint (the WAL grows past SQLite's threshold) and
    taskstore_idle does, after which the WAL is rewritten from its start; a
    batch whose transaction cannot open fails its commit.
    The classifier: keyword rules pick the class a user would expect, at
    word boundaries, with the documented fallback.
*/
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "orchestrator/classify.h"
#include "orchestrator/taskstore.h"

static char s_dir[] = "/tmp/emads-store-XXXXXX";
static char s_db[128];

static void s_setup(void)
{
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_db, sizeof s_db, "%s/tasks.db", s_dir);
}

static void s_teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    cr_expect_eq(system(cmd), 0);
}

static ev_t *s_task(const char *id, const char *rid, const char *state, int64_t created)
{
    ev_t *t = ev_new_map();
    ev_set_str(t, "task", id);
    if (rid)
        ev_set_str(t, "request_id", rid);
    ev_set_str(t, "state", state);
    ev_set_str(t, "class", "analysis");
    ev_set_str(t, "workflow", "emads_pr");
    ev_set_str(t, "text", "Should we migrate?");
    ev_set_int(t, "created_ms", created);
    ev_set_int(t, "updated_ms", created);
    return t;
}

TestSuite(taskstore, .init = s_setup, .fini = s_teardown);

Test(taskstore, survives_reopen)
{
    char err[256];
    taskstore_t *ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    cr_assert_eq(taskstore_begin(ts), 0);
    ev_t *t = s_task("t-000000000001", "req-1", "running", 1000);
    proto_amounts_t lim = {{10, -1, -1, 500000}};
    proto_set_amounts(t, "limits", &lim);
    cr_assert_eq(taskstore_put_task(ts, t), 0);
    ev_t *step = ev_new_map();
    ev_set_str(step, "step", "cto_analysis");
    ev_set_str(step, "state", "done");
    ev_set_int(step, "attempt", 1);
    ev_t *out = ev_set_map(step, "output");
    ev_set_str(out, "decision", "proceed");
    cr_assert_eq(taskstore_put_step(ts, "t-000000000001", 1, step), 0);
    ev_t *plan = ev_new_map();
    ev_set_bool(plan, "feasible", true);
    cr_assert_eq(taskstore_put_plan(ts, "t-000000000001", 0, 1001, plan), 0);
    cr_assert_eq(taskstore_commit(ts), 0);
    taskstore_destroy(&ts);
    cr_assert_null(ts);

    ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    ev_t *got = taskstore_get_task(ts, "t-000000000001");
    cr_assert_not_null(got);
    cr_expect_str_eq(ev_get_str(got, "state", ""), "running");
    cr_expect_str_eq(ev_get_str(got, "text", ""), "Should we migrate?");
    proto_amounts_t back;
    cr_assert_eq(proto_get_amounts(got, "limits", 0, &back), 0);
    cr_expect_eq(back.v[DIM_TOKENS], 10);
    cr_expect_eq(back.v[DIM_LATENCY_MS], -1);
    cr_expect_eq(back.v[DIM_COST_UUSD], 500000);
    cr_expect_eq(ev_get_int(got, "plans", 0), 1);
    const ev_t *steps = ev_get(got, "steps");
    cr_assert_eq(ev_len(steps), 1);
    cr_expect_str_eq(ev_get_str(ev_at(steps, 0), "step", ""), "cto_analysis");
    cr_expect_str_eq(ev_get_str(ev_get(ev_at(steps, 0), "output"), "decision", ""), "proceed");

    char id[65];
    cr_expect_eq(taskstore_find_request(ts, "req-1", id, sizeof id), 1);
    cr_expect_str_eq(id, "t-000000000001");
    cr_expect_eq(taskstore_find_request(ts, "req-2", id, sizeof id), 0);
    cr_expect_null(taskstore_get_task(ts, "t-nope"));

    ev_destroy(&got);
    ev_destroy(&t);
    ev_destroy(&step);
    ev_destroy(&plan);
    taskstore_destroy(&ts);
    taskstore_destroy(&ts); /* safe twice */
}

Test(taskstore, upsert_list_and_unfinished)
{
    char err[256];
    taskstore_t *ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    const char *states[] = {"done", "running", "queued", "failed", "budget_exhausted"};
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-00000000000%d", i);
        ev_t *t = s_task(id, NULL, states[i], 1000 + i);
        cr_assert_eq(taskstore_put_task(ts, t), 0);
        ev_destroy(&t);
    }
    /* an upsert replaces the row: t-...1 is done now */
    ev_t *t = s_task("t-000000000001", NULL, "done", 1001);
    ev_set_str(t, "reason", "finished");
    cr_assert_eq(taskstore_put_task(ts, t), 0);
    ev_destroy(&t);

    ev_t *all = taskstore_list(ts, NULL, 0);
    cr_assert_eq(ev_len(all), 5);
    cr_expect_str_eq(ev_get_str(ev_at(all, 0), "task", ""), "t-000000000004"); /* newest first */
    ev_destroy(&all);
    ev_t *done = taskstore_list(ts, "done", 10);
    cr_expect_eq(ev_len(done), 2);
    ev_destroy(&done);
    ev_t *two = taskstore_list(ts, NULL, 2);
    cr_expect_eq(ev_len(two), 2);
    ev_destroy(&two);

    ev_t *open = taskstore_unfinished(ts);
    cr_assert_eq(ev_len(open), 1);
    cr_expect_str_eq(ev_str(ev_at(open, 0)), "t-000000000002");
    ev_destroy(&open);

    ev_t *bad = ev_new_map(); /* no task id: refused */
    cr_expect_eq(taskstore_put_task(ts, bad), -1);
    ev_destroy(&bad);
    taskstore_destroy(&ts);
}

static long long s_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

Test(taskstore, checkpoints_only_when_idle)
{
    char err[256], wal[160], id[32], text[3000];
    snprintf(wal, sizeof wal, "%s-wal", s_db);
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    taskstore_t *ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    cr_expect_eq(taskstore_idle(ts), 0, "nothing to checkpoint yet");
    /* 600 commits of a task row with a 3 KB text: about 3700 WAL pages; an
       automatic checkpoint would have restarted the WAL at 1000 */
    for (int i = 0; i < 600; i++) {
        snprintf(id, sizeof id, "t-%012d", i);
        ev_t *t = s_task(id, NULL, "running", 1000 + i);
        ev_set_str(t, "text", text);
        cr_assert_eq(taskstore_begin(ts), 0);
        cr_assert_eq(taskstore_put_task(ts, t), 0);
        cr_assert_eq(taskstore_commit(ts), 0);
        ev_destroy(&t);
    }
    long long grown = s_size(wal);
    cr_expect_gt(grown, 3000LL * 4096, "no commit checkpointed: the WAL holds every page (%lld)",
                 grown);
    cr_assert_eq(taskstore_begin(ts), 0);
    cr_expect_eq(taskstore_idle(ts), 0, "no checkpoint inside a transaction");
    cr_assert_eq(taskstore_commit(ts), 0);
    cr_expect_eq(taskstore_idle(ts), 1);
    cr_expect_eq(taskstore_idle(ts), 0, "the WAL was copied back: nothing left");
    /* the next commits reuse the WAL from its start: it does not grow */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "u-%012d", i);
        ev_t *t = s_task(id, NULL, "done", 5000 + i);
        cr_assert_eq(taskstore_put_task(ts, t), 0);
        ev_destroy(&t);
    }
    cr_expect_eq(s_size(wal), grown, "WAL %lld, was %lld", s_size(wal), grown);
    taskstore_destroy(&ts);
    ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    ev_t *l = taskstore_list(ts, NULL, 1000);
    cr_expect_eq(ev_len(l), 620, "every task survives: %zu", ev_len(l));
    ev_destroy(&l);
    ev_t *got = taskstore_get_task(ts, "t-000000000599");
    cr_assert_not_null(got);
    cr_expect_eq(strlen(ev_get_str(got, "text", "")), sizeof text - 1);
    ev_destroy(&got);
    taskstore_destroy(&ts);
}

Test(taskstore, batch_without_a_transaction_fails_its_commit)
{
    char err[256];
    taskstore_t *ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    /* another writer holds the database: the batch cannot open its
       transaction (after the busy timeout) */
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(s_db, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(taskstore_begin(ts), 0, "a batch starts without SQL");
    ev_t *t = s_task("t-000000000001", "req-1", "running", 1000);
    cr_expect_eq(taskstore_put_task(ts, t), -1);
    cr_expect_eq(taskstore_commit(ts), -1, "the batch is not durable: its commit says so");
    ev_destroy(&t);
    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* the next batch is unaffected */
    cr_assert_eq(taskstore_begin(ts), 0);
    t = s_task("t-000000000002", "req-2", "running", 2000);
    cr_expect_eq(taskstore_put_task(ts, t), 0);
    cr_expect_eq(taskstore_commit(ts), 0);
    ev_destroy(&t);
    taskstore_destroy(&ts);
    ts = taskstore_new(s_db, err, sizeof err);
    cr_assert_not_null(ts, "%s", err);
    ev_t *got = taskstore_get_task(ts, "t-000000000001");
    cr_expect_null(got, "nothing of the failed batch was kept");
    ev_destroy(&got);
    got = taskstore_get_task(ts, "t-000000000002");
    cr_expect_not_null(got);
    ev_destroy(&got);
    taskstore_destroy(&ts);
}

Test(taskstore, bad_path_names_the_cause)
{
    char err[256] = "";
    taskstore_t *ts = taskstore_new("/nonexistent-dir/x/tasks.db", err, sizeof err);
    cr_expect_null(ts);
    cr_expect(strstr(err, "/nonexistent-dir") != NULL, "err: %s", err);
}

Test(taskstore, final_states)
{
    cr_expect(taskstore_state_final("done"));
    cr_expect(taskstore_state_final("budget_exhausted"));
    cr_expect(taskstore_state_final("cancelled"));
    cr_expect(!taskstore_state_final("running"));
    cr_expect(!taskstore_state_final(NULL));
}

/* ---- classifier ----------------------------------------------------------- */

static char *s_kw_simple[] = {"what is", "define", NULL};
static char *s_kw_analysis[] = {"analyze", "assess", "should we", "risk", NULL};
static char *s_kw_external[] = {"latest", "search", "news", "price", NULL};
static char *s_kw_comp[] = {"calculate", "how many", "sum", NULL};

static cfg_t *s_cfg(void)
{
    cfg_t *cfg = calloc(1, sizeof *cfg);
    cr_assert_not_null(cfg);
    const char *names[] = {"simple_query", "analysis", "external_data", "computation"};
    char **kws[] = {s_kw_simple, s_kw_analysis, s_kw_external, s_kw_comp};
    for (int i = 0; i < 4; i++) {
        snprintf(cfg->classes[i].name, sizeof cfg->classes[i].name, "%s", names[i]);
        cfg->classes[i].keywords = kws[i];
    }
    cfg->n_classes = 4;
    return cfg;
}

Test(classify, keywords_pick_the_class)
{
    cfg_t *cfg = s_cfg();
    int score;
    cr_expect_eq(classify_task(cfg, "What is a hold?", &score), 0);
    cr_expect_eq(score, 1);
    cr_expect_eq(classify_task(cfg, "Should we migrate billing? Assess the RISK.", &score), 1);
    cr_expect_eq(score, 3);
    cr_expect_eq(classify_task(cfg, "Search the latest news on GPU prices", NULL), 2);
    cr_expect_eq(classify_task(cfg, "Calculate how many servers we need", NULL), 3);
    free(cfg);
}

Test(classify, word_boundaries_and_fallback)
{
    cfg_t *cfg = s_cfg();
    int score = -1;
    /* "sum" matches "summary" (prefix) but not "assume" (inside a word) */
    cr_expect_eq(classify_task(cfg, "a summary", &score), 3);
    cr_expect_eq(classify_task(cfg, "we assume nothing", &score), 1); /* fallback: analysis */
    cr_expect_eq(score, 0);
    cr_expect_eq(classify_task(cfg, "", NULL), 1);
    cr_expect_eq(classify_task(cfg, NULL, NULL), 1);
    /* a tie goes to the class listed first */
    cr_expect_eq(classify_task(cfg, "latest risk", NULL), 1);
    cfg->n_classes = 0;
    cr_expect_eq(classify_task(cfg, "anything", NULL), -1);
    free(cfg);
}
