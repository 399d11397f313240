/* A C master supervising C workers with drover.
 *
 * usage: master <worker-program> [count]
 *
 * The master owns the listening socket: it declares LISTEN (an address, e.g. "0.0.0.0:8080" or
 * "unix:/run/web.sock"; default 127.0.0.1:$PORT, PORT defaulting to 8080), binds it before the
 * first worker starts, and every worker inherits it at fd 3 as systemd would pass it. The socket
 * stays open while workers are restarted and reloaded, so no client is refused; with worker.c
 * draining its keep-alive connections, no request is lost either.
 *
 * Starts the workers, prints where it listens, their statuses, what they put in the master's store
 * and what their status functions say, says hello to them, then runs
 * one poll() loop over drover's event fd and a signalfd: events are printed as they come; SIGHUP
 * reloads the workers (a new generation, make-before-break), SIGUSR2 restarts one worker (each
 * in turn), SIGTERM or SIGINT shuts them down gracefully (a second SIGINT, hard). drover installs
 * no signal handler itself: the program catches the signals and hands them to
 * drover_master_handle_signal. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "drover.h"

#define TRY(call)                                                                                  \
    do {                                                                                           \
        drover_result r_ = (call);                                                                 \
        if (r_ != DROVER_RESULT_OK) {                                                              \
            fprintf(stderr, "master: %s: %s: %s\n", #call, drover_result_name(r_),                 \
                    drover_last_error());                                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Restarts the live worker at position *next (in id order), then moves on to the next one. */
static void restart_one(drover_master *master, size_t *next) {
    drover_worker_info *workers = NULL;
    size_t count = 0;
    TRY(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    size_t live = 0;
    for (size_t i = 0; i < count; i++) live += workers[i].alive;
    if (live > 0) {
        size_t want = *next % live, seen = 0;
        for (size_t i = 0; i < count; i++) {
            if (!workers[i].alive || seen++ != want) continue;
            drover_result r = drover_master_restart_worker(master, workers[i].id);
            drover_worker_info now = {.size = sizeof(drover_worker_info)};
            if (r == DROVER_RESULT_OK && drover_master_get_worker(master, workers[i].id, &now) == DROVER_RESULT_OK)
                printf("restarted worker %llu: pid %u -> %u\n", (unsigned long long)workers[i].id, workers[i].pid,
                       now.pid);
            else
                fprintf(stderr, "master: restart of worker %llu: %s\n", (unsigned long long)workers[i].id,
                        drover_last_error());
            break;
        }
        *next += 1;
    }
    drover_worker_list_free(workers, count);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <worker-program> [count]\n", argv[0]);
        return 2;
    }
    /* The library loaded at run time must have the ABI this program was compiled for. */
    if (drover_abi_version() != DROVER_ABI_VERSION) {
        fprintf(stderr, "master: built for drover ABI %d, but libdrover %s has ABI %u\n", DROVER_ABI_VERSION,
                drover_version(), drover_abi_version());
        return 1;
    }
    /* Block the signals before drover starts its threads, so they inherit the mask and the
     * signals wait for our signalfd. (Workers start with a clean mask.) */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    int sig_fd = signalfd(-1, &signals, SFD_CLOEXEC);

    drover_config *config = NULL;
    TRY(drover_config_new(&config));
    TRY(drover_config_set_program(config, argv[1]));
    TRY(drover_config_set_count(config, argc > 2 ? atoi(argv[2]) : 2));
    TRY(drover_config_set_name(config, "http"));
    TRY(drover_config_set_restart(config, DROVER_RESTART_POLICY_ON_FAILURE));
    TRY(drover_config_set_stop_timeout_ms(config, 12000)); /* the workers drain within 10 s */
    char listen[256];
    if (getenv("LISTEN") != NULL)
        snprintf(listen, sizeof listen, "http=%s", getenv("LISTEN"));
    else
        snprintf(listen, sizeof listen, "http=127.0.0.1:%s", getenv("PORT") ? getenv("PORT") : "8080");
    TRY(drover_config_add_listen(config, listen));
    drover_master *master = NULL;
    TRY(drover_master_new(config, &master));
    TRY(drover_config_free(config));

    TRY(drover_master_start(master, 30000));
    drover_listener *listeners = NULL;
    size_t listening = 0;
    TRY(drover_master_listeners(master, sizeof(drover_listener), &listeners, &listening));
    for (size_t i = 0; i < listening; i++) printf("listening on %s\n", listeners[i].local);
    drover_listener_list_free(listeners, listening);
    drover_worker_info *workers = NULL;
    size_t count = 0;
    TRY(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    for (size_t i = 0; i < count; i++)
        printf("worker %llu pid %u %s\n", (unsigned long long)workers[i].id, workers[i].pid,
               drover_worker_status_name(workers[i].status));
    drover_worker_list_free(workers, count);
    /* Every worker answers its "stats" handler: a request to "all" gathers the answers. */
    char *stats = NULL;
    TRY(drover_master_request(master, "all", "stats", NULL, 10000, &stats));
    printf("stats: %s\n", stats);
    drover_string_free(stats);
    /* What the workers shared: their pids in the master's store, and their status functions. */
    char *shared = NULL;
    TRY(drover_master_store_get(master, "workers", &shared));
    printf("store: %s\n", shared);
    drover_string_free(shared);
    TRY(drover_master_gather_statuses(master, 10000, &shared));
    printf("statuses: %s\n", shared);
    drover_string_free(shared);
    size_t sent = 0;
    TRY(drover_master_broadcast(master, "{\"hello\":\"from the master\"}", &sent));
    printf("started %zu workers\n", count);
    fflush(stdout);
    size_t next_restart = 0;

    int event_fd = -1;
    TRY(drover_master_event_fd(master, &event_fd));
    /* Processes spawned and not yet reported exited: every spawn is announced by a STATUS event
     * to INITIALIZED, every end by an EXIT event. Done when shut down with none left. */
    long live = 0;
    drover_master_status status = DROVER_MASTER_STATUS_STARTED;
    while (status != DROVER_MASTER_STATUS_SHUT_DOWN || live > 0) {
        struct pollfd fds[2] = {{event_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            if (read(sig_fd, &info, sizeof info) == sizeof info) {
                printf("signal %u\n", info.ssi_signo);
                fflush(stdout);
                if (info.ssi_signo == SIGUSR2) {
                    restart_one(master, &next_restart);
                } else {
                    drover_signal_action action = 0;
                    drover_result r = drover_master_handle_signal(master, (int)info.ssi_signo, &action);
                    if (r != DROVER_RESULT_OK)
                        fprintf(stderr, "master: %s\n", drover_last_error());
                    else if (action == DROVER_SIGNAL_ACTION_RELOAD)
                        printf("reloaded\n");
                }
            }
        }
        drover_event event = {.size = sizeof(drover_event)};
        while (drover_master_next_event(master, 0, &event) == DROVER_RESULT_OK) {
            if (event.kind == DROVER_EVENT_KIND_STATUS && event.to == DROVER_WORKER_STATUS_INITIALIZED) live++;
            if (event.kind == DROVER_EVENT_KIND_EXIT) live--;
            if (event.kind != DROVER_EVENT_KIND_HEARTBEAT) printf("event: %s\n", event.text);
            if (event.kind == DROVER_EVENT_KIND_MESSAGE) printf("  data: %s\n", event.data);
            drover_event_clear(&event);
        }
        fflush(stdout);
        TRY(drover_master_get_status(master, &status));
    }
    printf("every worker is gone\n");
    TRY(drover_master_free(master));
    close(sig_fd);
    return 0;
}
