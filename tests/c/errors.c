/* Every error path of the C API, asserted from C: NULL arguments, invalid UTF-8, invalid values
 * and configs, calls in the wrong state, unknown workers, freed and foreign objects, a process
 * that is no worker. None may crash; each returns its code and a message naming what was wrong. */
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

static void names(void) {
    CHECK(strcmp(drover_result_name(DROVER_RESULT_TIMEOUT), "DROVER_RESULT_TIMEOUT") == 0);
    CHECK(strcmp(drover_result_name(DROVER_RESULT_OK), "DROVER_RESULT_OK") == 0);
    CHECK(strcmp(drover_result_name(9999), "DROVER_RESULT_UNKNOWN") == 0);
    CHECK(strcmp(drover_worker_status_name(DROVER_WORKER_STATUS_SHUTTED_DOWN), "SHUTTED_DOWN") == 0);
    CHECK(strcmp(drover_worker_status_name(0), "UNKNOWN") == 0);
    CHECK(strcmp(drover_master_status_name(DROVER_MASTER_STATUS_SHUT_DOWN), "SHUT_DOWN") == 0);
    CHECK(strcmp(drover_exit_kind_name(DROVER_EXIT_KIND_EXTERNAL_SIGNAL), "ExternalSignal") == 0);
    CHECK(strcmp(drover_version(), DROVER_VERSION) == 0);
    CHECK(drover_abi_version() == DROVER_ABI_VERSION);
    /* NULL is a no-op for every release function. */
    drover_string_free(NULL);
    drover_event_clear(NULL);
    drover_bus_event_clear(NULL);
    drover_worker_list_free(NULL, 0);
    drover_listener_list_free(NULL, 0);
    CHECK(strcmp(drover_result_name(DROVER_RESULT_LISTEN_FAILED), "DROVER_RESULT_LISTEN_FAILED") == 0);
    CHECK_OK(drover_config_free(NULL));
    CHECK_OK(drover_master_free(NULL));
    CHECK_OK(drover_bus_free(NULL));
}

static void config_errors(void) {
    CHECK_ERR(drover_config_new(NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_config` is NULL");
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_ERR(drover_config_set_program(NULL, "sh"), DROVER_RESULT_NULL_ARGUMENT, "`config` is NULL");
    CHECK_ERR(drover_config_set_program(config, NULL), DROVER_RESULT_NULL_ARGUMENT, "`program` is NULL");
    CHECK_ERR(drover_config_set_program(config, "sh\xff\xfe"), DROVER_RESULT_INVALID_UTF8,
              "`program` is not valid UTF-8 (invalid byte at offset 2)");
    CHECK_ERR(drover_config_add_arg(config, "\xc3"), DROVER_RESULT_INVALID_UTF8, "`arg`");
    CHECK_ERR(drover_config_set_env(config, "KEY", NULL), DROVER_RESULT_NULL_ARGUMENT, "`value` is NULL");
    CHECK_ERR(drover_config_set_env(config, "\x80", "v"), DROVER_RESULT_INVALID_UTF8, "`key`");
    CHECK_ERR(drover_config_set_restart(config, 42), DROVER_RESULT_INVALID_ARGUMENT, "got 42");
    CHECK_ERR(drover_config_set_reload_strategy(config, 9, 0), DROVER_RESULT_INVALID_ARGUMENT, "got 9");
    CHECK_ERR(drover_config_set_user_config_json(config, "{"), DROVER_RESULT_INVALID_ARGUMENT, "not valid JSON");
    CHECK_ERR(drover_config_set_json(config, "[1]"), DROVER_RESULT_INVALID_ARGUMENT, "JSON object");
    CHECK_ERR(drover_config_set_json(config, "{\"cuont\": 2}"), DROVER_RESULT_INVALID_CONFIG, "cuont");
    CHECK_ERR(drover_config_set_json(config, "{\"count\": \"two\"}"), DROVER_RESULT_INVALID_CONFIG, "invalid type");

    /* Validation is core's, when the master is created; each error names the field. */
    drover_master *master = NULL;
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "`program`");
    CHECK(master == NULL); /* out-parameters are written only on success */
    CHECK_OK(drover_config_set_program(config, "definitely-not-a-program-xyz"));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "not found on PATH");
    CHECK_OK(drover_config_set_program(config, "sh"));
    CHECK_OK(drover_config_set_count(config, 0));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "`count` must be at least 1, got 0");
    CHECK_OK(drover_config_set_count(config, 1));
    CHECK_OK(drover_config_set_start_timeout_ms(config, -5));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "`startTimeout`");
    CHECK_OK(drover_config_set_start_timeout_ms(config, 1000));
    CHECK_OK(drover_config_set_cwd(config, "/definitely/not/a/dir"));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "is not a directory");
    CHECK_OK(drover_config_set_cwd(config, "/"));
    CHECK_OK(drover_config_set_restart_backoff(config, 100, 0.5, 1000));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "restartBackoffFactor");
    CHECK_OK(drover_config_set_restart_backoff(config, 100, 2.0, 1000));
    CHECK_OK(drover_config_set_json(config, "{\"heartbeatInterval\": 0}"));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "heartbeatInterval");
    CHECK_OK(drover_config_set_json(config, "{\"heartbeatInterval\": null}"));
    CHECK_ERR(drover_config_add_listen(config, NULL), DROVER_RESULT_NULL_ARGUMENT, "`spec` is NULL");
    CHECK_ERR(drover_config_add_listen(NULL, "8080"), DROVER_RESULT_NULL_ARGUMENT, "`config` is NULL");
    CHECK_OK(drover_config_add_listen(config, "web=not an address"));
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "`listen`");
    CHECK_ERR(drover_master_new(config, &master), DROVER_RESULT_INVALID_CONFIG, "`not an address` is not a listen address");
    CHECK_OK(drover_config_set_json(config, "{\"listen\": []}"));
    CHECK_ERR(drover_config_set_ready(config, 0), DROVER_RESULT_INVALID_ARGUMENT, "got 0");
    CHECK_ERR(drover_config_set_ready(config, 5), DROVER_RESULT_INVALID_ARGUMENT, "`source` must be a drover_ready_source");
    CHECK_OK(drover_config_set_ready(config, DROVER_READY_SOURCE_SPAWN));
    CHECK_OK(drover_config_set_ready(config, DROVER_READY_SOURCE_MESSAGE));
    CHECK_OK(drover_config_set_restart(config, DROVER_RESTART_POLICY_ON_FAILURE));
    CHECK_OK(drover_config_set_reload_strategy(config, DROVER_RELOAD_STRATEGY_ROLLING, 2));
    CHECK_OK(drover_config_set_max_restarts(config, 5, 10000));
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_master_free(master));

    CHECK_OK(drover_config_free(config));
    CHECK_ERR(drover_config_free(config), DROVER_RESULT_INVALID_OBJECT, "freed already");
    CHECK_ERR(drover_config_set_count(config, 1), DROVER_RESULT_INVALID_OBJECT, "is not a live drover_config");
}

static void master_errors(void) {
    drover_master *master = NULL;
    CHECK_ERR(drover_master_new(NULL, &master), DROVER_RESULT_NULL_ARGUMENT, "`config` is NULL");
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, "sh"));
    CHECK_OK(drover_config_set_count(config, 2));
    CHECK_ERR(drover_master_new(config, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_master` is NULL");
    CHECK_OK(drover_master_new(config, &master));

    /* Wrong state: nothing but start and shutdown before start. */
    CHECK_ERR(drover_master_rescale(master, 3), DROVER_RESULT_WRONG_STATE,
              "cannot rescale while the master is INITIALIZED");
    CHECK_ERR(drover_master_restart_worker(master, 1), DROVER_RESULT_WRONG_STATE, "INITIALIZED");
    CHECK_ERR(drover_master_graceful_reload(master, NULL), DROVER_RESULT_WRONG_STATE, "INITIALIZED");
    CHECK_ERR(drover_master_rescale(master, 0), DROVER_RESULT_INVALID_CONFIG, "`count` must be at least 1");

    /* Unknown workers, bad messages, NULL arguments. */
    CHECK_ERR(drover_master_send(master, 99, "{}"), DROVER_RESULT_UNKNOWN_WORKER, "no worker with id 99");
    drover_worker_info info = {.size = sizeof(drover_worker_info)};
    CHECK_ERR(drover_master_get_worker(master, 99, &info), DROVER_RESULT_UNKNOWN_WORKER, "99");
    CHECK_ERR(drover_master_send(master, 1, "{oops"), DROVER_RESULT_INVALID_ARGUMENT, "`json` is not valid JSON");
    /* JSON's grammar allows a lone surrogate escape, but no peer could decode it: refused here. */
    CHECK_ERR(drover_master_send(master, 1, "[\"\\ud800x\"]"), DROVER_RESULT_INVALID_ARGUMENT, "hex escape");
    CHECK_ERR(drover_master_send(master, 1, NULL), DROVER_RESULT_NULL_ARGUMENT, "`json` is NULL");
    CHECK_ERR(drover_master_broadcast(master, "\"\xff\"", NULL), DROVER_RESULT_INVALID_UTF8, "`json`");
    size_t sent = 77;
    CHECK_OK(drover_master_broadcast(master, "{}", &sent));
    CHECK(sent == 0);
    CHECK_ERR(drover_master_get_status(NULL, NULL), DROVER_RESULT_NULL_ARGUMENT, "`master` is NULL");
    CHECK_ERR(drover_master_get_status(master, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_status` is NULL");
    CHECK_ERR(drover_master_workers(master, sizeof(drover_worker_info), NULL, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_workers` is NULL");
    drover_worker_info *list = (drover_worker_info *)&info;
    size_t count = 77;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &list, &count));
    CHECK(list == NULL && count == 0);
    CHECK_ERR(drover_master_event_fd(master, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_fd` is NULL");
    CHECK_ERR(drover_master_next_event(master, 0, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_event` is NULL");

    CHECK_ERR(drover_master_listeners(master, sizeof(drover_listener), NULL, &count), DROVER_RESULT_NULL_ARGUMENT, "`out_listeners` is NULL");
    drover_listener *listeners = NULL;
    CHECK_ERR(drover_master_listeners(master, sizeof(drover_listener), &listeners, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_count` is NULL");
    CHECK_ERR(drover_master_listeners(NULL, sizeof(drover_listener), &listeners, &count), DROVER_RESULT_NULL_ARGUMENT, "`master` is NULL");
    CHECK_ERR(drover_master_listeners(master, 8, &listeners, &count), DROVER_RESULT_INVALID_ARGUMENT,
              "`listener_size` is 8: pass sizeof(drover_listener)");

    /* No event before start: a timeout, in about the time asked. */
    drover_event event = {.size = sizeof(drover_event)};
    CHECK_ERR(drover_master_next_event(master, 0, &event), DROVER_RESULT_TIMEOUT, "no event within 0 ms");
    CHECK_ERR(drover_master_next_event(master, 50, &event), DROVER_RESULT_TIMEOUT, "no event within 50 ms");
    CHECK(event.kind == DROVER_EVENT_KIND_NONE && event.json == NULL);

    /* A struct whose `size` the caller did not set is refused, naming the field: drover writes
     * only the bytes the caller's struct has, so it must know how many. */
    drover_event unsized = {0};
    CHECK_ERR(drover_master_next_event(master, 0, &unsized), DROVER_RESULT_INVALID_ARGUMENT,
              "`out_event->size` is 0: set it to sizeof(drover_event)");
    drover_worker_info unsized_info = {0};
    CHECK_ERR(drover_master_get_worker(master, 1, &unsized_info), DROVER_RESULT_INVALID_ARGUMENT,
              "`out_worker->size` is 0");
    CHECK_ERR(drover_master_workers(master, 0, &list, &count), DROVER_RESULT_INVALID_ARGUMENT,
              "`info_size` is 0: pass sizeof(drover_worker_info)");
    drover_event_clear(&unsized); /* a zeroed event: nothing to free, nothing written */
    CHECK(unsized.size == 0);

    /* A foreign object where a master is expected. */
    CHECK_ERR(drover_master_start((drover_master *)config, 0), DROVER_RESULT_INVALID_OBJECT,
              "is not a live drover_master");
    CHECK_ERR(drover_bus_send_started((drover_bus *)master), DROVER_RESULT_INVALID_OBJECT,
              "is not a live drover_bus");

    /* Shut down before start: terminal, start refused. */
    CHECK_OK(drover_master_graceful_shutdown(master));
    CHECK_ERR(drover_master_start(master, 1000), DROVER_RESULT_WRONG_STATE,
              "cannot start while the master is SHUT_DOWN");

    /* A freed master is reported, never dereferenced. */
    CHECK_OK(drover_master_free(master));
    CHECK_ERR(drover_master_start(master, 0), DROVER_RESULT_INVALID_OBJECT, "freed already");
    CHECK_ERR(drover_master_next_event(master, 0, &event), DROVER_RESULT_INVALID_OBJECT, "`master`");
    CHECK_ERR(drover_master_free(master), DROVER_RESULT_INVALID_OBJECT, "freed already");
    CHECK_OK(drover_config_free(config));
}

/* A declared socket that cannot be bound fails the start, naming the address and the errno,
 * before any worker is spawned. */
static void listen_errors(void) {
    int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK(taken >= 0 && bind(taken, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(taken, 1) == 0);
    CHECK(getsockname(taken, (struct sockaddr *)&addr, &len) == 0);
    char spec[64];
    snprintf(spec, sizeof spec, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));

    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, "sh"));
    CHECK_OK(drover_config_set_count(config, 1));
    CHECK_OK(drover_config_add_listen(config, spec));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));
    CHECK_ERR(drover_master_start(master, 10000), DROVER_RESULT_LISTEN_FAILED, "EADDRINUSE");
    CHECK(strstr(drover_last_error(), spec) != NULL);
    size_t count = 77;
    drover_worker_info *list = NULL;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &list, &count));
    CHECK(list == NULL && count == 0); /* no worker was spawned */
    CHECK_OK(drover_master_free(master));
    close(taken);
}

static void bus_errors(void) {
    drover_bus *bus = NULL;
    CHECK_ERR(drover_bus_open(NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_bus` is NULL");
    unsetenv("DROVER_IPC_FD");
    CHECK_ERR(drover_bus_open(&bus), DROVER_RESULT_NOT_A_WORKER, "DROVER_IPC_FD is not set");
    setenv("DROVER_IPC_FD", "abc", 1);
    CHECK_ERR(drover_bus_open(&bus), DROVER_RESULT_NOT_A_WORKER, "is not a file descriptor");
    setenv("DROVER_IPC_FD", "0", 1); /* stdin: not a socket */
    CHECK_ERR(drover_bus_open(&bus), DROVER_RESULT_NOT_A_WORKER, "is not an open socket");
    unsetenv("DROVER_IPC_FD");
    CHECK(bus == NULL);
    CHECK_ERR(drover_bus_send_started(NULL), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    CHECK_ERR(drover_bus_send_message(NULL, "{}"), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    int fd = -1;
    CHECK_ERR(drover_bus_event_fd(NULL, &fd), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    char *local = NULL;
    CHECK_ERR(drover_bus_listen(NULL, "127.0.0.1:0", 0, &fd, &local), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    CHECK(fd == -1 && local == NULL);
}

int main(void) {
    names();
    config_errors();
    master_errors();
    listen_errors();
    bus_errors();
    /* After a successful call the last error is empty again. */
    CHECK_ERR(drover_config_new(NULL), DROVER_RESULT_NULL_ARGUMENT, "out_config");
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK(strcmp(drover_last_error(), "") == 0);
    CHECK_OK(drover_config_free(config));
    fprintf(stderr, "ok: every error path\n");
    return 0;
}
