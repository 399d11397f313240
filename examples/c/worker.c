/* An HTTP/1.1 worker in C, supervised by drover, that drains keep-alive connections without
 * losing a request (the recipe of docs/DRAINING.md).
 *
 * The listening socket is the master's, shared by every worker of the group:
 * - declared by the master (`drover_config_add_listen()`, as master.c does): inherited at fd 3
 *   with systemd's variables (LISTEN_FDS, LISTEN_PID = our pid), exactly as under systemd;
 * - otherwise asked for over the bus with `drover_bus_listen()`: LISTEN_ADDRESS, or
 *   127.0.0.1:$PORT (default 8080).
 * The kernel hands each connection to one of the workers; the master keeps the socket open while
 * workers come and go, so no client is refused during a restart or a reload.
 *
 * Each request is answered "hello from worker <id> (pid <pid>)". Connections are kept alive
 * (HTTP/1.1, or HTTP/1.0 with `Connection: keep-alive`). On STOP the worker drains:
 * 1. it stops accepting: it closes its copy of the listening socket (the master's stays open, new
 *    connections go to the other workers);
 * 2. every further response carries `Connection: close`; once written, the connection is shut
 *    down for writing and read until the client closes it (at most LINGER_MS), then closed;
 * 3. an idle connection is closed only when no request can be racing the close: nothing being
 *    answered, nothing in the kernel's receive buffer (FIONREAD), nothing read since the last
 *    response, and quiet for IDLE_GRACE_MS (default 500) *since the stop* as well as since its last
 *    response: a client still using it would have sent its next request by then, and received a
 *    `Connection: close` answer;
 * 4. it reports STOPPED when the last connection is gone, or when DRAIN_TIMEOUT_MS (default
 *    10000) passes (it then closes what is left).
 * QUIT: it reports SHUTTED_DOWN and exits. Messages from the master are echoed back.
 *
 * It declares one request handler, "stats": any worker, the master's program
 * (`drover_master_request(master, "any", "stats", NULL, 1000, &json)`) or `drover request GROUP
 * any stats` asks it, and it answers {"id":..,"pid":..,"connections":..,"draining":..}.
 *
 * It shares what it is with the group through the master: its pid in the master's store
 * ("workers.<id>", which master.c and `drover store GROUP get workers` read), an application
 * status ("SERVING", then "DRAINING", with its connection count) beside its lifecycle status, and a
 * status function "http" that the master gathers (`drover_master_gather_statuses()`, `drover
 * status --app`).
 *
 * Warm-up (PROTOCOL.md §5.11): when the master asks for one, before it takes the shared socket
 * the worker serves a private loopback listener with the same request handler, on a thread of its
 * own, while drover_bus_warm_up() sends it the warm-up GETs.
 *
 * One thread, one poll() loop over drover's bus fd, the listening socket and the connections;
 * drover calls the status function on a thread of its own, which reads two atomics. (The warm-up
 * thread is gone before the loop starts.) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "drover.h"

#define MAX_CONNS 1000
#define IN_SIZE 8192
#define OUT_SIZE 512
#define LINGER_MS 1000

struct conn {
    int fd;
    char in[IN_SIZE];
    size_t in_len;
    char out[OUT_SIZE];
    size_t out_len, out_off;
    /* A request has begun (its first byte was read) and its response is not written yet. */
    int in_request;
    /* Bytes read from the socket ever, and their number when the last response was written. */
    unsigned long long bytes_read, idle_bytes;
    /* When the last response was written (or the connection accepted), ms. */
    long long idle_since;
    /* The response being written says `Connection: close`. */
    int closing;
    /* Shut down for writing; reading until the client closes, until linger_until. */
    int lingering;
    long long linger_until;
};

static struct conn *conns[MAX_CONNS];
static size_t nconns;
static uint64_t worker_id;
/* What the status function reports: written by the loop, read on drover's thread. */
static atomic_size_t published_connections;
static atomic_int published_draining;

/* The status function "http": JSON allocated with malloc, which drover frees. */
static char *http_status(void *user, const char *name) {
    (void)user;
    (void)name;
    char *json = malloc(96);
    if (json != NULL)
        snprintf(json, 96, "{\"connections\":%zu,\"draining\":%s}", atomic_load(&published_connections),
                 atomic_load(&published_draining) ? "true" : "false");
    return json; /* NULL: the master shows an error in its place */
}

/* The application status beside the lifecycle status, with the connection count. */
static void publish(drover_bus *bus, const char *status) {
    char counters[64];
    snprintf(counters, sizeof counters, "{\"connections\":%zu}", nconns);
    drover_result r = drover_bus_set_app_status(bus, status, counters);
    if (r != DROVER_RESULT_OK) fprintf(stderr, "worker: app status: %s\n", drover_last_error());
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long env_ms(const char *name, long fallback) {
    const char *value = getenv(name);
    return value && atol(value) > 0 ? atol(value) : fallback;
}

static void die(const char *what, drover_result r) {
    fprintf(stderr, "worker %ld: %s: %s: %s\n", (long)getpid(), what, drover_result_name(r), drover_last_error());
    exit(1);
}

/* The master's socket: inherited at fd 3 (declared), or asked for over the bus. */
static int listening_socket(drover_bus *bus) {
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    int fd = -1;
    if (fds != NULL && pid != NULL && atoi(fds) >= 1 && atol(pid) == (long)getpid()) {
        fd = 3;
        fcntl(fd, F_SETFD, FD_CLOEXEC); /* our own children do not inherit it */
    } else {
        char fallback[64];
        const char *address = getenv("LISTEN_ADDRESS");
        if (address == NULL) {
            snprintf(fallback, sizeof fallback, "127.0.0.1:%s", getenv("PORT") ? getenv("PORT") : "8080");
            address = fallback;
        }
        drover_result r = drover_bus_listen(bus, address, 10000, &fd, NULL);
        if (r != DROVER_RESULT_OK) die("drover_bus_listen", r);
    }
    /* poll() wakes every worker for a new connection and one of them takes it: accept must not
     * block. (The flag is shared by every holder of the socket; they all accept after poll.) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void close_conn(struct conn *c) {
    close(c->fd);
    c->fd = -1; /* removed from the table by compact() */
}

/* Drops closed connections from the table. */
static void compact(void) {
    size_t kept = 0;
    for (size_t i = 0; i < nconns; i++) {
        if (conns[i]->fd >= 0)
            conns[kept++] = conns[i];
        else
            free(conns[i]);
    }
    nconns = kept;
}

/* Accepts one connection per turn of the loop: every worker polling the shared socket wakes up
 * for a new connection, and taking one at a time spreads a burst of them across the workers. */
static void accept_one(int listener) {
    while (nconns < MAX_CONNS) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN: another worker took it, or nothing left */
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->idle_since = now_ms();
        conns[nconns++] = c;
        return;
    }
}

/* The value of header `name` in the header block [headers, end), or NULL. */
static const char *header(const char *headers, const char *end, const char *name, size_t *len) {
    size_t name_len = strlen(name);
    for (const char *line = headers; line < end;) {
        const char *eol = memchr(line, '\r', (size_t)(end - line));
        if (eol == NULL) eol = end;
        if ((size_t)(eol - line) > name_len && line[name_len] == ':' && strncasecmp(line, name, name_len) == 0) {
            const char *value = line + name_len + 1;
            while (value < eol && (*value == ' ' || *value == '\t')) value++;
            *len = (size_t)(eol - value);
            return value;
        }
        line = eol + 2;
    }
    return NULL;
}

static int contains_token(const char *value, size_t len, const char *token) {
    size_t token_len = strlen(token);
    for (size_t i = 0; i + token_len <= len; i++)
        if (strncasecmp(value + i, token, token_len) == 0) return 1;
    return 0;
}

static void respond(struct conn *c, int status, const char *reason, int keep_alive, int http10, int head) {
    char body[128];
    int body_len = status == 200 ? snprintf(body, sizeof body, "hello from worker %llu (pid %ld)\n",
                                            (unsigned long long)worker_id, (long)getpid())
                                 : snprintf(body, sizeof body, "%s\n", reason);
    const char *connection = !keep_alive ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : "";
    int len = snprintf(c->out, sizeof c->out,
                       "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s", status,
                       reason, body_len, connection, head ? "" : body);
    c->out_len = len > 0 && (size_t)len < sizeof c->out ? (size_t)len : 0;
    c->out_off = 0;
    c->closing = !keep_alive;
}

/* Parses one complete request from the input buffer, if there is one, and queues its response.
 * Returns 1 when a response was queued. */
static int handle_request(struct conn *c, int draining) {
    if (c->in_len == 0) return 0;
    c->in_request = 1;
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->in_len; i++)
        if (memcmp(c->in + i, "\r\n\r\n", 4) == 0) {
            end = c->in + i + 2; /* just past the last header line's CRLF */
            break;
        }
    if (end == NULL) {
        if (c->in_len == IN_SIZE) {
            respond(c, 431, "Request Header Fields Too Large", 0, 0, 0);
            c->in_len = 0;
            return 1;
        }
        return 0; /* not all of it yet */
    }
    const char *line_end = memchr(c->in, '\r', (size_t)(end - c->in));
    const char *version = line_end ? line_end - 8 : NULL;
    if (version == NULL || version <= c->in || strncmp(version, "HTTP/1.", 7) != 0) {
        respond(c, 400, "Bad Request", 0, 0, 0);
        c->in_len = 0;
        return 1;
    }
    int http10 = version[7] == '0';
    int head = strncmp(c->in, "HEAD ", 5) == 0;
    const char *headers = line_end + 2;
    size_t len = 0;
    if (header(headers, end, "Transfer-Encoding", &len) != NULL) {
        respond(c, 501, "Not Implemented", 0, http10, head); /* no chunked request bodies here */
        c->in_len = 0;
        return 1;
    }
    const char *value = header(headers, end, "Content-Length", &len);
    size_t body = value ? (size_t)strtoul(value, NULL, 10) : 0;
    size_t total = (size_t)(end + 2 - c->in) + body;
    if (total > IN_SIZE) {
        respond(c, 413, "Content Too Large", 0, http10, head);
        c->in_len = 0;
        return 1;
    }
    if (c->in_len < total) return 0; /* the body is still coming */
    value = header(headers, end, "Connection", &len);
    int keep_alive = http10 ? value && contains_token(value, len, "keep-alive")
                            : !(value && contains_token(value, len, "close"));
    respond(c, 200, "OK", keep_alive && !draining, http10, head);
    memmove(c->in, c->in + total, c->in_len - total);
    c->in_len -= total;
    return 1;
}

/* Writes what is queued; once a response is out, the connection is idle again, or lingers. */
static void flush(struct conn *c, int draining) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    c->idle_bytes = c->bytes_read;
    c->idle_since = now_ms();
    c->in_request = c->in_len > 0;
    if (c->closing) {
        /* Read (and discard) until the client closes: closing with unread bytes would send a
         * reset that can destroy the response in flight. */
        shutdown(c->fd, SHUT_WR);
        c->lingering = 1;
        c->linger_until = now_ms() + LINGER_MS;
    } else if (handle_request(c, draining)) { /* a pipelined request already buffered */
        flush(c, draining);
    }
}

static void on_readable(struct conn *c, int draining) {
    for (;;) {
        char discard[4096];
        char *into = c->lingering ? discard : c->in + c->in_len;
        size_t room = c->lingering ? sizeof discard : IN_SIZE - c->in_len;
        if (room == 0) break; /* full: the pending response goes out first */
        ssize_t n = recv(c->fd, into, room, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close_conn(c); /* the client closed, or the connection broke */
            return;
        }
        if (n < 0) break;
        if (!c->lingering) {
            c->in_len += (size_t)n;
            c->bytes_read += (unsigned long long)n;
        }
    }
    if (!c->lingering && c->out_len == 0 && handle_request(c, draining)) flush(c, draining);
}

/* Closes the connections no request can be racing; returns how many are left. `drain_start` is
 * when the stop arrived. */
static size_t drain_step(long long now, long long drain_start, long idle_grace) {
    for (size_t i = 0; i < nconns; i++) {
        struct conn *c = conns[i];
        if (c->fd < 0) continue;
        if (c->lingering) {
            if (now >= c->linger_until) close_conn(c);
            continue;
        }
        int queued = 0;
        if (ioctl(c->fd, FIONREAD, &queued) != 0) queued = 0;
        /* Quiet for the grace since the stop too, not only since the last response. The stop itself
         * sets off requests on idle connections: every busy connection of this worker gets a
         * `Connection: close` answer within milliseconds, and a pooling client (hyper's, browsers,
         * Node's agent) sends its next request on another connection from its pool at once, often
         * one to this worker that has sat unused there for longer than the grace. Closing that one
         * at the stop races the request the stop itself caused: the client reads our FIN after
         * writing it (IncompleteMessage). Waiting out the grace after the stop lets that burst land
         * and be answered with `Connection: close`; only connections nobody reaches for are closed. */
        long long quiet_since = c->idle_since > drain_start ? c->idle_since : drain_start;
        if (!c->in_request && c->out_len == 0 && queued == 0 && c->bytes_read == c->idle_bytes &&
            now - quiet_since >= idle_grace)
            close_conn(c);
    }
    compact();
    return nconns;
}

static void close_all(void) {
    for (size_t i = 0; i < nconns; i++) close_conn(conns[i]);
    compact();
}

/* Serves warm-up connections one at a time, blocking, with the app's own handler, until the
 * listener is shut down. Each gets one answer with `Connection: close`. */
static void *serve_warmup(void *arg) {
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL; /* shut down: the warm-up is over */
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c != NULL) {
            c->fd = fd;
            for (;;) {
                ssize_t n = recv(fd, c->in + c->in_len, IN_SIZE - c->in_len, 0);
                if (n <= 0) break;
                c->in_len += (size_t)n;
                /* "draining": the answer says `Connection: close`, one request per connection. */
                if (handle_request(c, 1)) {
                    flush(c, 1);
                    break;
                }
            }
            free(c);
        }
        close(fd);
    }
}

/* The warm-up the master asked for, if any, against a private loopback listener. */
static void warm_up(drover_bus *bus) {
    int private_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof addr;
    pthread_t thread;
    if (private_fd < 0 || bind(private_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(private_fd, 16) != 0 ||
        getsockname(private_fd, (struct sockaddr *)&addr, &addr_len) != 0 ||
        pthread_create(&thread, NULL, serve_warmup, (void *)(intptr_t)private_fd) != 0) {
        perror("worker: no warm-up, cannot serve a loopback listener");
        if (private_fd >= 0) close(private_fd);
        return;
    }
    char address[32];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    drover_warmup_report report = {.size = sizeof report};
    drover_result r = drover_bus_warm_up(bus, address, &report);
    if (r != DROVER_RESULT_OK) die("drover_bus_warm_up", r);
    if (report.asked)
        fprintf(stderr, "worker %llu: warmed up with %u of %u requests in %llu ms%s%s\n",
                (unsigned long long)worker_id, report.done, report.requests, (unsigned long long)report.elapsed_ms,
                report.error ? ": " : "", report.error ? report.error : "");
    drover_string_free(report.error);
    shutdown(private_fd, SHUT_RDWR); /* wakes the thread's accept() */
    pthread_join(thread, NULL);
    close(private_fd);
}

int main(void) {
    drover_bus *bus = NULL;
    drover_result r = drover_bus_open(&bus);
    if (r != DROVER_RESULT_OK) die("drover_bus_open", r);
    drover_bus_worker_id(bus, &worker_id);
    warm_up(bus);
    int listener = listening_socket(bus);
    long idle_grace = env_ms("IDLE_GRACE_MS", 500), drain_timeout = env_ms("DRAIN_TIMEOUT_MS", 10000);
    const char *handlers[] = {"stats"};
    if ((r = drover_bus_set_handlers(bus, handlers, 1)) != DROVER_RESULT_OK) die("drover_bus_set_handlers", r);
    if ((r = drover_bus_set_status_function(bus, "http", http_status, NULL)) != DROVER_RESULT_OK)
        die("drover_bus_set_status_function", r);
    char path[64], pid[32];
    snprintf(path, sizeof path, "workers.%llu", (unsigned long long)worker_id);
    snprintf(pid, sizeof pid, "{\"pid\":%ld}", (long)getpid());
    if ((r = drover_bus_store_set(bus, path, pid, 0)) != DROVER_RESULT_OK) die("drover_bus_store_set", r);
    publish(bus, "SERVING");
    if ((r = drover_bus_send_started(bus)) != DROVER_RESULT_OK) die("drover_bus_send_started", r);

    int bus_fd = -1;
    drover_bus_event_fd(bus, &bus_fd);
    int draining = 0, stopped = 0;
    long long drain_start = 0;
    size_t drained = 0;
    static struct pollfd fds[MAX_CONNS + 2];
    for (;;) {
        /* fds: [0] the bus, [1] the listening socket (or -1: ignored), [2..] the connections. */
        fds[0] = (struct pollfd){bus_fd, POLLIN, 0};
        fds[1] = (struct pollfd){listener >= 0 && nconns < MAX_CONNS ? listener : -1, POLLIN, 0};
        int lingering = 0;
        for (size_t i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            short events = 0;
            if (c->lingering || (!c->closing && c->in_len < IN_SIZE)) events |= POLLIN;
            if (c->out_off < c->out_len) events |= POLLOUT;
            lingering |= c->lingering;
            fds[2 + i] = (struct pollfd){c->fd, events, 0};
        }
        int timeout = draining && !stopped ? (int)(idle_grace / 4 > 0 ? idle_grace / 4 : 1) : lingering ? 100 : -1;
        if (poll(fds, 2 + nconns, timeout) < 0 && errno != EINTR) {
            perror("worker: poll");
            return 1;
        }
        if (fds[0].revents & POLLIN) {
            drover_bus_event event = {.size = sizeof(drover_bus_event)};
            while (drover_bus_next_event(bus, 0, &event) == DROVER_RESULT_OK) {
                int done = 0;
                switch (event.kind) {
                case DROVER_BUS_EVENT_KIND_STOP:
                    if (!draining) {
                        draining = 1;
                        atomic_store(&published_draining, 1);
                        publish(bus, "DRAINING");
                        drain_start = now_ms();
                        drained = nconns;
                        close(listener); /* our copy only: the master keeps the socket and its queue */
                        listener = -1;
                    }
                    break; /* STOPPED is reported below, once drained */
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
                case DROVER_BUS_EVENT_KIND_REQUEST: {
                    /* Only "stats" was declared: the master sends no other name here. */
                    char result[256];
                    snprintf(result, sizeof result, "{\"id\":%llu,\"pid\":%ld,\"connections\":%zu,\"draining\":%s}",
                             (unsigned long long)worker_id, (long)getpid(), nconns, draining ? "true" : "false");
                    drover_bus_respond(bus, event.request_id, result, NULL);
                    break;
                }
                case DROVER_BUS_EVENT_KIND_WORKER_MESSAGE:
                case DROVER_BUS_EVENT_KIND_NONE:
                    break; /* nothing to do with messages from other workers; NONE: a kind to skip */
                default: /* CLOSED: the master is gone */
                    done = 1;
                }
                drover_bus_event_clear(&event);
                if (done) {
                    close_all();
                    if (listener >= 0) close(listener);
                    drover_bus_free(bus);
                    return 0;
                }
            }
        }

        size_t polled = nconns; /* accept_one adds connections after these */
        for (size_t i = 0; i < polled; i++) {
            struct conn *c = conns[i];
            short revents = fds[2 + i].revents;
            if (revents & (POLLIN | POLLHUP | POLLERR)) on_readable(c, draining);
            if (c->fd >= 0 && (revents & POLLOUT)) flush(c, draining);
        }
        if (listener >= 0 && (fds[1].revents & POLLIN)) accept_one(listener);
        long long now = now_ms();
        for (size_t i = 0; i < nconns; i++)
            if (conns[i]->fd >= 0 && conns[i]->lingering && now >= conns[i]->linger_until) close_conn(conns[i]);
        compact();
        atomic_store(&published_connections, nconns);

        if (draining && !stopped) {
            int timed_out = now - drain_start >= drain_timeout;
            if (timed_out) close_all();
            if (drain_step(now, drain_start, idle_grace) == 0) {
                fprintf(stderr, "worker %llu (pid %ld): drained %zu connections in %lld ms%s\n",
                        (unsigned long long)worker_id, (long)getpid(), drained, now - drain_start,
                        timed_out ? " (drain timeout: the rest were closed)" : "");
                drover_bus_send_stopped(bus);
                stopped = 1;
            }
        }
    }
}
