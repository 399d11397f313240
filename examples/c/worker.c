/* An HTTP worker in C, supervised by drover.
 *
 * It listens on PORT (default 8080) with SO_REUSEPORT, so every worker of the group shares the
 * port, and answers each request with a line naming itself. It reports STARTED once it listens,
 * stops accepting on STOP, exits on QUIT, and echoes messages from the master back to it.
 * One thread, one poll() loop over the listening socket and drover's bus fd. */
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drover.h"

static void die(const char *what, drover_result r) {
    fprintf(stderr, "worker %ld: %s: %s: %s\n", (long)getpid(), what, drover_result_name(r), drover_last_error());
    exit(1);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0) {
        perror("worker: listen");
        exit(1);
    }
    return fd;
}

static void serve(int listener, uint64_t id) {
    int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (client < 0) return;
    char request[2048];
    ssize_t n = read(client, request, sizeof request); /* one read: enough for a small GET */
    (void)n;
    char body[128], response[512];
    int len = snprintf(body, sizeof body, "hello from worker %llu (pid %ld)\n", (unsigned long long)id, (long)getpid());
    int total = snprintf(response, sizeof response,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         "Connection: close\r\n\r\n%s",
                         len, body);
    ssize_t written = write(client, response, (size_t)total);
    (void)written;
    close(client);
}

int main(void) {
    drover_bus *bus = NULL;
    drover_result r = drover_bus_open(&bus);
    if (r != DROVER_RESULT_OK) die("drover_bus_open", r);
    uint64_t id = 0;
    drover_bus_worker_id(bus, &id);
    const char *port = getenv("PORT");
    int listener = listen_on(port ? atoi(port) : 8080);
    if ((r = drover_bus_send_started(bus)) != DROVER_RESULT_OK) die("send_started", r);

    int bus_fd = -1;
    drover_bus_event_fd(bus, &bus_fd);
    for (;;) {
        struct pollfd fds[2] = {{bus_fd, POLLIN, 0}, {listener, POLLIN, 0}};
        if (poll(fds, listener >= 0 ? 2 : 1, -1) < 0) continue;
        if (listener >= 0 && (fds[1].revents & POLLIN)) serve(listener, id);
        if (!(fds[0].revents & POLLIN)) continue;
        drover_bus_event event = {0};
        while (drover_bus_next_event(bus, 0, &event) == DROVER_RESULT_OK) {
            int done = 0;
            switch (event.kind) {
            case DROVER_BUS_EVENT_KIND_STOP: /* no new connections; nothing is in flight */
                close(listener);
                listener = -1;
                drover_bus_send_stopped(bus);
                break;
            case DROVER_BUS_EVENT_KIND_QUIT:
                drover_bus_send_shutted_down(bus);
                done = 1;
                break;
            case DROVER_BUS_EVENT_KIND_MESSAGE: {
                char reply[4096];
                snprintf(reply, sizeof reply, "{\"echo\":%s}", event.data);
                drover_bus_send_message(bus, reply);
                break;
            }
            default: /* CLOSED: the master is gone */
                done = 1;
            }
            drover_bus_event_clear(&event);
            if (done) {
                drover_bus_free(bus);
                return 0;
            }
        }
    }
}
