/* A drover worker written in C, supervised by the tests' masters (C and Rust).
 *
 * C_WORKER_MODE: "poll" (default: waits on drover_bus_event_fd() with poll()), "blocking" (waits
 * in drover_bus_next_event() with a timeout), "exit-before-start:<code>".
 * Messages: {"cmd":"exit","code":N} exits with N; {"cmd":"pid"} answers {"pid":<pid>};
 * {"cmd":"meta"} answers {"meta":<drover_bus_meta_json()>}; anything else is echoed as
 * {"echo":<message>}.
 *
 * Before reporting STARTED it checks the bus's error paths; a failed check exits with 90. */
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"

static void check_bus_errors(drover_bus *bus) {
    drover_bus *again = NULL;
    CHECK_ERR(drover_bus_open(&again), DROVER_RESULT_ALREADY_CONNECTED, "already connected");
    CHECK(again == NULL); /* out-parameters are written only on success */
    CHECK_ERR(drover_bus_open(NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_bus` is NULL");
    CHECK_ERR(drover_bus_send_message(bus, "{not json"), DROVER_RESULT_INVALID_ARGUMENT, "not valid JSON");
    CHECK_ERR(drover_bus_send_message(bus, NULL), DROVER_RESULT_NULL_ARGUMENT, "`json` is NULL");
    CHECK_ERR(drover_bus_send_message(bus, "\"\xff\""), DROVER_RESULT_INVALID_UTF8, "`json` is not valid UTF-8");
    CHECK_ERR(drover_bus_send_status(bus, 99), DROVER_RESULT_INVALID_ARGUMENT, "got 99");
    CHECK_ERR(drover_bus_next_event(bus, 0, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_event` is NULL");
    CHECK_ERR(drover_bus_send_started(NULL), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    uint64_t id = 0;
    CHECK_OK(drover_bus_worker_id(bus, &id));
    CHECK(id >= 1);
    drover_bus_event event = {DROVER_BUS_EVENT_KIND_NONE, NULL, NULL};
    CHECK_ERR(drover_bus_next_event(bus, 0, &event), DROVER_RESULT_TIMEOUT, "nothing from the master");
}

/* The status main() exits with. */
static int exit_status = 0;

/* Answers a message; returns 0 when it asked the worker to exit. */
static int answer(drover_bus *bus, const char *data) {
    char reply[4096];
    if (strstr(data, "\"cmd\":\"exit\"") != NULL) {
        const char *code = strstr(data, "\"code\":");
        exit_status = code ? atoi(code + 7) : 0;
        return 0;
    } else if (strstr(data, "\"cmd\":\"pid\"") != NULL) {
        snprintf(reply, sizeof reply, "{\"pid\":%ld}", (long)getpid());
    } else if (strstr(data, "\"cmd\":\"meta\"") != NULL) {
        char *meta = NULL;
        CHECK_OK(drover_bus_meta_json(bus, &meta));
        snprintf(reply, sizeof reply, "{\"meta\":%s}", meta);
        drover_string_free(meta);
    } else {
        snprintf(reply, sizeof reply, "{\"echo\":%s}", data);
    }
    CHECK_OK(drover_bus_send_message(bus, reply));
    return 1;
}

/* Handles one event; returns 0 when the worker should exit. */
static int handle(drover_bus *bus, drover_bus_event *event) {
    switch (event->kind) {
    case DROVER_BUS_EVENT_KIND_STOP:
        CHECK_OK(drover_bus_send_stopped(bus));
        return 1;
    case DROVER_BUS_EVENT_KIND_QUIT:
        CHECK_OK(drover_bus_send_shutted_down(bus));
        return 0;
    case DROVER_BUS_EVENT_KIND_MESSAGE:
        return answer(bus, event->data);
    case DROVER_BUS_EVENT_KIND_CLOSED:
        return 0;
    default:
        FAIL("unexpected bus event kind %u", (unsigned)event->kind);
    }
}

int main(void) {
    const char *mode = getenv("C_WORKER_MODE");
    if (mode == NULL) mode = "poll";
    drover_bus *bus = NULL;
    CHECK_OK(drover_bus_open(&bus));
    check_bus_errors(bus);
    if (strncmp(mode, "exit-before-start:", 18) == 0) {
        CHECK_OK(drover_bus_free(bus));
        return atoi(mode + 18);
    }
    CHECK_OK(drover_bus_send_started(bus));

    int fd = -1;
    CHECK_OK(drover_bus_event_fd(bus, &fd));
    int running = 1;
    while (running) {
        drover_bus_event event = {DROVER_BUS_EVENT_KIND_NONE, NULL, NULL};
        drover_result r;
        if (strcmp(mode, "blocking") == 0) {
            r = drover_bus_next_event(bus, 1000, &event);
        } else {
            struct pollfd pfd = {fd, POLLIN, 0};
            int n = poll(&pfd, 1, -1);
            CHECK(n == 1 && (pfd.revents & POLLIN));
            r = drover_bus_next_event(bus, 0, &event);
            /* The fd was readable, so an event (or the closed stream) was waiting. */
            CHECK(r != DROVER_RESULT_TIMEOUT);
        }
        if (r == DROVER_RESULT_TIMEOUT) continue;
        if (r == DROVER_RESULT_CLOSED) break;
        CHECK_OK(r);
        running = handle(bus, &event);
        drover_bus_event_clear(&event);
    }
    CHECK_OK(drover_bus_free(bus));
    return exit_status;
}
