/*  test_gateway.c - the gateway's pure helpers (prompt estimate, output
    limit, what a budget affords, usage of a response) and its key store. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tokens.h"
#include "gateway/gateway.h"
#include "common/keys.h"

static json_t *J(const char *s)
{
    json_t *j = json_loads(s, 0, NULL);
    cr_assert_not_null(j, "bad test JSON: %s", s);
    return j;
}

static cfg_model_t s_mini = {.name = "gpt-4o-mini",
                             .input_uusd_per_mtok = 150000,
                             .output_uusd_per_mtok = 600000,
                             .context_tokens = 128000};

Test(gateway, prompt_tokens_counts_every_message_and_part)
{
    json_t *one = J("{\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}");
    int64_t n1 = gw_prompt_tokens(one, GW_API_OPENAI);
    cr_expect_eq(n1, TOKENS_REPLY_PRIME + TOKENS_PER_MESSAGE + tokens_estimate_str("hello there"));
    json_t *parts = J("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                      "\"text\":\"hello there\"}]}]}");
    cr_expect_eq(gw_prompt_tokens(parts, GW_API_OPENAI), n1);
    json_t *sys = J("{\"system\":\"be brief and exact\",\"messages\":[{\"role\":\"user\","
                    "\"content\":\"hello there\"}]}");
    cr_expect_eq(gw_prompt_tokens(sys, GW_API_ANTHROPIC),
                 n1 + TOKENS_PER_MESSAGE + tokens_estimate_str("be brief and exact"));
    json_t *tools = J("{\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}],"
                      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\"}}]}");
    cr_expect_gt(gw_prompt_tokens(tools, GW_API_OPENAI), n1, "tools count in the prompt");
    json_t *none = J("{\"messages\":\"not an array\"}");
    cr_expect_eq(gw_prompt_tokens(none, GW_API_OPENAI), TOKENS_REPLY_PRIME);
    json_decref(one);
    json_decref(parts);
    json_decref(sys);
    json_decref(tools);
    json_decref(none);
}

Test(gateway, request_limit)
{
    json_t *a = J("{\"max_tokens\": 300}");
    json_t *b = J("{\"max_completion_tokens\": 200, \"max_tokens\": 300}");
    json_t *c = J("{}");
    json_t *d = J("{\"max_tokens\": -5}");
    json_t *e = J("{\"max_tokens\": \"100\"}");
    cr_expect_eq(gw_request_limit(a), 300);
    cr_expect_eq(gw_request_limit(b), 200, "max_completion_tokens wins");
    cr_expect_eq(gw_request_limit(c), -1);
    cr_expect_eq(gw_request_limit(d), -1);
    cr_expect_eq(gw_request_limit(e), -1);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
    json_decref(e);
}

Test(gateway, affordable_output)
{
    /* tokens: prompt 100 of 400 leaves 300 */
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 4096, 400, -1), 300);
    /* never above what was asked */
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 50, 400, -1), 50);
    /* cost: 100 in = 15 uusd; 1000 uusd buys floor(985 / 0.6) = 1641 out */
    int64_t n = gw_affordable_output(&s_mini, 100, 4096, -1, 1000);
    cr_expect_leq(cfg_model_cost(&s_mini, 100, n), 1000);
    cr_expect_gt(cfg_model_cost(&s_mini, 100, n + 1), 1000, "the largest that fits");
    /* nothing fits */
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 4096, 100, -1), 0);
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 4096, -1, 10), 0);
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 4096, 50, -1), 0);
    /* both limits: the tighter wins */
    cr_expect_eq(gw_affordable_output(&s_mini, 100, 4096, 200, 1000000), 100);
}

Test(gateway, response_usage)
{
    int64_t in = -1, out = -1;
    bool tools = true;
    json_t *o = J("{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                  "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9}}");
    cr_expect_eq(gw_response_usage(o, GW_API_OPENAI, &in, &out, &tools), 0);
    cr_expect(in == 7 && out == 9 && !tools);
    json_t *t = J("{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\"},{\"id\":\"b\"}]}}],"
                  "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9}}");
    cr_expect_eq(gw_response_usage(t, GW_API_OPENAI, &in, &out, &tools), 0);
    cr_expect(tools, "tool calls seen");
    json_t *a = J("{\"content\":[{\"type\":\"tool_use\"}],"
                  "\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}");
    cr_expect_eq(gw_response_usage(a, GW_API_ANTHROPIC, &in, &out, &tools), 0);
    cr_expect(in == 3 && out == 4 && tools);
    json_t *none = J("{\"choices\":[]}");
    cr_expect_eq(gw_response_usage(none, GW_API_OPENAI, &in, &out, &tools), -1);
    json_t *neg = J("{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":9}}");
    cr_expect_eq(gw_response_usage(neg, GW_API_OPENAI, &in, &out, &tools), -1, "hostile usage");
    json_t *huge = J("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":9000000000000}}");
    cr_expect_eq(gw_response_usage(huge, GW_API_OPENAI, &in, &out, &tools), -1, "absurd usage");
    json_decref(o);
    json_decref(t);
    json_decref(a);
    json_decref(none);
    json_decref(neg);
    json_decref(huge);
}

static void s_tmp(char *path, size_t n)
{
    char dir[] = "/tmp/emads-keys-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, n, "%s/gateway.keys", dir);
}

/* Remove the store, its lock and its folder. */
static void s_rm(const char *path)
{
    char p[300];
    unlink(path);
    snprintf(p, sizeof p, "%s.lock", path);
    unlink(p);
    snprintf(p, sizeof p, "%s", path);
    *strrchr(p, '/') = '\0';
    rmdir(p);
}

Test(keys, issue_find_revoke)
{
    char path[256], secret[KEYS_SECRET_LEN + 1], err[256];
    s_tmp(path, sizeof path);
    cr_assert_eq(
        keys_issue(path, "app", "cto_agent", 2500000, "day", 1000, secret, err, sizeof err), 0,
        "%s", err);
    cr_expect_eq(strlen(secret), KEYS_SECRET_LEN);
    cr_expect_eq(strncmp(secret, "emk-", 4), 0);
    /* stored hashed, 0600 */
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = '\0';
    fclose(f);
    cr_expect_null(strstr(buf, secret + 4), "the secret is in the file");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);

    keys_t k;
    cr_assert_eq(keys_load(path, &k, err, sizeof err), 0, "%s", err);
    const keys_entry_t *e = keys_find(&k, secret);
    cr_assert_not_null(e);
    cr_expect_str_eq(e->principal, "cto_agent");
    cr_expect_eq(e->max_cost_uusd, 2500000);
    secret[10] ^= 1;
    cr_expect_null(keys_find(&k, secret), "a different key matched");
    secret[10] ^= 1;
    cr_expect_null(keys_find(&k, "emk-short"));
    keys_free(&k);

    cr_expect_neq(keys_issue(path, "app", "coo_agent", -1, "day", 2000, secret, err, sizeof err), 0,
                  "a name was issued twice");
    cr_assert_eq(keys_revoke(path, "app", 3000, err, sizeof err), 0, "%s", err);
    cr_expect_neq(keys_revoke(path, "app", 4000, err, sizeof err), 0, "revoked twice");
    cr_expect_neq(keys_revoke(path, "nope", 4000, err, sizeof err), 0);
    cr_assert_eq(keys_load(path, &k, err, sizeof err), 0, "%s", err);
    cr_expect_null(keys_find(&k, secret), "a revoked key still works");
    cr_expect_eq(k.items[0].revoked_ms, 3000);
    keys_free(&k);
    cr_expect_neq(keys_issue(path, "app", "cto_agent", -1, "day", 5000, secret, err, sizeof err), 0,
                  "a revoked name was reused");
    s_rm(path);
}

Test(keys, malformed_store_is_refused_with_its_line)
{
    char path[256], err[256];
    s_tmp(path, sizeof path);
    FILE *f = fopen(path, "w");
    fprintf(f, "# comment\nname cto_agent deadbeef -1 day 0 0\n");
    fclose(f);
    keys_t k;
    cr_expect_eq(keys_load(path, &k, err, sizeof err), -1);
    cr_expect_not_null(strstr(err, ":2:"), "error names the line: %s", err);
    cr_expect_eq(k.count, 0);
    char missing[300];
    snprintf(missing, sizeof missing, "%s.none", path);
    cr_expect_eq(keys_load(missing, &k, err, sizeof err), 0, "a missing store is empty");
    cr_expect_eq(k.count, 0);
    cr_expect(keys_name_ok("a-b_9"));
    cr_expect(!keys_name_ok(""));
    cr_expect(!keys_name_ok("has space"));
    cr_expect(!keys_name_ok("x/y"));
    s_rm(path);
}
