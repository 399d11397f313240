/* A C master whose fds 1 and 2 are close-on-exec (Node marks its own so at start-up; any host
 * may): its worker must still write to the master's stdout and stderr, which the test reads.
 * The worker then creates <sentinel> and sleeps; the master kills it with SIGKILL and checks that
 * the exited worker is reported FAILED, never STARTED.
 *
 * usage: stdio_master <sentinel> */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

int main(int argc, char **argv) {
    CHECK(argc == 2);
    for (int fd = 1; fd <= 2; fd++) {
        CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0);
    }
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, "/bin/sh"));
    CHECK_OK(drover_config_add_arg(config, "-c"));
    CHECK_OK(drover_config_add_arg(config, "echo worker-to-stdout; echo worker-to-stderr >&2; : > \"$0\"; exec sleep 30"));
    CHECK_OK(drover_config_add_arg(config, argv[1]));
    CHECK_OK(drover_config_set_count(config, 1));
    CHECK_OK(drover_config_set_ready(config, DROVER_READY_SOURCE_SPAWN));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));
    CHECK_OK(drover_master_start(master, 20000));

    drover_worker_info *workers = NULL;
    size_t count = 0;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    CHECK(count == 1);
    uint32_t pid = workers[0].pid;
    drover_worker_list_free(workers, count);

    /* The worker has written both lines once the sentinel exists. */
    const struct timespec tick = {0, 10 * 1000 * 1000};
    int waited_ms = 0;
    while (access(argv[1], F_OK) != 0) {
        CHECK(errno == ENOENT && waited_ms < 20000);
        nanosleep(&tick, NULL);
        waited_ms += 10;
    }
    CHECK(kill((pid_t)pid, SIGKILL) == 0);
    drover_event event = {.size = sizeof(drover_event)};
    for (;;) {
        CHECK_OK(drover_master_next_event(master, 20000, &event));
        drover_event_kind kind = event.kind;
        drover_event_clear(&event);
        if (kind == DROVER_EVENT_KIND_EXIT) break;
    }
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    CHECK(count == 1);
    CHECK(!workers[0].alive);
    CHECK(workers[0].status == DROVER_WORKER_STATUS_FAILED);
    drover_worker_list_free(workers, count);

    CHECK_OK(drover_master_hard_shutdown(master));
    CHECK_OK(drover_master_free(master));
    return 0;
}
