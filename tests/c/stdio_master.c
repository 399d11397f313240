/* A C master whose fds 1 and 2 are close-on-exec (Node marks its own so at start-up; any host
 * may): its worker must still write to the master's stdout and stderr, which the test reads.
 * The worker then exits by itself, and is reported FAILED, never STARTED, once it has exited.
 *
 * usage: stdio_master */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"

int main(void) {
    for (int fd = 1; fd <= 2; fd++) {
        CHECK(fcntl(fd, F_SETFD, FD_CLOEXEC) == 0);
    }
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, "/bin/sh"));
    CHECK_OK(drover_config_add_arg(config, "-c"));
    CHECK_OK(drover_config_add_arg(config, "echo worker-to-stdout; echo worker-to-stderr >&2"));
    CHECK_OK(drover_config_set_count(config, 1));
    CHECK_OK(drover_config_set_ready(config, DROVER_READY_SOURCE_SPAWN));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));
    CHECK_OK(drover_master_start(master, 20000));

    drover_event event = {0};
    for (;;) {
        CHECK_OK(drover_master_next_event(master, 20000, &event));
        drover_event_kind kind = event.kind;
        drover_event_clear(&event);
        if (kind == DROVER_EVENT_KIND_EXIT) break;
    }
    drover_worker_info *workers = NULL;
    size_t count = 0;
    CHECK_OK(drover_master_workers(master, &workers, &count));
    CHECK(count == 1);
    CHECK(!workers[0].alive);
    CHECK(workers[0].status == DROVER_WORKER_STATUS_FAILED);
    drover_worker_list_free(workers, count);

    CHECK_OK(drover_master_hard_shutdown(master));
    CHECK_OK(drover_master_free(master));
    return 0;
}
