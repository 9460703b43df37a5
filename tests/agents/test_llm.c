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
    cr_expect_eq(r.prompt_tokens + r.completion_tokens, dims_info[DIM_TOKENS].wire_max);
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

Test(llm, body_follows_the_provider_and_model)
{
    llm_request_t req = {.model = "o3",
                         .system = "sys",
                         .user = "u",
                         .max_tokens = 900,
                         .output_limit_param = "max_completion_tokens",
                         .stream = true};
    char *s = llm_build_body(&req);
    cr_assert_not_null(s);
    cr_expect(strstr(s, "\"max_completion_tokens\":900"), "%s", s);
    cr_expect_null(strstr(s, "\"max_tokens\""), "%s", s);
    cr_expect(strstr(s, "\"stream_options\":{\"include_usage\":true}"), "%s", s);
    cr_expect(strstr(s, "{\"role\":\"system\",\"content\":\"sys\"}"), "%s", s);
    free(s);
    req.api = LLM_API_ANTHROPIC;
    s = llm_build_body(&req);
    cr_expect(strstr(s, "\"max_tokens\":900"), "Anthropic always says max_tokens: %s", s);
    cr_expect(strstr(s, "\"system\":\"sys\""), "%s", s);
    cr_expect_null(strstr(s, "\"role\":\"system\""), "%s", s);
    cr_expect_null(strstr(s, "stream_options"), "%s", s);
    free(s);
}

Test(llm, refusal_cached_tokens_and_finish_reasons)
{
    const char *body =
        "{\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"message\":{\"content\":null,"
        "\"refusal\":\"I can't help with that.\"},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":8,"
        "\"prompt_tokens_details\":{\"cached_tokens\":64}}}";
    llm_response_t r;
    char err[128];
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_expect_null(r.content);
    cr_expect_str_eq(r.refusal, "I can't help with that.");
    cr_expect_str_eq(r.model, "gpt-4o-2024-08-06");
    cr_expect(r.has_usage);
    cr_expect_eq(r.cached_tokens, 64);
    cr_expect_eq(llm_answer_kind(&r), LLM_ANSWER_REFUSED);
    llm_response_clear(&r);

    llm_response_t t = {.content = (char *)"{\"deci", .finish_reason = "length"};
    cr_expect_eq(llm_answer_kind(&t), LLM_ANSWER_TRUNCATED);
    llm_response_t e = {.content = (char *)"  \n", .finish_reason = "stop"};
    cr_expect_eq(llm_answer_kind(&e), LLM_ANSWER_EMPTY);
    llm_response_t ok = {.content = (char *)"{}", .finish_reason = "end_turn"};
    cr_expect_eq(llm_answer_kind(&ok), LLM_ANSWER_OK);
    llm_response_t mt = {.content = (char *)"{}", .finish_reason = "max_tokens"};
    cr_expect_eq(llm_answer_kind(&mt), LLM_ANSWER_TRUNCATED);
    cr_expect_str_eq(llm_answer_name(LLM_ANSWER_REFUSED), "refused");

    /* absurd counts are not believed: usage treated as missing */
    body = "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":"
           "9223372036854775807,\"completion_tokens\":9223372036854775807}}";
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage);
    llm_response_clear(&r);
    body = "{\"content\":[],\"usage\":{\"input_tokens\":1,\"cache_read_input_tokens\":"
           "4611686018427387904,\"output_tokens\":1}}";
    cr_assert_eq(llm_parse_anthropic(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage && !r.has_input);
    llm_response_clear(&r);
    /* each count in range, their sum past dims_info[DIM_TOKENS].wire_max: not believed */
    body = "{\"content\":[],\"usage\":{\"input_tokens\":600000000000,"
           "\"cache_read_input_tokens\":600000000000,\"output_tokens\":1}}";
    cr_assert_eq(llm_parse_anthropic(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage && !r.has_input);
    llm_response_clear(&r);
    body = "{\"content\":[],\"usage\":{\"input_tokens\":999999999999,\"output_tokens\":2}}";
    cr_assert_eq(llm_parse_anthropic(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(r.has_input && !r.has_usage, "input + output past the maximum");
    llm_response_clear(&r);

    /* cached above the prompt is nonsense: usage not trusted */
    body = "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":10,"
           "\"completion_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":11}}}";
    cr_assert_eq(llm_parse_response(body, strlen(body), &r, err, sizeof err), 0);
    cr_expect(!r.has_usage);
    llm_response_clear(&r);
}

Test(llm, anthropic_message)
{
    const char *body =
        "{\"type\":\"message\",\"model\":\"claude-x\",\"content\":[{\"type\":\"text\","
        "\"text\":\"hel\"},{\"type\":\"tool_use\",\"id\":\"t\"},{\"type\":\"text\","
        "\"text\":\"lo\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":"
        "300,\"cache_read_input_tokens\":600,\"cache_creation_input_tokens\":100,"
        "\"output_tokens\":100}}";
    llm_response_t r;
    char err[128];
    cr_assert_eq(llm_parse_anthropic(body, strlen(body), &r, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(r.content, "hello");
    cr_expect_str_eq(r.model, "claude-x");
    cr_expect_str_eq(r.finish_reason, "end_turn");
    cr_expect(r.has_usage);
    cr_expect_eq(r.prompt_tokens, 1000, "input + cache reads + cache writes");
    cr_expect_eq(r.cached_tokens, 600);
    cr_expect_eq(r.completion_tokens, 100);
    llm_response_clear(&r);
    const char *bad = "{\"type\":\"message\",\"content\":\"not blocks\"}";
    cr_expect_eq(llm_parse_anthropic(bad, strlen(bad), &r, err, sizeof err), -1);
    cr_expect_null(r.content);
}

/* Feed a stream in pieces of n bytes. */
static int s_feed(llm_stream_t *s, const char *data, size_t n)
{
    int rc = 0;
    for (size_t off = 0; off < strlen(data); off += n) {
        size_t k = strlen(data) - off < n ? strlen(data) - off : n;
        rc |= llm_stream_feed(s, data + off, k);
    }
    return rc;
}

Test(llm, openai_stream_in_any_pieces)
{
    const char *sse =
        "data: "
        "{\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"delta\":{\"content\":\"{\\\"a\"}}]}\n\n"
        ": a comment\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\\": "
        "1}\"},\"finish_reason\":null}]}\r\n\r\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":7,"
        "\"prompt_tokens_details\":{\"cached_tokens\":20}}}\n\n"
        "data: [DONE]\n\n";
    size_t sizes[] = {1, 3, 7, 4096};
    for (size_t i = 0; i < 4; i++) {
        llm_stream_t s;
        llm_stream_init(&s, LLM_API_OPENAI);
        cr_expect_eq(s_feed(&s, sse, sizes[i]), 0);
        cr_expect(s.done);
        cr_expect_str_eq(s.resp.content, "{\"a\": 1}");
        cr_expect_str_eq(s.resp.model, "gpt-4o-2024-08-06");
        cr_expect_str_eq(s.resp.finish_reason, "stop");
        cr_expect(s.resp.has_usage);
        cr_expect_eq(s.resp.prompt_tokens, 50);
        cr_expect_eq(s.resp.cached_tokens, 20);
        cr_expect_eq(s.resp.completion_tokens, 7);
        llm_stream_clear_line(&s);
        llm_response_clear(&s.resp);
    }
    /* cut before the end: what arrived is kept, no usage, not done */
    llm_stream_t s;
    llm_stream_init(&s, LLM_API_OPENAI);
    cr_expect_eq(
        s_feed(&s, "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\ndata: {\"cho", 5),
        0);
    cr_expect(!s.done);
    cr_expect(!s.resp.has_usage);
    cr_expect_str_eq(s.resp.content, "par");
    llm_stream_clear_line(&s);
    llm_response_clear(&s.resp);
    /* an event that is not JSON makes the stream malformed */
    llm_stream_init(&s, LLM_API_OPENAI);
    cr_expect_eq(llm_stream_feed(&s, "data: {broken\n", 14), -1);
    llm_stream_clear_line(&s);
    llm_response_clear(&s.resp);
}

Test(llm, anthropic_stream)
{
    const char *sse =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":"
        "{\"input_tokens\":300,\"cache_read_input_tokens\":600,\"cache_creation_input_tokens\":100,"
        "\"output_tokens\":1}}}\n\n"
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"I cannot\"}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"refusal\"},\"usage\":"
        "{\"output_tokens\":9}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    llm_stream_t s;
    llm_stream_init(&s, LLM_API_ANTHROPIC);
    cr_expect_eq(s_feed(&s, sse, 11), 0);
    cr_expect(s.done);
    cr_expect(s.resp.has_usage);
    cr_expect_eq(s.resp.prompt_tokens, 1000);
    cr_expect_eq(s.resp.cached_tokens, 600);
    cr_expect_eq(s.resp.completion_tokens, 9);
    cr_expect_str_eq(s.resp.content, "I cannot");
    cr_expect_eq(llm_answer_kind(&s.resp), LLM_ANSWER_REFUSED);
    llm_stream_clear_line(&s);
    llm_response_clear(&s.resp);
    /* cut after message_start: the input is known, the output is not */
    llm_stream_init(&s, LLM_API_ANTHROPIC);
    size_t start_len = strstr(sse, "event: ping") - sse;
    cr_expect_eq(llm_stream_feed(&s, sse, start_len), 0);
    cr_expect(s.resp.has_input);
    cr_expect(!s.resp.has_usage);
    cr_expect_eq(s.resp.prompt_tokens, 1000);
    llm_stream_clear_line(&s);
    llm_response_clear(&s.resp);
}
