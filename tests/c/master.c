/* A C master supervising real workers: the Rust test worker and the C worker.
 *
 * usage: master <drover-test-worker> <c-worker>
 *
 * Start, statuses, exit reasons after kill -9 / exit(0) / exit(3), restart by id, rescale,
 * messages both ways, reload, signals, graceful shutdown leaving no process, start failures and
 * timeouts, and events through both drover_master_next_event() and the pollable fd. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "check.h"

/* Deadline for anything that should happen: generous, since valgrind slows the master down. */
#define DEADLINE_MS 30000

static const char *rust_worker;
static const char *c_worker;

static int pid_gone(uint32_t pid) { return kill((pid_t)pid, 0) == -1 && errno == ESRCH; }

static drover_config *config_for(const char *program, int64_t count) {
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, program));
    CHECK_OK(drover_config_set_count(config, count));
    CHECK_OK(drover_config_set_name(config, "c-master"));
    CHECK_OK(drover_config_set_start_timeout_ms(config, 20000));
    CHECK_OK(drover_config_set_stop_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_quit_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_kill_timeout_ms(config, 1000));
    return config;
}

static drover_master *master_for(drover_config *config) {
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK(master != NULL);
    return master;
}

typedef int (*event_filter)(const drover_event *event, const void *arg);

/* Reads events (discarding others) until one passes `want`, which is left in *out. */
static void wait_event(drover_master *master, event_filter want, const void *arg, drover_event *out) {
    for (;;) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, DEADLINE_MS, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("the expected event did not come within %d ms", DEADLINE_MS);
        CHECK_OK(r);
        CHECK(event.text != NULL && event.json != NULL);
        if (want(&event, arg)) {
            *out = event;
            return;
        }
        fprintf(stderr, "  (passed over: %s)\n", event.text);
        drover_event_clear(&event);
    }
}

static int is_exit_of(const drover_event *e, const void *pid) {
    return e->kind == DROVER_EVENT_KIND_EXIT && e->pid == *(const uint32_t *)pid;
}

static int is_message_from(const drover_event *e, const void *id) {
    return e->kind == DROVER_EVENT_KIND_MESSAGE && e->worker_id == *(const uint64_t *)id;
}

static int is_rotation(const drover_event *e, const void *to) {
    return e->kind == DROVER_EVENT_KIND_ROTATION && e->to == *(const uint32_t *)to;
}

static int is_master_status(const drover_event *e, const void *to) {
    return e->kind == DROVER_EVENT_KIND_MASTER_STATUS && e->to == *(const uint32_t *)to;
}

/* Waits for the exits of every worker in `list`, each asked for, normal, after SHUTTED_DOWN. */
static void wait_requested_exits(drover_master *master, const drover_worker_info *list, size_t count) {
    size_t seen = 0;
    while (seen < count) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, DEADLINE_MS, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("%zu of %zu exits came within %d ms", seen, count, DEADLINE_MS);
        CHECK_OK(r);
        for (size_t i = 0; i < count && event.kind == DROVER_EVENT_KIND_EXIT; i++) {
            if (event.pid != list[i].pid) continue;
            CHECK(event.worker_id == list[i].id);
            CHECK(event.exit.requested);
            CHECK(event.exit.kind == DROVER_EXIT_KIND_NORMAL_EXIT && event.exit.code == 0);
            CHECK(event.exit.last_status == DROVER_WORKER_STATUS_SHUTTED_DOWN);
            CHECK(strstr(event.text, "as asked") != NULL);
            seen++;
        }
        drover_event_clear(&event);
    }
}

/* Snapshot of the workers; the caller frees it with drover_worker_list_free. */
static drover_worker_info *workers(drover_master *master, size_t *count) {
    drover_worker_info *list = NULL;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &list, count));
    return list;
}

/* A program built against a newer header, whose structs have a field this library does not know,
 * gets entries of its own size: the fields it shares with this library where it expects them,
 * the newer one zeroed in arrays drover allocates and left alone in structs it passes. */
struct newer_worker_info {
    drover_worker_info info;
    uint64_t added_later;
};

static void check_a_newer_header(drover_master *master, uint64_t id, uint32_t pid) {
    struct newer_worker_info *list = NULL;
    size_t count = 0;
    CHECK_OK(drover_master_workers(master, sizeof(struct newer_worker_info), (drover_worker_info **)&list, &count));
    CHECK(count == 3);
    for (size_t i = 0; i < count; i++) {
        CHECK(list[i].info.size == sizeof(struct newer_worker_info));
        CHECK(list[i].info.id >= 1 && list[i].info.status == DROVER_WORKER_STATUS_STARTED && list[i].added_later == 0);
    }
    CHECK(list[0].info.id == id && list[0].info.pid == pid);
    drover_worker_list_free((drover_worker_info *)list, count);

    struct newer_worker_info one;
    memset(&one, 0xAB, sizeof one);
    one.info.size = sizeof one;
    CHECK_OK(drover_master_get_worker(master, id, &one.info));
    CHECK(one.info.size == sizeof one && one.info.id == id && one.info.pid == pid);
    CHECK(one.added_later == 0xABABABABABABABABull);
}

static void check_all_started(drover_master *master, size_t expected) {
    size_t count = 0;
    drover_worker_info *list = workers(master, &count);
    if (count != expected) FAIL("%zu workers, expected %zu", count, expected);
    for (size_t i = 0; i < count; i++) {
        CHECK(list[i].status == DROVER_WORKER_STATUS_STARTED);
        CHECK(list[i].alive);
        CHECK(list[i].started_at_ms >= list[i].spawned_at_ms && list[i].spawned_at_ms > 0);
        CHECK(list[i].exit.kind == DROVER_EXIT_KIND_NONE);
        CHECK(!pid_gone(list[i].pid));
    }
    drover_worker_list_free(list, count);
}

static void check_master_status(drover_master *master, drover_master_status expected) {
    drover_master_status status = 0;
    CHECK_OK(drover_master_get_status(master, &status));
    if (status != expected)
        FAIL("master is %s, expected %s", drover_master_status_name(status), drover_master_status_name(expected));
}

/* Asks worker `id` to exit with `code` and checks the exit event. */
static void check_exit_code(drover_master *master, uint64_t id, uint32_t pid, int code) {
    char msg[64];
    snprintf(msg, sizeof msg, "{\"cmd\":\"exit\",\"code\":%d}", code);
    CHECK_OK(drover_master_send(master, id, msg));
    drover_event exit_event = {.size = sizeof(drover_event)};
    wait_event(master, is_exit_of, &pid, &exit_event);
    CHECK(exit_event.worker_id == id);
    CHECK(exit_event.exit.kind == (code == 0 ? DROVER_EXIT_KIND_NORMAL_EXIT : DROVER_EXIT_KIND_ABNORMAL_EXIT));
    CHECK(exit_event.exit.code == code);
    CHECK(exit_event.exit.signal == 0);
    CHECK(!exit_event.exit.requested);
    CHECK(exit_event.exit.last_status == DROVER_WORKER_STATUS_STARTED);
    CHECK(strstr(exit_event.text, "unasked") != NULL);
    drover_event_clear(&exit_event);
    CHECK(exit_event.text == NULL && exit_event.kind == DROVER_EVENT_KIND_NONE);
    CHECK(pid_gone(pid));
}

/* The event fd: readable exactly while events wait. */
static int fd_readable(int fd, int timeout_ms) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int n = poll(&pfd, 1, timeout_ms);
    CHECK(n >= 0);
    return n == 1 && (pfd.revents & POLLIN);
}

static void drain_events(drover_master *master) {
    for (;;) {
        drover_event event = {.size = sizeof(drover_event)};
        drover_result r = drover_master_next_event(master, 0, &event);
        if (r == DROVER_RESULT_TIMEOUT) return;
        CHECK_OK(r);
        drover_event_clear(&event);
    }
}

/* Messages both ways, seen through the pollable fd only (no blocking next_event). */
static void check_messages_through_the_fd(drover_master *master, size_t count) {
    int fd = -1;
    CHECK_OK(drover_master_event_fd(master, &fd));
    drain_events(master);
    CHECK(!fd_readable(fd, 0));
    size_t sent = 0;
    CHECK_OK(drover_master_broadcast(master, "{\"hello\":\"all\"}", &sent));
    CHECK(sent == count);
    size_t echoes = 0;
    while (echoes < count) {
        if (!fd_readable(fd, DEADLINE_MS)) FAIL("the event fd did not become readable");
        for (;;) {
            drover_event event = {.size = sizeof(drover_event)};
            drover_result r = drover_master_next_event(master, 0, &event);
            if (r == DROVER_RESULT_TIMEOUT) break;
            CHECK_OK(r);
            if (event.kind == DROVER_EVENT_KIND_MESSAGE) {
                CHECK(strstr(event.data, "\"echo\"") != NULL);
                CHECK(strstr(event.data, "\"hello\":\"all\"") != NULL);
                echoes++;
            }
            drover_event_clear(&event);
        }
    }
    /* Every waiting event was read, and nothing else is coming: the fd is no longer readable. */
    CHECK(!fd_readable(fd, 0));
}

/* ECV: marked down, the group is out of rotation (an event says so) and its workers run on. */
static void check_mark_down_and_up(drover_master *master, size_t count) {
    bool in_rotation = false;
    CHECK_OK(drover_master_in_rotation(master, &in_rotation));
    CHECK(in_rotation);
    CHECK_OK(drover_master_mark_down(master));
    CHECK_OK(drover_master_in_rotation(master, &in_rotation));
    CHECK(!in_rotation);
    uint32_t out = 0, in = 1;
    drover_event event = {.size = sizeof(drover_event)};
    wait_event(master, is_rotation, &out, &event);
    CHECK(strstr(event.text, "marked down by hand") != NULL);
    CHECK(strstr(event.json, "\"manual\":true") != NULL);
    drover_event_clear(&event);
    check_all_started(master, count);
    CHECK_OK(drover_master_mark_up(master));
    wait_event(master, is_rotation, &in, &event);
    CHECK(strstr(event.text, "back in rotation") != NULL);
    drover_event_clear(&event);
    CHECK_OK(drover_master_in_rotation(master, &in_rotation));
    CHECK(in_rotation);
    CHECK(drover_master_mark_down(NULL) == DROVER_RESULT_NULL_ARGUMENT);
    CHECK(drover_master_in_rotation(master, NULL) == DROVER_RESULT_NULL_ARGUMENT);

    /* The ECV monitor, probing a port where nothing listens (bound, then closed): out of rotation. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    close(fd);
    char options[256];
    snprintf(options, sizeof options, "{\"url\":\"http://127.0.0.1:%u/health\",\"interval\":100}", ntohs(addr.sin_port));
    CHECK(drover_master_monitor_ecv(master, "{\"url\":\"ftp://x/\"}") == DROVER_RESULT_INVALID_CONFIG);
    CHECK(strstr(drover_last_error(), "ecv `url`") != NULL);
    CHECK_OK(drover_master_monitor_ecv(master, options));
    wait_event(master, is_rotation, &out, &event);
    CHECK(strstr(event.json, "\"monitor\":\"http://127.0.0.1:") != NULL);
    drover_event_clear(&event);
    check_all_started(master, count);
    CHECK_OK(drover_master_monitor_ecv(master, NULL)); /* stopped: its mark goes */
    wait_event(master, is_rotation, &in, &event);
    drover_event_clear(&event);
}

static void test_rust_workers(void) {
    drover_config *config = config_for(rust_worker, 3);
    drover_master *master = master_for(config);
    CHECK_OK(drover_config_free(config)); /* the master keeps its own copy */
    check_master_status(master, DROVER_MASTER_STATUS_INITIALIZED);

    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    check_master_status(master, DROVER_MASTER_STATUS_STARTED);
    check_all_started(master, 3);
    uint32_t started = DROVER_MASTER_STATUS_STARTED;
    drover_event event = {.size = sizeof(drover_event)};
    wait_event(master, is_master_status, &started, &event);
    CHECK(event.from == DROVER_MASTER_STATUS_STARTING);
    drover_event_clear(&event);

    size_t count = 0;
    drover_worker_info *list = workers(master, &count);
    CHECK(count == 3);
    uint64_t ids[3];
    uint32_t pids[3];
    for (size_t i = 0; i < 3; i++) {
        ids[i] = list[i].id;
        pids[i] = list[i].pid;
    }
    drover_worker_list_free(list, count);
    check_a_newer_header(master, ids[0], pids[0]);
    drover_worker_info one = {.size = sizeof(drover_worker_info)};
    CHECK_OK(drover_master_get_worker(master, ids[1], &one));
    CHECK(one.pid == pids[1] && one.id == ids[1] && one.restarts == 0 && one.generation == 0);

    /* A message to one worker, answered by it. */
    CHECK_OK(drover_master_send(master, ids[0], "{\"cmd\":\"echo\",\"x\":1}"));
    wait_event(master, is_message_from, &ids[0], &event);
    CHECK(event.pid == pids[0]);
    CHECK(strstr(event.data, "\"echo\"") != NULL && strstr(event.data, "\"x\":1") != NULL);
    CHECK(strstr(event.json, "\"event\":\"message\"") != NULL);
    drover_event_clear(&event);
    check_messages_through_the_fd(master, 3);
    check_mark_down_and_up(master, 3);

    /* Exit reasons: kill -9, exit(0), exit(3). */
    CHECK(kill((pid_t)pids[0], SIGKILL) == 0);
    wait_event(master, is_exit_of, &pids[0], &event);
    CHECK(event.exit.kind == DROVER_EXIT_KIND_EXTERNAL_SIGNAL);
    CHECK(event.exit.signal == SIGKILL);
    CHECK(event.exit.code == -1);
    CHECK(!event.exit.requested);
    CHECK(strstr(event.text, "SIGKILL") != NULL);
    drover_event_clear(&event);
    check_exit_code(master, ids[1], pids[1], 0);
    check_exit_code(master, ids[2], pids[2], 3);
    CHECK_OK(drover_master_get_worker(master, ids[2], &one));
    CHECK(!one.alive && one.exit.kind == DROVER_EXIT_KIND_ABNORMAL_EXIT && one.exit.code == 3);

    /* Sending to a dead worker fails and says why. */
    CHECK_ERR(drover_master_send(master, ids[2], "{}"), DROVER_RESULT_SEND_FAILED, "is gone");

    /* Restart by id: a new process under the same id. */
    for (size_t i = 0; i < 3; i++) {
        CHECK_OK(drover_master_restart_worker(master, ids[i]));
        CHECK_OK(drover_master_get_worker(master, ids[i], &one));
        CHECK(one.pid != pids[i] && one.alive && one.status == DROVER_WORKER_STATUS_STARTED);
        CHECK(one.restarts == 1);
        pids[i] = one.pid;
    }
    check_all_started(master, 3);

    /* Rescale up and down; the removed workers' processes are gone. */
    CHECK_OK(drover_master_rescale(master, 5));
    check_all_started(master, 5);
    list = workers(master, &count);
    CHECK(count == 5);
    uint32_t newest[2] = {list[3].pid, list[4].pid};
    drover_worker_list_free(list, count);
    CHECK_OK(drover_master_rescale(master, 3));
    check_all_started(master, 3);
    CHECK(pid_gone(newest[0]) && pid_gone(newest[1]));

    /* Graceful reload: a new generation, the old processes gone. */
    CHECK_OK(drover_master_graceful_reload(master, NULL));
    check_master_status(master, DROVER_MASTER_STATUS_STARTED);
    check_all_started(master, 3);
    list = workers(master, &count);
    for (size_t i = 0; i < count; i++) CHECK(list[i].generation == 1);
    drover_worker_list_free(list, count);
    for (size_t i = 0; i < 3; i++) CHECK(pid_gone(pids[i]));

    /* Graceful shutdown: every worker stops, quits, exits as asked; no process is left. */
    list = workers(master, &count);
    drain_events(master);
    CHECK_OK(drover_master_graceful_shutdown(master));
    check_master_status(master, DROVER_MASTER_STATUS_SHUT_DOWN);
    for (size_t i = 0; i < count; i++) CHECK(pid_gone(list[i].pid));
    wait_requested_exits(master, list, count);
    drover_worker_list_free(list, count);
    CHECK_OK(drover_master_graceful_shutdown(master)); /* again: nothing to do */
    /* A wrong state is answered at once, even with no time to wait (was a race once). */
    for (int i = 0; i < 200; i++) CHECK_ERR(drover_master_start(master, 0), DROVER_RESULT_WRONG_STATE, "SHUT_DOWN");
    CHECK_OK(drover_master_free(master));
}

/* The master holds one socket, declared as "127.0.0.1:0"; returns its bound address (to free). */
static char *declared_socket(drover_master *master) {
    drover_listener *listeners = NULL;
    size_t count = 0;
    CHECK_OK(drover_master_listeners(master, sizeof(drover_listener), &listeners, &count));
    CHECK(count == 1 && listeners != NULL);
    CHECK(strcmp(listeners[0].address, "127.0.0.1:0") == 0);
    CHECK(strncmp(listeners[0].local, "127.0.0.1:", 10) == 0 && atoi(listeners[0].local + 10) > 0);
    char *local = strdup(listeners[0].local);
    drover_listener_list_free(listeners, count);
    return local;
}

static void test_c_workers(const char *mode) {
    drover_config *config = config_for(c_worker, 2);
    CHECK_OK(drover_config_set_env(config, "C_WORKER_MODE", mode));
    CHECK_OK(drover_config_set_user_config_json(config, "{\"greeting\":\"hi\"}"));
    CHECK_OK(drover_config_set_ready(config, DROVER_READY_SOURCE_MESSAGE));
    CHECK_OK(drover_config_add_listen(config, "web=127.0.0.1:0"));
    drover_master *master = master_for(config);
    CHECK_OK(drover_config_free(config));
    drover_listener *none = (drover_listener *)&none;
    size_t none_count = 1;
    CHECK_OK(drover_master_listeners(master, sizeof(drover_listener), &none, &none_count)); /* nothing bound before start */
    CHECK(none == NULL && none_count == 0);
    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    check_all_started(master, 2);
    char *local = declared_socket(master);

    size_t count = 0;
    drover_worker_info *list = workers(master, &count);
    uint64_t id = list[0].id;
    uint32_t pid = list[0].pid;
    drover_worker_list_free(list, count);

    /* A worker asking for the declared address gets the declared socket. */
    drover_event event = {.size = sizeof(drover_event)};
    CHECK_OK(drover_master_send(master, id, "{\"cmd\":\"listen\",\"address\":\"127.0.0.1:0\"}"));
    wait_event(master, is_message_from, &id, &event);
    char expected_local[160];
    snprintf(expected_local, sizeof expected_local, "\"local\":\"%s\"", local);
    CHECK(strstr(event.data, expected_local) != NULL);
    drover_event_clear(&event);
    free(declared_socket(master)); /* still one socket */
    free(local);

    CHECK_OK(drover_master_send(master, id, "{\"cmd\":\"pid\"}"));
    wait_event(master, is_message_from, &id, &event);
    char expected[64];
    snprintf(expected, sizeof expected, "{\"pid\":%u}", pid);
    CHECK(strcmp(event.data, expected) == 0);
    drover_event_clear(&event);

    CHECK_OK(drover_master_send(master, id, "{\"cmd\":\"meta\"}"));
    wait_event(master, is_message_from, &id, &event);
    CHECK(strstr(event.data, "\"greeting\":\"hi\"") != NULL);
    CHECK(strstr(event.data, "\"group\":\"c-master\"") != NULL);
    drover_event_clear(&event);

    check_messages_through_the_fd(master, 2);
    check_exit_code(master, id, pid, 3);
    CHECK_OK(drover_master_restart_worker(master, id));
    check_all_started(master, 2);

    /* SIGTERM, forwarded by the program, shuts down gracefully. */
    list = workers(master, &count);
    drover_signal_action action = 0;
    CHECK_OK(drover_master_handle_signal(master, SIGTERM, &action));
    CHECK(action == DROVER_SIGNAL_ACTION_GRACEFUL_SHUTDOWN);
    check_master_status(master, DROVER_MASTER_STATUS_SHUT_DOWN);
    for (size_t i = 0; i < count; i++) CHECK(pid_gone(list[i].pid));
    wait_requested_exits(master, list, count);
    drover_worker_list_free(list, count);
    CHECK_OK(drover_master_free(master));
}

/* One connection to "127.0.0.1:PORT" (`local`): the pid the worker that got it wrote, 0 on failure. */
static unsigned ask_pid(const char *local) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(strrchr(local, ':') + 1))};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char line[32] = {0};
    unsigned pid = 0;
    if (connect(fd, (struct sockaddr *)&to, sizeof to) == 0) {
        struct timeval deadline = {.tv_sec = DEADLINE_MS / 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
        if (read(fd, line, sizeof line - 1) > 0) pid = (unsigned)strtoul(line, NULL, 10);
    }
    close(fd);
    return pid;
}

/* A declared round-robin socket: the master accepts and hands each connection to the next C
 * worker as a DROVER_BUS_EVENT_KIND_CONNECTION event; both workers get their turn. */
static void test_c_workers_take_handed_connections(void) {
    drover_config *config = config_for(c_worker, 2);
    CHECK_OK(drover_config_add_listen(config, "127.0.0.1:0,balance=fastest")); /* checked at drover_master_new */
    drover_master *bad = NULL;
    CHECK_ERR(drover_master_new(config, &bad), DROVER_RESULT_INVALID_CONFIG, "not a balance");
    CHECK_OK(drover_config_free(config));
    config = config_for(c_worker, 2);
    CHECK_OK(drover_config_add_listen(config, "127.0.0.1:0,balance=round-robin"));
    drover_master *master = master_for(config);
    CHECK_OK(drover_config_free(config));
    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    check_all_started(master, 2);
    char *local = declared_socket(master);
    size_t count = 0;
    drover_worker_info *list = workers(master, &count);
    for (size_t i = 0; i < count; i++) {
        drover_event event = {.size = sizeof(drover_event)};
        CHECK_OK(drover_master_send(master, list[i].id, "{\"cmd\":\"listen\",\"address\":\"127.0.0.1:0\"}"));
        wait_event(master, is_message_from, &list[i].id, &event);
        CHECK(strstr(event.data, "\"local\"") != NULL);
        drover_event_clear(&event);
    }
    size_t turns[2] = {0, 0};
    for (int i = 0; i < 20; i++) {
        unsigned pid = ask_pid(local);
        for (size_t w = 0; w < 2; w++) turns[w] += pid == list[w].pid;
    }
    CHECK(turns[0] == 10 && turns[1] == 10);
    drover_worker_list_free(list, count);
    free(local);
    CHECK_OK(drover_master_graceful_shutdown(master));
    CHECK_OK(drover_master_free(master));
}

static void test_start_failures(void) {
    /* A worker that exits before STARTED: start fails, names the worker and the reason. */
    drover_config *config = config_for(c_worker, 2);
    CHECK_OK(drover_config_set_env(config, "C_WORKER_MODE", "exit-before-start:4"));
    drover_master *master = master_for(config);
    CHECK_OK(drover_config_free(config));
    CHECK_ERR(drover_master_start(master, DEADLINE_MS), DROVER_RESULT_START_FAILED, "exited with code 4");
    check_master_status(master, DROVER_MASTER_STATUS_STOPPED);
    CHECK_OK(drover_master_free(master));

    /* A worker that never reports STARTED: start times out, the start goes on; a shutdown ends it. */
    config = config_for(rust_worker, 2);
    CHECK_OK(drover_config_set_env(config, "DROVER_TEST_MODE", "never-start"));
    master = master_for(config);
    CHECK_OK(drover_config_free(config));
    CHECK_ERR(drover_master_start(master, 300), DROVER_RESULT_TIMEOUT, "within 300 ms");
    check_master_status(master, DROVER_MASTER_STATUS_STARTING);
    uint32_t pids[2];
    size_t seen = 0;
    while (seen < 2) { /* their spawns are announced as INITIALIZED status events */
        drover_event event = {.size = sizeof(drover_event)};
        CHECK_OK(drover_master_next_event(master, DEADLINE_MS, &event));
        if (event.kind == DROVER_EVENT_KIND_STATUS && event.to == DROVER_WORKER_STATUS_INITIALIZED)
            pids[seen++] = event.pid;
        drover_event_clear(&event);
    }
    CHECK_ERR(drover_master_rescale(master, 3), DROVER_RESULT_WRONG_STATE, "STARTING");
    CHECK_OK(drover_master_graceful_shutdown(master));
    check_master_status(master, DROVER_MASTER_STATUS_SHUT_DOWN);
    CHECK(pid_gone(pids[0]) && pid_gone(pids[1]));
    CHECK_OK(drover_master_free(master));
}

static void test_a_master_freed_with_running_workers_kills_them(void) {
    drover_config *config = config_for(rust_worker, 2);
    drover_master *master = master_for(config);
    CHECK_OK(drover_config_free(config));
    CHECK_OK(drover_master_start(master, DEADLINE_MS));
    size_t count = 0;
    drover_worker_info *list = workers(master, &count);
    CHECK_OK(drover_master_free(master));
    for (size_t i = 0; i < count; i++) CHECK(pid_gone(list[i].pid));
    drover_worker_list_free(list, count);
}

struct waiter {
    drover_master *master;
    drover_result result;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int waiting;
};

static void *wait_for_ever(void *arg) {
    struct waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->waiting = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    drover_event event = {.size = sizeof(drover_event)};
    w->result = drover_master_next_event(w->master, -1, &event);
    drover_event_clear(&event);
    return NULL;
}

static void test_freeing_a_master_wakes_a_thread_blocked_on_its_events(void) {
    drover_config *config = config_for(rust_worker, 1);
    struct waiter w = {master_for(config), DROVER_RESULT_OK, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    CHECK_OK(drover_config_free(config));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, wait_for_ever, &w) == 0);
    pthread_mutex_lock(&w.lock);
    while (!w.waiting) pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    CHECK_OK(drover_master_free(w.master));
    CHECK(pthread_join(thread, NULL) == 0);
    /* CLOSED if it was already waiting; INVALID_OBJECT if the free came first. Never a hang. */
    CHECK(w.result == DROVER_RESULT_CLOSED || w.result == DROVER_RESULT_INVALID_OBJECT);
}

int main(int argc, char **argv) {
    if (argc != 3) FAIL("usage: %s <drover-test-worker> <c-worker>", argv[0]);
    rust_worker = argv[1];
    c_worker = argv[2];
    CHECK(strcmp(drover_version(), DROVER_VERSION) == 0);
    test_rust_workers();
    fprintf(stderr, "ok: a C master supervises Rust workers\n");
    test_c_workers("poll");
    test_c_workers("blocking");
    fprintf(stderr, "ok: a C master supervises C workers\n");
    test_c_workers_take_handed_connections();
    fprintf(stderr, "ok: C workers take the connections a round-robin socket hands them\n");
    test_start_failures();
    fprintf(stderr, "ok: start failures and start timeouts\n");
    test_a_master_freed_with_running_workers_kills_them();
    test_freeing_a_master_wakes_a_thread_blocked_on_its_events();
    fprintf(stderr, "ok: free\n");
    return 0;
}
