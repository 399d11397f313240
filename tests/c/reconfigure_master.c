/* A C master pushing new configs to C workers (PROTOCOL.md §5.11) and running a pre-start hook:
 * a hook that fails fails the start with nothing spawned; the next start runs it again and goes
 * on; the workers apply one config and refuse another; a config too large is refused first.
 *
 * usage: reconfigure_master <c-worker> */
#include <stdint.h>

#include "check.h"

#define DEADLINE_MS 30000

static int hook_runs = 0;

/* Fails the first time, succeeds after. */
static int pre_start(void *user_data) {
    int *runs = (int *)user_data;
    *runs += 1;
    return *runs == 1 ? 7 : 0;
}

/* How many times `needle` occurs in `text`. */
static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) n++;
    return n;
}

int main(int argc, char **argv) {
    if (argc != 2) FAIL("usage: reconfigure_master <c-worker>");
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, argv[1]));
    CHECK_OK(drover_config_set_count(config, 2));
    CHECK_OK(drover_config_set_name(config, "c-reconf"));
    CHECK_OK(drover_config_set_start_timeout_ms(config, 20000));
    CHECK_OK(drover_config_set_kill_timeout_ms(config, 1000));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));

    CHECK_OK(drover_master_set_pre_start(master, pre_start, &hook_runs));
    CHECK_ERR(drover_master_start(master, DEADLINE_MS), DROVER_RESULT_PRE_START_FAILED, "the C hook returned 7");
    drover_worker_info *workers = NULL;
    size_t n = 99;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &workers, &n));
    CHECK(n == 0);
    drover_worker_list_free(workers, n);
    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    CHECK(hook_runs == 2);
    fprintf(stderr, "ok: a failing pre-start hook spawns nothing\n");

    char *acks = NULL;
    CHECK_OK(drover_master_reconfigure(master, "{\"level\":2}", DEADLINE_MS, &acks));
    CHECK(acks != NULL);
    if (count(acks, "\"outcome\":\"applied\"") != 2) FAIL("not applied by both: %s", acks);
    drover_string_free(acks);
    acks = NULL;
    /* Each answer is also an event of its own kind. */
    for (int seen = 0; seen < 2;) {
        drover_event event = {.size = sizeof(drover_event)};
        CHECK_OK(drover_master_next_event(master, DEADLINE_MS, &event));
        if (event.kind == DROVER_EVENT_KIND_RECONFIGURED) {
            CHECK(event.to == 1 && event.data == NULL && event.worker_id != 0);
            if (strstr(event.json, "\"version\":1") == NULL) FAIL("no version in %s", event.json);
            seen++;
        }
        drover_event_clear(&event);
    }
    CHECK_OK(drover_master_reconfigure(master, "{\"refuse\":true}", DEADLINE_MS, &acks));
    if (count(acks, "\"error\":\"the C worker refuses it\"") != 2) FAIL("not refused by both: %s", acks);
    drover_string_free(acks);
    for (int seen = 0; seen < 2;) {
        drover_event event = {.size = sizeof(drover_event)};
        CHECK_OK(drover_master_next_event(master, DEADLINE_MS, &event));
        if (event.kind == DROVER_EVENT_KIND_RECONFIGURED) {
            CHECK(event.to == 0 && event.data != NULL);
            if (strcmp(event.data, "the C worker refuses it") != 0) FAIL("refusal reason %s", event.data);
            seen++;
        }
        drover_event_clear(&event);
    }
    CHECK_ERR(drover_master_reconfigure(master, "{not json", DEADLINE_MS, NULL), DROVER_RESULT_INVALID_ARGUMENT,
              "not valid JSON");
    /* Larger than the frame limit (16 MiB by default). */
    size_t big = 17u * 1024 * 1024;
    char *huge = malloc(big + 3);
    CHECK(huge != NULL);
    huge[0] = '"';
    memset(huge + 1, 'x', big);
    huge[big + 1] = '"';
    huge[big + 2] = '\0';
    CHECK_ERR(drover_master_reconfigure(master, huge, DEADLINE_MS, NULL), DROVER_RESULT_RECONFIGURE_REJECTED,
              "frame limit");
    free(huge);
    fprintf(stderr, "ok: C workers apply and refuse configs\n");

    CHECK_OK(drover_master_graceful_shutdown(master));
    CHECK_OK(drover_master_free(master));
    fprintf(stderr, "ok: free\n");
    return 0;
}
