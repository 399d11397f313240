/* A C master and requests: it calls the handlers of a Rust test worker (1) and of a C worker (2)
 * and gets each typed error; it serves a handler of its own ("double") that both workers call;
 * and the two workers call each other and send each other messages, routed by this master.
 *
 * usage: requests_master <drover-test-worker> <c-worker> */
#include <stdint.h>

#include "check.h"

#define DEADLINE_MS 30000

/* What to wait for: an event of `kind` from worker `id` (0: any) whose `data` contains `needle`. */
struct wanted {
    drover_event_kind kind;
    uint64_t id;
    const char *needle;
};

/* Whether `event` is as `want` says. */
static int is(const drover_event *event, struct wanted want) {
    return event->kind == want.kind && (want.id == 0 || event->worker_id == want.id) && event->data != NULL &&
           strstr(event->data, want.needle) != NULL;
}

/* Reads events (passing over others) until one is as `want` says; it is left in *out. */
static void wait_for(drover_master *master, struct wanted want, drover_event *out) {
    for (;;) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, DEADLINE_MS, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("no event with \"%s\" within %d ms", want.needle, DEADLINE_MS);
        CHECK_OK(r);
        if (is(&event, want)) {
            *out = event;
            return;
        }
        fprintf(stderr, "  (passed over: %s: %s)\n", event.text, event.data ? event.data : "");
        drover_event_clear(&event);
    }
}

/* Waits for a message from worker `id` containing `needle`. */
static void wait_message(drover_master *master, uint64_t id, const char *needle) {
    drover_event event = {.size = sizeof(drover_event)};
    wait_for(master, (struct wanted){DROVER_EVENT_KIND_MESSAGE, id, needle}, &event);
    drover_event_clear(&event);
}

/* Waits for two events that come in either order (answers of two workers). */
static void wait_both(drover_master *master, struct wanted a, struct wanted b) {
    int seen_a = 0, seen_b = 0;
    while (!seen_a || !seen_b) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, DEADLINE_MS, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("no \"%s\" and \"%s\" within %d ms", a.needle, b.needle, DEADLINE_MS);
        CHECK_OK(r);
        if (!seen_a && is(&event, a))
            seen_a = 1;
        else if (!seen_b && is(&event, b))
            seen_b = 1;
        else
            fprintf(stderr, "  (passed over: %s: %s)\n", event.text, event.data ? event.data : "");
        drover_event_clear(&event);
    }
}

/* The request must succeed with exactly `want` as its result. */
static void expect_result(drover_master *master, const char *target, const char *name, const char *args,
                          const char *want) {
    char *result = NULL;
    CHECK_OK(drover_master_request(master, target, name, args, DEADLINE_MS, &result));
    if (result == NULL || strcmp(result, want) != 0)
        FAIL("%s %s(%s) -> %s, expected %s", target, name, args, result ? result : "NULL", want);
    drover_string_free(result);
}

/* A worker's request to the master's "double" arrives as a REQUEST event; returns its id. */
static uint64_t next_request(drover_master *master, uint64_t from, const char *args) {
    drover_event event = {.size = sizeof(drover_event)};
    wait_for(master, (struct wanted){DROVER_EVENT_KIND_REQUEST, from, args}, &event);
    CHECK(event.name != NULL && strcmp(event.name, "double") == 0);
    CHECK(strcmp(event.data, args) == 0);
    CHECK(strstr(event.json, "\"event\":\"request\"") != NULL);
    uint64_t id = event.request_id;
    CHECK(id > 0);
    drover_event_clear(&event);
    CHECK(event.name == NULL && event.request_id == 0);
    return id;
}

int main(int argc, char **argv) {
    if (argc != 3) FAIL("usage: requests_master <drover-test-worker> <c-worker>");
    char script[4096];
    snprintf(script, sizeof script, "if [ \"$DROVER_WORKER_ID\" = 1 ]; then exec %s; else exec %s; fi", argv[1],
             argv[2]);
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, "sh"));
    CHECK_OK(drover_config_add_arg(config, "-c"));
    CHECK_OK(drover_config_add_arg(config, script));
    CHECK_OK(drover_config_set_count(config, 2));
    CHECK_OK(drover_config_set_name(config, "c-requests"));
    CHECK_OK(drover_config_set_env(config, "DROVER_TEST_HANDLERS", "echo,whoami,fail,never,exit"));
    CHECK_OK(drover_config_set_env(config, "C_WORKER_HANDLERS", "1"));
    CHECK_OK(drover_config_set_start_timeout_ms(config, 20000));
    CHECK_OK(drover_config_set_stop_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_quit_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_kill_timeout_ms(config, 1000));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));

    CHECK_ERR(drover_master_handle(master, ""), DROVER_RESULT_INVALID_ARGUMENT, "is not a handler name");
    CHECK_ERR(drover_master_handle(master, NULL), DROVER_RESULT_NULL_ARGUMENT, "`name` is NULL");
    CHECK_OK(drover_master_handle(master, "double"));
    CHECK_OK(drover_master_start(master, DEADLINE_MS));

    /* The master calls the Rust worker and the C worker; every failure has its code. */
    expect_result(master, "worker:1", "echo", "{\"a\":[1,2]}", "{\"a\":[1,2]}");
    expect_result(master, "worker:2", "c-echo", "[1,2]", "{\"c_echo\":[1,2]}");
    expect_result(master, "any", "c-whoami", NULL, "{\"id\":2}");
    expect_result(master, "all", "whoami", "null", "[{\"result\":{\"id\":1},\"worker\":1}]");
    char *result = NULL;
    CHECK_ERR(drover_master_request(master, "worker:1", "fail", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_HANDLER_FAILED, "failed on purpose");
    CHECK_ERR(drover_master_request(master, "worker:2", "c-fail", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_HANDLER_FAILED, "C failed on purpose");
    CHECK_ERR(drover_master_request(master, "worker:1", "never", NULL, 300, &result), DROVER_RESULT_TIMEOUT,
              "300 ms");
    CHECK_ERR(drover_master_request(master, "worker:2", "echo", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_NO_SUCH_HANDLER, "echo");
    CHECK_ERR(drover_master_request(master, "worker:99", "echo", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_NO_SUCH_TARGET, "99");
    CHECK_ERR(drover_master_request(master, "everyone", "echo", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_INVALID_ARGUMENT, "`target`");
    CHECK_ERR(drover_master_request(master, "worker:1", "echo", "{x", DEADLINE_MS, &result),
              DROVER_RESULT_INVALID_ARGUMENT, "`args_json` is not valid JSON");
    CHECK(result == NULL);
    fprintf(stderr, "ok: a C master calls Rust and C workers\n");

    /* Both workers call the master's handler; the C program answers, or fails, or lets it time out. */
    CHECK_OK(drover_master_send(master, 1, "{\"cmd\":\"request\",\"to\":\"master\",\"name\":\"double\",\"args\":21}"));
    uint64_t id = next_request(master, 1, "21");
    CHECK_ERR(drover_master_respond(master, id, "{bad", NULL), DROVER_RESULT_INVALID_ARGUMENT, "`result_json`");
    CHECK_OK(drover_master_respond(master, id, "42", NULL));
    CHECK_ERR(drover_master_respond(master, id, "42", NULL), DROVER_RESULT_NO_SUCH_REQUEST, "answered already");
    wait_message(master, 1, "{\"response\":42}");
    CHECK_OK(drover_master_send(master, 2, "{\"cmd\":\"request\",\"to\":\"master\",\"name\":\"double\",\"args\":5}"));
    CHECK_OK(drover_master_respond(master, next_request(master, 2, "5"), "10", NULL));
    wait_message(master, 2, "{\"response\":10}");
    CHECK_OK(drover_master_send(master, 1, "{\"cmd\":\"request\",\"to\":\"master\",\"name\":\"double\",\"args\":1}"));
    CHECK_OK(drover_master_respond(master, next_request(master, 1, "1"), NULL, "no doubling today"));
    wait_message(master, 1, "no doubling today");
    CHECK_OK(drover_master_send(
        master, 1, "{\"cmd\":\"request\",\"to\":\"master\",\"name\":\"double\",\"args\":2,\"timeout_ms\":300}"));
    id = next_request(master, 1, "2");
    wait_message(master, 1, "\"code\":\"timeout\"");
    CHECK_ERR(drover_master_respond(master, id, "4", NULL), DROVER_RESULT_NO_SUCH_REQUEST, "timed out");
    fprintf(stderr, "ok: Rust and C workers call the C master's handler\n");

    /* The workers call each other and send each other messages. */
    CHECK_OK(drover_master_send(master, 2, "{\"cmd\":\"request\",\"to\":\"worker:1\",\"name\":\"whoami\"}"));
    wait_message(master, 2, "{\"response\":{\"id\":1}}");
    CHECK_OK(drover_master_send(master, 2, "{\"cmd\":\"request\",\"to\":\"worker:1\",\"name\":\"fail\"}"));
    /* The master's events carry messages with their keys sorted. */
    wait_message(master, 2, "{\"message\":\"failed on purpose\",\"request_error\":\"DROVER_RESULT_HANDLER_FAILED\"}");
    CHECK_OK(drover_master_send(master, 1, "{\"cmd\":\"request\",\"to\":\"worker:2\",\"name\":\"c-whoami\"}"));
    wait_message(master, 1, "{\"response\":{\"id\":2}}");
    CHECK_OK(drover_master_send(master, 2, "{\"cmd\":\"send-to\",\"to\":\"worker:1\",\"data\":{\"hi\":[1]}}"));
    wait_both(master, (struct wanted){DROVER_EVENT_KIND_MESSAGE, 1, "{\"from\":2,\"got\":{\"hi\":[1]}}"},
              (struct wanted){DROVER_EVENT_KIND_MESSAGE, 2, "{\"sent\":1}"});
    CHECK_OK(drover_master_send(master, 1, "{\"cmd\":\"send-to\",\"to\":\"worker:2\",\"data\":\"hello C\"}"));
    wait_message(master, 2, "{\"from\":1,\"got\":\"hello C\"}");
    CHECK_OK(drover_master_send(master, 2, "{\"cmd\":\"send-to\",\"to\":\"worker:99\",\"data\":1}"));
    wait_message(master, 2, "\"send_error\":\"DROVER_RESULT_NO_SUCH_TARGET\"");
    fprintf(stderr, "ok: Rust and C workers call each other\n");

    /* A target that exits before it answers. */
    CHECK_ERR(drover_master_request(master, "worker:1", "exit", NULL, DEADLINE_MS, &result),
              DROVER_RESULT_TARGET_GONE, "1");

    CHECK_OK(drover_master_graceful_shutdown(master));
    CHECK_ERR(drover_master_respond(master, 1, "1", NULL), DROVER_RESULT_NO_SUCH_REQUEST, "no request 1");
    CHECK_OK(drover_master_free(master));
    fprintf(stderr, "ok: free\n");
    return 0;
}
