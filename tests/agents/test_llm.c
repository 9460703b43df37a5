/*  test_llm.c - the LLM client's pure parts: request body, response parsing,
    error messages and back-off. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "agents/llm.h"
#include "proto/proto.h"

Test(llm, build_request)
{
    char *s = llm_build_request("gpt-x", "be brief", "the task", 812);
    cr_assert_not_null(s);
    json_t *j = json_loads(s, 0, NULL);
    cr_assert_not_null(j);
    cr_expect_str_eq(json_string_value(json_object_get(j, "model")), "gpt-x");
    cr_expect_eq(json_integer_value(json_object_get(j, "max_tokens")), 812);
    json_t *msgs = json_object_get(j, "messages");
    cr_assert_eq(json_array_size(msgs), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                     "the task");
    json_decref(j);
    free(s);
    s = llm_build_request("m", NULL, "quote \" and \\ and\nnewline", 5);
    j = json_loads(s, 0, NULL);
    cr_assert_not_null(j, "escaping is valid JSON");
    cr_expect_eq(json_array_size(json_object_get(j, "messages")), 1);
    json_decref(j);
    free(s);
}

Test(llm, parse_with_usage)
{
    const char *body = "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"gpt-x\","
                       "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                       "\"content\":\"hello\"},\"finish_reason\":\"stop\"}],"
                       "\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":34,"
                       "\"total_tokens\":154}}";
    llm_response_t r;
    char err[128];
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(r.content, "hello");
    cr_expect_str_eq(r.model, "gpt-x");
    cr_expect_str_eq(r.finish_reason, "stop");
    cr_expect(r.has_usage);
    cr_expect_eq(r.prompt_tokens, 120);
    cr_expect_eq(r.completion_tokens, 34);
    llm_response_clear(&r);
}

Test(llm, parse_without_or_with_broken_usage)
{
    const char *body = "{\"choices\":[{\"message\":{\"content\":\"hi\"}}]}";
    llm_response_t r;
    char err[128];
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage);
    cr_expect_eq(r.prompt_tokens, 0);
    llm_response_clear(&r);
    body = "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
           "\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":\"many\"}}";
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage, "nonsense usage is not trusted");
    llm_response_clear(&r);
}

/* Usage above the protocol's token maximum (2^62 tokens, or two counts
   whose sum passes it) is not trusted either: the agent estimates instead,
   so its commit stays in range. The maximum itself is still usage. */
Test(llm, parse_absurd_usage_is_not_trusted)
{
    static const char *const absurd[] = {
        "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":4611686018427387904}}",
        "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
        "\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":1}}",
        "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
        "\"usage\":{\"prompt_tokens\":600000000000,\"completion_tokens\":600000000000}}",
    };
    for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++) {
        llm_response_t r;
        char err[128];
        cr_assert_eq(llm_parse_response(absurd[i], strlen(absurd[i]), &r, err, sizeof err), 0);
        cr_expect(!r.has_usage, "case %zu: absurd usage is not trusted", i);
        llm_response_clear(&r);
    }
    const char *max = "{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                      "\"usage\":{\"prompt_tokens\":999999999999,\"completion_tokens\":1}}";
    llm_response_t r;
    char err[128];
    cr_assert_eq(llm_parse_response(max, strlen(max), &r, err, sizeof err), 0);
    cr_expect(r.has_usage);
    cr_expect_eq(r.prompt_tokens + r.completion_tokens, PROTO_MAX_TOKENS);
    llm_response_clear(&r);
}

Test(llm, parse_errors_are_reported)
{
    static const char *const bad[] = {
        "",
        "{\"id\": \"chatcmpl-broken\", \"choices\": [{\"message\": {\"role\": \"assist",
        "[1,2,3]",
        "{\"choices\":[]}",
        "{\"choices\":[{\"message\":{\"content\":42}}]}",
        "{\"object\":\"chat.completion\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llm_response_t r;
        char err[128] = "";
        cr_expect_eq(llm_parse_response(bad[i], strlen(bad[i]), &r, err, sizeof err), -1,
                     "case %zu", i);
        cr_expect(strlen(err) > 5, "case %zu has a reason", i);
        cr_expect_null(r.content);
    }
}

Test(llm, error_messages)
{
    char out[128];
    const char *e = "{\"error\":{\"message\":\"Incorrect API key provided\",\"code\":\"x\"}}";
    llm_error_message(e, strlen(e), out, sizeof out);
    cr_expect_str_eq(out, "Incorrect API key provided");
    e = "{\"error\":\"model not found\"}";
    llm_error_message(e, strlen(e), out, sizeof out);
    cr_expect_str_eq(out, "model not found");
    e = "Bad Gateway\nmore";
    llm_error_message(e, strlen(e), out, sizeof out);
    cr_expect_str_eq(out, "Bad Gateway");
    llm_error_message(NULL, 0, out, sizeof out);
    cr_expect_str_eq(out, "");
}

Test(llm, backoff_and_retryable)
{
    cr_expect_eq(llm_backoff_ms(1, 0), 100);
    cr_expect_eq(llm_backoff_ms(2, 0), 200);
    cr_expect_eq(llm_backoff_ms(3, 0), 400);
    cr_expect_eq(llm_backoff_ms(10, 0), 2000);
    cr_expect_eq(llm_backoff_ms(1, 3), 3000, "Retry-After wins when longer");
    cr_expect(llm_retryable_status(429));
    cr_expect(llm_retryable_status(503));
    cr_expect(!llm_retryable_status(401));
    cr_expect(!llm_retryable_status(404));
    cr_expect(!llm_retryable_status(200));
}

Test(llm, call_rejects_bad_requests)
{
    llm_t *l = llm_new();
    cr_assert_not_null(l);
    llm_request_t req = {.base_url = "http://127.0.0.1:1/v1",
                         .model = "m",
                         .user = "x",
                         .max_tokens = 0,
                         .timeout_ms = 100};
    llm_result_t res;
    cr_expect_eq(llm_call(l, &req, &res), -1);
    cr_expect_eq(res.status, LLM_ERR_INTERNAL);
    cr_expect_eq(res.attempts, 0, "no HTTP request without room for output");
    llm_result_clear(&res);
    llm_destroy(&l);
    cr_expect_null(l);
}

Test(llm, connection_refused_is_retried_inside_the_deadline)
{
    llm_t *l = llm_new();
    cr_assert_not_null(l);
    /* port 1 on loopback: nothing listens, the connection is refused at once */
    llm_request_t req = {.base_url = "http://127.0.0.1:1/v1",
                         .model = "m",
                         .user = "x",
                         .max_tokens = 10,
                         .timeout_ms = 10000,
                         .max_retries = 3};
    llm_result_t res;
    cr_expect_eq(llm_call(l, &req, &res), -1);
    cr_expect_eq(res.status, LLM_ERR_CONNECT);
    cr_expect_eq(res.attempts, 4, "the first try and 3 retries");
    cr_expect(strstr(res.error, "cannot reach provider"), "%s", res.error);
    llm_result_clear(&res);
    /* a deadline shorter than the first back-off allows no retry */
    req.timeout_ms = 120;
    cr_expect_eq(llm_call(l, &req, &res), -1);
    cr_expect_eq(res.attempts, 1);
    llm_result_clear(&res);
    llm_destroy(&l);
}
