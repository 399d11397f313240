/* A drover worker written in C, supervised by the tests' masters (C and Rust).
 *
 * C_WORKER_MODE: "poll" (default: waits on drover_bus_event_fd() with poll()), "blocking" (waits
 * in drover_bus_next_event() with a timeout), "exit-before-start:<code>".
 * Messages: {"cmd":"exit","code":N} exits with N; {"cmd":"pid"} answers {"pid":<pid>};
 * {"cmd":"meta"} answers {"meta":<drover_bus_meta_json()>};
 * {"cmd":"listen","address":A} asks the master for a socket on A with drover_bus_listen() and
 * answers {"local":<bound address>,"ino":<the socket's inode>} (two workers holding the same
 * socket see the same inode) or {"error":<result name>,"message":<last error>};
 * {"cmd":"accept"} accepts one connection on that socket, writes its pid to it and closes it,
 * then answers {"accepted":<pid>}; anything else is echoed as {"echo":<message>}.
 *
 * Requests (drover_bus_request and friends): with C_WORKER_HANDLERS set (any value) it declares
 * the handlers "c-echo" (answers {"c_echo":<args>}), "c-fail" (fails with "C failed on purpose")
 * and "c-whoami" (answers {"id":<its id>}). {"cmd":"request","to":T,"name":N,"args":A} makes a
 * request and answers {"response":<result>} or {"request_error":<result name>,"message":<last
 * error>}; {"cmd":"send-to","to":T,"data":D} answers {"sent":<count>} or {"send_error":<result
 * name>,"message":<last error>}; a message from another worker is reported as
 * {"from":<id>,"got":<data>}. A RECONFIGURE event is answered: refused ("the C worker refuses it")
 * for a config with a "refuse" key, applied otherwise.
 *
 * Before reporting STARTED it checks the bus's error paths; a failed check exits with 90. */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    int fd = -1;
    char *local = NULL;
    CHECK_ERR(drover_bus_listen(NULL, "127.0.0.1:0", 1000, &fd, &local), DROVER_RESULT_NULL_ARGUMENT, "`bus` is NULL");
    CHECK_ERR(drover_bus_listen(bus, NULL, 1000, &fd, &local), DROVER_RESULT_NULL_ARGUMENT, "`address` is NULL");
    CHECK_ERR(drover_bus_listen(bus, "127.0.0.1:0", 1000, NULL, &local), DROVER_RESULT_NULL_ARGUMENT,
              "`out_fd` is NULL");
    CHECK_ERR(drover_bus_listen(bus, "127.0.0.1:\xff", 1000, &fd, &local), DROVER_RESULT_INVALID_UTF8,
              "`address` is not valid UTF-8");
    CHECK_ERR(drover_bus_listen(bus, "not an address", 1000, &fd, &local), DROVER_RESULT_INVALID_ARGUMENT,
              "`not an address` is not a listen address");
    CHECK_ERR(drover_bus_listen(bus, "unix:", 1000, &fd, &local), DROVER_RESULT_INVALID_ARGUMENT,
              "empty Unix socket path");
    CHECK(fd == -1 && local == NULL); /* out-parameters are written only on success */
    uint64_t id = 0;
    CHECK_OK(drover_bus_worker_id(bus, &id));
    CHECK(id >= 1);
    drover_bus_event event = {.size = sizeof(drover_bus_event)};
    CHECK_ERR(drover_bus_next_event(bus, 0, &event), DROVER_RESULT_TIMEOUT, "nothing from the master");
    const char *names[] = {"ok", "bad\nname"};
    CHECK_ERR(drover_bus_set_handlers(bus, names, 2), DROVER_RESULT_INVALID_ARGUMENT, "`names[1]`");
    CHECK_ERR(drover_bus_set_handlers(bus, NULL, 1), DROVER_RESULT_NULL_ARGUMENT, "`names` is NULL");
    char *result = NULL;
    CHECK_ERR(drover_bus_request(bus, "everyone", "x", NULL, 1000, &result), DROVER_RESULT_INVALID_ARGUMENT,
              "\"everyone\" is not a target");
    CHECK_ERR(drover_bus_request(bus, "master", "x", "{bad", 1000, &result), DROVER_RESULT_INVALID_ARGUMENT,
              "`args_json` is not valid JSON");
    CHECK_ERR(drover_bus_request(bus, "master", NULL, NULL, 1000, &result), DROVER_RESULT_NULL_ARGUMENT,
              "`name` is NULL");
    CHECK(result == NULL);
    CHECK_ERR(drover_bus_respond(bus, 12345, "1", NULL), DROVER_RESULT_NO_SUCH_REQUEST, "no request 12345");
    CHECK_ERR(drover_bus_send_to(bus, "worker:0", "1", NULL), DROVER_RESULT_INVALID_ARGUMENT, "positive integer");
    drover_bus_event unsized = {0};
    CHECK_ERR(drover_bus_next_event(bus, 0, &unsized), DROVER_RESULT_INVALID_ARGUMENT,
              "`out_event->size` is 0: set it to sizeof(drover_bus_event)");
}

/* The status main() exits with. */
static int exit_status = 0;

/* The socket from the last successful {"cmd":"listen"}, -1 before. */
static int listen_fd = -1;

/* Where the value of "key" in the JSON text `data` starts (just past `"key":` and `then`), or NULL. */
static const char *value_of(const char *data, const char *key, const char *then) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":%s", key, then);
    const char *start = strstr(data, pattern);
    return start == NULL ? NULL : start + strlen(pattern);
}

/* Copies [start, end) into `out` as a string; 0 if it does not fit. */
static int copy_span(const char *start, const char *end, char *out, size_t size) {
    if (end == NULL || (size_t)(end - start) >= size) return 0;
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return 1;
}

/* Copies the string value of "key" in the JSON text `data` (no escapes inside) into `out`. */
static int json_string(const char *data, const char *key, char *out, size_t size) {
    const char *start = value_of(data, key, "\"");
    return start != NULL && copy_span(start, strchr(start, '"'), out, size);
}

/* `text` as a JSON string (quotes and backslashes escaped, control characters dropped). */
static void json_quote(const char *text, char *out, size_t size) {
    size_t n = 0;
    out[n++] = '"';
    for (; *text != '\0' && n + 3 < size; text++) {
        if (*text == '"' || *text == '\\') out[n++] = '\\';
        if ((unsigned char)*text >= 0x20) out[n++] = *text;
    }
    out[n++] = '"';
    out[n] = '\0';
}

/* Copies the raw JSON value of "key" in `data` (an object, list, string or scalar) into `out`. */
static int json_value(const char *data, const char *key, char *out, size_t size) {
    const char *start = value_of(data, key, "");
    if (start == NULL) return 0;
    const char *end = start;
    int depth = 0, in_string = 0;
    for (; *end != '\0'; end++) {
        if (in_string) {
            if (*end == '\\' && end[1] != '\0') end++;
            else if (*end == '"') in_string = 0;
        } else if (*end == '"') {
            in_string = 1;
        } else if (*end == '{' || *end == '[') {
            depth++;
        } else if (*end == '}' || *end == ']') {
            if (depth == 0) break;
            depth--;
        } else if (*end == ',' && depth == 0) {
            break;
        }
    }
    return copy_span(start, end, out, size);
}

/* {"<key>":"<result name>","message":<last error>} for a failed call. */
static void failure_reply(const char *key, drover_result r, char *reply, size_t size) {
    char message[1024];
    json_quote(drover_last_error(), message, sizeof message);
    snprintf(reply, size, "{\"%s\":\"%s\",\"message\":%s}", key, drover_result_name(r), message);
}

static void make_request(drover_bus *bus, const char *data, char *reply, size_t size) {
    char to[256], name[256], args[2048] = "null";
    CHECK(json_string(data, "to", to, sizeof to) && json_string(data, "name", name, sizeof name));
    json_value(data, "args", args, sizeof args);
    char *result = NULL;
    drover_result r = drover_bus_request(bus, to, name, args, 20000, &result);
    if (r != DROVER_RESULT_OK) {
        CHECK(result == NULL);
        failure_reply("request_error", r, reply, size);
        return;
    }
    snprintf(reply, size, "{\"response\":%s}", result);
    drover_string_free(result);
}

static void send_to(drover_bus *bus, const char *data, char *reply, size_t size) {
    char to[256], payload[2048];
    CHECK(json_string(data, "to", to, sizeof to) && json_value(data, "data", payload, sizeof payload));
    uint64_t count = 0;
    drover_result r = drover_bus_send_to(bus, to, payload, &count);
    if (r != DROVER_RESULT_OK) {
        failure_reply("send_error", r, reply, size);
        return;
    }
    snprintf(reply, size, "{\"sent\":%llu}", (unsigned long long)count);
}

/* Answers a request for one of the handlers of C_WORKER_HANDLERS. */
static void serve_request(drover_bus *bus, const drover_bus_event *event) {
    char result[4096];
    if (strcmp(event->name, "c-echo") == 0) {
        snprintf(result, sizeof result, "{\"c_echo\":%s}", event->data);
    } else if (strcmp(event->name, "c-whoami") == 0) {
        uint64_t id = 0;
        CHECK_OK(drover_bus_worker_id(bus, &id));
        snprintf(result, sizeof result, "{\"id\":%llu}", (unsigned long long)id);
    } else {
        CHECK_OK(drover_bus_respond(bus, event->request_id, NULL, "C failed on purpose"));
        CHECK_ERR(drover_bus_respond(bus, event->request_id, "1", NULL), DROVER_RESULT_NO_SUCH_REQUEST,
                  "answered already");
        return;
    }
    CHECK_ERR(drover_bus_respond(bus, event->request_id, "{not json", NULL), DROVER_RESULT_INVALID_ARGUMENT,
              "`result_json` is not valid JSON");
    CHECK_OK(drover_bus_respond(bus, event->request_id, result, NULL));
}

static void listen_on(drover_bus *bus, const char *data, char *reply, size_t size) {
    char address[256];
    CHECK(json_string(data, "address", address, sizeof address));
    int fd = -1;
    char *local = NULL;
    drover_result r = drover_bus_listen(bus, address, 10000, &fd, &local);
    if (r != DROVER_RESULT_OK) {
        char message[1024];
        json_quote(drover_last_error(), message, sizeof message);
        snprintf(reply, size, "{\"error\":\"%s\",\"message\":%s}", drover_result_name(r), message);
        return;
    }
    CHECK(fd >= 0 && local != NULL);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode));
    if (listen_fd >= 0) close(listen_fd);
    listen_fd = fd;
    snprintf(reply, size, "{\"local\":\"%s\",\"ino\":%llu}", local, (unsigned long long)st.st_ino);
    drover_string_free(local);
}

static void accept_one(char *reply, size_t size) {
    CHECK(listen_fd >= 0);
    int client = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(client >= 0);
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld", (long)getpid());
    CHECK(write(client, pid, (size_t)len) == len);
    close(client);
    snprintf(reply, size, "{\"accepted\":%s}", pid);
}

/* Answers a message; returns 0 when it asked the worker to exit. */
static int answer(drover_bus *bus, const char *data) {
    char reply[4096];
    if (strstr(data, "\"cmd\":\"exit\"") != NULL) {
        const char *code = strstr(data, "\"code\":");
        exit_status = code ? atoi(code + 7) : 0;
        return 0;
    } else if (strstr(data, "\"cmd\":\"pid\"") != NULL) {
        snprintf(reply, sizeof reply, "{\"pid\":%ld}", (long)getpid());
    } else if (strstr(data, "\"cmd\":\"listen\"") != NULL) {
        listen_on(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"accept\"") != NULL) {
        accept_one(reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"request\"") != NULL) {
        make_request(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"send-to\"") != NULL) {
        send_to(bus, data, reply, sizeof reply);
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
    case DROVER_BUS_EVENT_KIND_REQUEST:
        serve_request(bus, event);
        return 1;
    case DROVER_BUS_EVENT_KIND_WORKER_MESSAGE: {
        char reply[4096];
        snprintf(reply, sizeof reply, "{\"from\":%llu,\"got\":%s}", (unsigned long long)event->from, event->data);
        CHECK_OK(drover_bus_send_message(bus, reply));
        return 1;
    }
    case DROVER_BUS_EVENT_KIND_RECONFIGURE:
        /* A config with "refuse" is refused with a reason; any other is applied. */
        CHECK(event->request_id > 0 && event->data != NULL);
        if (strstr(event->data, "\"refuse\"") != NULL)
            CHECK_OK(drover_bus_ack_reconfigure(bus, event->request_id, "the C worker refuses it"));
        else
            CHECK_OK(drover_bus_ack_reconfigure(bus, event->request_id, NULL));
        return 1;
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
    if (getenv("C_WORKER_HANDLERS") != NULL) {
        const char *handlers[] = {"c-echo", "c-fail", "c-whoami"};
        CHECK_OK(drover_bus_set_handlers(bus, handlers, 3));
    }
    CHECK_OK(drover_bus_send_started(bus));

    int fd = -1;
    CHECK_OK(drover_bus_event_fd(bus, &fd));
    int running = 1;
    while (running) {
        drover_bus_event event = {.size = sizeof(drover_bus_event)};
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
    if (listen_fd >= 0) close(listen_fd);
    CHECK_OK(drover_bus_free(bus));
    return exit_status;
}
