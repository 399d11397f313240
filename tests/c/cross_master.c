/* A C master for tests/tests/cross_language.rs: supervises two workers of any language and
 * reports each outcome as a JSON line on stdout, as tests/fixtures/node/master.js does for Node.
 *
 * usage: cross_master <program> [args...]
 *
 * Start (every worker STARTED), a {"cmd":"pid"} round trip with each worker, kill -9 of the
 * second, a graceful shutdown; then it frees the master and exits 0. Lines:
 *   {"step":"started","workers":[{"id":1,"pid":4121,"status":3},...]}
 *   {"step":"message","id":1,"data":<the worker's reply>}
 *   {"step":"exit","id":2,"pid":4122,"reason":"ExternalSignal","code":null,"signal":9,
 *    "requested":false,"lastStatus":3}
 *   {"step":"shut-down","status":"SHUT_DOWN"}
 * A failed check exits with 1 and says why on stderr. */
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h"

#define DEADLINE_MS 15000
#define COUNT 2

/* Reads events (passing over others) until one of `kind` from worker `id`; the caller clears it. */
static drover_event next_event_of(drover_master *master, drover_event_kind kind, uint64_t id) {
    for (;;) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, DEADLINE_MS, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("no event %u of worker %llu within %d ms", (unsigned)kind,
                                             (unsigned long long)id, DEADLINE_MS);
        CHECK_OK(r);
        if (event.kind == kind && event.worker_id == id) return event;
        drover_event_clear(&event);
    }
}

static void report_exit(const drover_event *event) {
    const drover_exit *exit = &event->exit;
    char code[16] = "null", signal[16] = "null";
    if (exit->kind == DROVER_EXIT_KIND_EXTERNAL_SIGNAL)
        snprintf(signal, sizeof signal, "%d", exit->signal);
    else
        snprintf(code, sizeof code, "%d", exit->code);
    printf("{\"step\":\"exit\",\"id\":%llu,\"pid\":%u,\"reason\":\"%s\",\"code\":%s,\"signal\":%s,"
           "\"requested\":%s,\"lastStatus\":%u}\n",
           (unsigned long long)event->worker_id, event->pid, drover_exit_kind_name(exit->kind), code, signal,
           exit->requested ? "true" : "false", exit->last_status);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: %s <program> [args...]", argv[0]);
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, argv[1]));
    for (int i = 2; i < argc; i++) CHECK_OK(drover_config_add_arg(config, argv[i]));
    CHECK_OK(drover_config_set_count(config, COUNT));
    CHECK_OK(drover_config_set_name(config, "c-master"));
    CHECK_OK(drover_config_set_start_timeout_ms(config, DEADLINE_MS));
    CHECK_OK(drover_config_set_stop_timeout_ms(config, 5000));
    CHECK_OK(drover_config_set_quit_timeout_ms(config, 5000));
    CHECK_OK(drover_config_set_kill_timeout_ms(config, 1000));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));

    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    drover_worker_info *workers = NULL;
    size_t count = 0;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    CHECK(count == COUNT);
    printf("{\"step\":\"started\",\"workers\":[");
    for (size_t i = 0; i < count; i++)
        printf("%s{\"id\":%llu,\"pid\":%u,\"status\":%u}", i ? "," : "", (unsigned long long)workers[i].id,
               workers[i].pid, workers[i].status);
    printf("]}\n");
    fflush(stdout);

    for (size_t i = 0; i < count; i++) {
        CHECK_OK(drover_master_send(master, workers[i].id, "{\"cmd\":\"pid\"}"));
        drover_event reply = next_event_of(master, DROVER_EVENT_KIND_MESSAGE, workers[i].id);
        printf("{\"step\":\"message\",\"id\":%llu,\"data\":%s}\n", (unsigned long long)reply.worker_id, reply.data);
        fflush(stdout);
        drover_event_clear(&reply);
    }

    CHECK(kill((pid_t)workers[1].pid, SIGKILL) == 0);
    drover_event killed = next_event_of(master, DROVER_EVENT_KIND_EXIT, workers[1].id);
    report_exit(&killed);
    drover_event_clear(&killed);

    /* Returns once every worker is reaped; the exits wait in the event queue. */
    CHECK_OK(drover_master_graceful_shutdown(master));
    drover_event stopped = next_event_of(master, DROVER_EVENT_KIND_EXIT, workers[0].id);
    report_exit(&stopped);
    drover_event_clear(&stopped);
    drover_master_status status = 0;
    CHECK_OK(drover_master_get_status(master, &status));
    printf("{\"step\":\"shut-down\",\"status\":\"%s\"}\n", drover_master_status_name(status));
    fflush(stdout);

    drover_worker_list_free(workers, count);
    CHECK_OK(drover_master_free(master));
    return 0;
}
