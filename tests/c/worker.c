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
 * then answers {"accepted":<pid>}; anything else is echoed as {"echo":<message>}. A connection
 * the master hands over (a balanced socket: DROVER_BUS_EVENT_KIND_CONNECTION) gets its pid too.
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
 * The master's store and cache (drover_bus_store_* and drover_bus_cache_get_or_load):
 * {"cmd":"store-set","path":P,"value":V[,"ttl_ms":T]} answers {"stored":P} or {"store_error":<result
 * name>,"message":<last error>}; {"cmd":"store-get","path":P} answers {"got":<value>};
 * {"cmd":"watch","path":P} answers {"watching":<watch>}, and each change is reported as
 * {"changed":{"watch":W,"path":P,"value":V}}; {"cmd":"unwatch","watch":W} answers {"unwatched":<bool>};
 * {"cmd":"cache","key":K,"callers":N[,"fail":true]} makes N threads call get_or_load(K) at once with a
 * loader that counts its runs, takes 500 ms and answers {"loaded_by":<pid>} (or fails with "C loader
 * failed on purpose"), and answers {"cache":K,"ok":<successes>,"failed":<failures>,"loads":<loader
 * runs>,"same":<whether every success got the same value>,"value":<a value or null>,"error":<a
 * failure's last error or "">}.
 * {"cmd":"app-status","status":S,"counters":C} publishes them and answers {"app_status":S} (or
 * {"app_status_error":...}); {"cmd":"names"} answers {"name":N,"instance":I,"group":G}.
 * {"cmd":"cache-garbage"} loads the key "garbage" with a loader answering text that is not JSON
 * and answers {"garbage":<result name>,"message":<last error>}.
 * With C_WORKER_STATUS set it registers the status functions "c" ({"id":<id>,"pid":<pid>}),
 * "null" (which cannot say: returns NULL) and "text" (which answers text that is not JSON).
 * Leadership (PROTOCOL.md §5.10): with C_WORKER_LEADERSHIP=KEY it declares the handler "leader:KEY",
 * joins KEY before STARTED, and reports each LEADER event as {"leader_event":{"key":<name>,
 * "from":<from>,"term":<request_id>,"data":<data>}}. While it leads it answers "leader:KEY" with
 * {"result":{"c_leader":<its id>,"args":<args>}}; otherwise it fails it with "not-leader: ...". Deposed,
 * it resigns.
 *
 * Warm-up (PROTOCOL.md §5.11): with C_WORKER_WARMUP=answer|hang it serves a private loopback
 * listener on a thread of its own (answering each request 200, or never), runs
 * drover_bus_warm_up() against it before STARTED, and (still before STARTED) sends
 * {"warmup":{"asked":B,"seen":"<x-drover-warmup values, comma-separated, in order>","done":N,
 * "timed_out":B,"error":<error or null>}}.
 *
 * Before reporting STARTED it checks the bus's error paths; a failed check exits with 90. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* The status function "c": this worker's id and pid (malloc'd, as drover frees it). */
static char *status_c(void *user, const char *name) {
    CHECK(strcmp(name, "c") == 0);
    /* The id was read before: a status function must not call the bus. */
    uint64_t id = *(const uint64_t *)user;
    char *json = malloc(64);
    snprintf(json, 64, "{\"id\":%llu,\"pid\":%ld}", (unsigned long long)id, (long)getpid());
    return json;
}

/* The status function "null": it cannot say. */
static char *status_null(void *user, const char *name) {
    (void)user;
    (void)name;
    return NULL;
}

/* The status function "text": answers text that is not JSON. */
static char *status_text(void *user, const char *name) {
    (void)user;
    (void)name;
    return strdup("{not json");
}

/* A loader that answers text that is not JSON. */
static char *load_garbage(void *user, const char *key, char **out_error) {
    (void)user;
    (void)key;
    (void)out_error;
    return strdup("{oops");
}

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
    /* The store, the cache, statuses: each bad argument is named, nothing is sent. */
    CHECK_ERR(drover_bus_store_get(bus, NULL, &result), DROVER_RESULT_NULL_ARGUMENT, "`path` is NULL");
    CHECK_ERR(drover_bus_store_get(bus, "a", NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_value_json` is NULL");
    CHECK_ERR(drover_bus_store_get(bus, "a.\xff", &result), DROVER_RESULT_INVALID_UTF8, "`path` is not valid UTF-8");
    CHECK_ERR(drover_bus_store_set(bus, "a", "{bad", 0), DROVER_RESULT_INVALID_ARGUMENT,
              "`value_json` is not valid JSON");
    CHECK_ERR(drover_bus_store_set(bus, "a", NULL, 0), DROVER_RESULT_NULL_ARGUMENT, "`value_json` is NULL");
    CHECK_ERR(drover_bus_store_cas(bus, "a", "[", "1", NULL), DROVER_RESULT_INVALID_ARGUMENT,
              "`expected_json` is not valid JSON");
    CHECK_ERR(drover_bus_store_keys(bus, "a", NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_keys_json` is NULL");
    CHECK_ERR(drover_bus_store_watch(bus, "a", NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_watch` is NULL");
    CHECK_ERR(drover_bus_cache_get_or_load(bus, "k", 0, NULL, NULL, &result), DROVER_RESULT_NULL_ARGUMENT,
              "`loader` is NULL");
    CHECK_ERR(drover_bus_set_app_status(bus, "BUSY", "{\"jobs\":\"many\"}"), DROVER_RESULT_INVALID_ARGUMENT,
              "`counters_json` must be a JSON object of numbers");
    CHECK_ERR(drover_bus_set_app_status(bus, "BUSY", "[1]"), DROVER_RESULT_INVALID_ARGUMENT,
              "`counters_json` must be a JSON object of numbers");
    CHECK_ERR(drover_bus_set_app_status(bus, "0123456789012345678901234567890123456789012345678901234567890123456789",
                                        NULL),
              DROVER_RESULT_INVALID_ARGUMENT, "at most 64 bytes");
    CHECK_ERR(drover_bus_set_app_status(bus, "A\nB", NULL), DROVER_RESULT_INVALID_ARGUMENT, "control characters");
    CHECK_ERR(drover_bus_set_app_status(bus, "\xff", NULL), DROVER_RESULT_INVALID_UTF8, "`status`");
    CHECK_ERR(drover_bus_set_status_function(bus, "", status_c, NULL), DROVER_RESULT_INVALID_ARGUMENT, "`name`");
    CHECK_ERR(drover_bus_set_status_function(bus, NULL, status_c, NULL), DROVER_RESULT_NULL_ARGUMENT,
              "`name` is NULL");
    CHECK(result == NULL);
    /* Handlers and status functions are at most 256 together: past it, nothing is sent. */
    static char many[256][8];
    const char *many_names[256];
    for (int i = 0; i < 256; i++) {
        snprintf(many[i], sizeof many[i], "h%d", i);
        many_names[i] = many[i];
    }
    CHECK_OK(drover_bus_set_handlers(bus, many_names, 256));
    CHECK_ERR(drover_bus_set_status_function(bus, "one-more", status_null, NULL), DROVER_RESULT_INVALID_ARGUMENT,
              "257 handlers and status functions together: at most 256");
    CHECK_OK(drover_bus_set_handlers(bus, NULL, 0));
    CHECK_OK(drover_bus_set_status_function(bus, "one-more", status_null, NULL));
    CHECK_OK(drover_bus_set_status_function(bus, "one-more", NULL, NULL));
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

static const char *leadership = NULL;
static int leading = 0;

/* A LEADER event: reported; a deposed leader resigns. */
static void on_leader(drover_bus *bus, const drover_bus_event *event) {
    uint64_t id = 0;
    CHECK_OK(drover_bus_worker_id(bus, &id));
    CHECK(event->name != NULL && event->data != NULL);
    int now = event->from == id;
    CHECK(now == (strstr(event->data, "\"you\":true") != NULL));
    if (leading && !now) CHECK_OK(drover_bus_leader_resign(bus, event->name));
    leading = now;
    char reply[4096];
    snprintf(reply, sizeof reply, "{\"leader_event\":{\"key\":\"%s\",\"from\":%llu,\"term\":%llu,\"data\":%s}}",
             event->name, (unsigned long long)event->from, (unsigned long long)event->request_id, event->data);
    CHECK_OK(drover_bus_send_message(bus, reply));
}

/* Answers a request for one of the handlers of C_WORKER_HANDLERS. */
static void serve_request(drover_bus *bus, const drover_bus_event *event) {
    char result[4096];
    if (leadership != NULL && strncmp(event->name, "leader:", 7) == 0) {
        if (!leading) {
            CHECK_OK(drover_bus_respond(bus, event->request_id, NULL, "not-leader: this C worker does not lead"));
            return;
        }
        uint64_t id = 0;
        CHECK_OK(drover_bus_worker_id(bus, &id));
        snprintf(result, sizeof result, "{\"result\":{\"c_leader\":%llu,\"args\":%s}}", (unsigned long long)id,
                 event->data);
        CHECK_OK(drover_bus_respond(bus, event->request_id, result, NULL));
        return;
    }
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

static void store_set(drover_bus *bus, const char *data, char *reply, size_t size) {
    char path[256], value[2048], ttl[32] = "0";
    CHECK(json_string(data, "path", path, sizeof path) && json_value(data, "value", value, sizeof value));
    json_value(data, "ttl_ms", ttl, sizeof ttl);
    drover_result r = drover_bus_store_set(bus, path, value, atoll(ttl));
    if (r != DROVER_RESULT_OK) {
        failure_reply("store_error", r, reply, size);
        return;
    }
    snprintf(reply, size, "{\"stored\":\"%s\"}", path);
}

static void store_get(drover_bus *bus, const char *data, char *reply, size_t size) {
    char path[256], *value = NULL;
    CHECK(json_string(data, "path", path, sizeof path));
    CHECK_OK(drover_bus_store_get(bus, path, &value));
    snprintf(reply, size, "{\"got\":%s}", value);
    drover_string_free(value);
}

/* One round of {"cmd":"cache"}: what its callers share. */
struct cache_round {
    drover_bus *bus;
    const char *key;
    int fail;
    pthread_mutex_t lock;
    int loads, ok, failed, same;
    char value[256], error[512];
};

/* The loader: counts its runs, takes 500 ms (so that the other callers come while it loads). */
static char *load(void *user, const char *key, char **out_error) {
    struct cache_round *round = user;
    CHECK(strcmp(key, round->key) == 0);
    pthread_mutex_lock(&round->lock);
    round->loads++;
    pthread_mutex_unlock(&round->lock);
    usleep(500 * 1000);
    if (round->fail) {
        *out_error = strdup("C loader failed on purpose");
        return NULL;
    }
    char *json = malloc(64);
    snprintf(json, 64, "{\"loaded_by\":%ld}", (long)getpid());
    return json;
}

static void *cache_caller(void *arg) {
    struct cache_round *round = arg;
    char *value = NULL;
    drover_result r = drover_bus_cache_get_or_load(round->bus, round->key, 0, load, round, &value);
    pthread_mutex_lock(&round->lock);
    if (r == DROVER_RESULT_OK) {
        if (round->ok++ == 0)
            snprintf(round->value, sizeof round->value, "%s", value);
        else if (strcmp(round->value, value) != 0)
            round->same = 0;
        drover_string_free(value);
    } else {
        CHECK(value == NULL);
        round->failed++;
        failure_reply("result", r, round->error, sizeof round->error);
    }
    pthread_mutex_unlock(&round->lock);
    return NULL;
}

static void cache(drover_bus *bus, const char *data, char *reply, size_t size) {
    char key[256], callers[16];
    CHECK(json_string(data, "key", key, sizeof key) && json_value(data, "callers", callers, sizeof callers));
    int n = atoi(callers);
    CHECK(n > 0 && n <= 64);
    struct cache_round round = {.bus = bus, .key = key, .fail = strstr(data, "\"fail\":true") != NULL, .same = 1};
    pthread_mutex_init(&round.lock, NULL);
    pthread_t threads[64];
    for (int i = 0; i < n; i++) CHECK(pthread_create(&threads[i], NULL, cache_caller, &round) == 0);
    for (int i = 0; i < n; i++) CHECK(pthread_join(threads[i], NULL) == 0);
    pthread_mutex_destroy(&round.lock);
    char error[600];
    json_quote(round.error, error, sizeof error);
    snprintf(reply, size, "{\"cache\":\"%s\",\"ok\":%d,\"failed\":%d,\"loads\":%d,\"same\":%s,\"value\":%s,\"error\":%s}",
             key, round.ok, round.failed, round.loads, round.same ? "true" : "false", round.ok ? round.value : "null",
             error);
}

static void app_status(drover_bus *bus, const char *data, char *reply, size_t size) {
    char status[128], counters[1024] = "null";
    CHECK(json_string(data, "status", status, sizeof status));
    json_value(data, "counters", counters, sizeof counters);
    drover_result r = drover_bus_set_app_status(bus, status, strcmp(counters, "null") == 0 ? NULL : counters);
    if (r != DROVER_RESULT_OK) {
        failure_reply("app_status_error", r, reply, size);
        return;
    }
    snprintf(reply, size, "{\"app_status\":\"%s\"}", status);
}

static void names(drover_bus *bus, char *reply, size_t size) {
    char *name = NULL, *group = NULL;
    uint32_t instance = 99;
    CHECK_OK(drover_bus_worker_name(bus, &name));
    CHECK_OK(drover_bus_worker_group(bus, &group));
    CHECK_OK(drover_bus_worker_instance(bus, &instance));
    snprintf(reply, size, "{\"name\":\"%s\",\"instance\":%u,\"group\":\"%s\"}", name, instance, group);
    drover_string_free(name);
    drover_string_free(group);
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
    } else if (strstr(data, "\"cmd\":\"store-set\"") != NULL) {
        store_set(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"store-get\"") != NULL) {
        store_get(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"watch\"") != NULL) {
        char path[256];
        uint64_t watch = 0;
        CHECK(json_string(data, "path", path, sizeof path));
        CHECK_OK(drover_bus_store_watch(bus, path, &watch));
        snprintf(reply, sizeof reply, "{\"watching\":%llu}", (unsigned long long)watch);
    } else if (strstr(data, "\"cmd\":\"unwatch\"") != NULL) {
        char watch[32];
        bool ended = false;
        CHECK(json_value(data, "watch", watch, sizeof watch));
        CHECK_OK(drover_bus_store_unwatch(bus, strtoull(watch, NULL, 10), &ended));
        snprintf(reply, sizeof reply, "{\"unwatched\":%s}", ended ? "true" : "false");
    } else if (strstr(data, "\"cmd\":\"cache-garbage\"") != NULL) {
        char *value = NULL;
        drover_result r = drover_bus_cache_get_or_load(bus, "garbage", 0, load_garbage, NULL, &value);
        CHECK(r != DROVER_RESULT_OK && value == NULL);
        failure_reply("garbage", r, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"cache\"") != NULL) {
        cache(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"app-status\"") != NULL) {
        app_status(bus, data, reply, sizeof reply);
    } else if (strstr(data, "\"cmd\":\"names\"") != NULL) {
        names(bus, reply, sizeof reply);
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
    case DROVER_BUS_EVENT_KIND_STORE_CHANGED: {
        char reply[4096];
        CHECK(event->path != NULL && event->data != NULL && event->watch > 0);
        snprintf(reply, sizeof reply, "{\"changed\":{\"watch\":%llu,\"path\":\"%s\",\"value\":%s}}",
                 (unsigned long long)event->watch, event->path, event->data);
        CHECK_OK(drover_bus_send_message(bus, reply));
        return 1;
    }
    case DROVER_BUS_EVENT_KIND_CONNECTION: {
        /* A connection on a balanced socket: answered with our pid, as {"cmd":"accept"} does. */
        CHECK(event->fd >= 0 && event->data != NULL && event->text != NULL);
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        CHECK(write(event->fd, pid, (size_t)n) == n);
        close(event->fd);
        return 1;
    }
    case DROVER_BUS_EVENT_KIND_LEADER:
        on_leader(bus, event);
        return 1;
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

/* The app's handler for warm-up requests, on its own thread: records each x-drover-warmup value
 * in `seen`, then answers 200 (or, hanging, holds the connection and never answers). */
struct warm_server {
    int listener;
    int hang;
    pthread_mutex_t lock;
    char seen[1024];
};

static void *serve_warmup(void *arg) {
    struct warm_server *server = arg;
    for (;;) {
        int conn = accept(server->listener, NULL, NULL);
        if (conn < 0) return NULL;
        char head[4096];
        size_t len = 0;
        while (len < sizeof head - 1 && (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0)) {
            ssize_t n = read(conn, head + len, 1);
            if (n <= 0) break;
            len += (size_t)n;
        }
        head[len] = '\0';
        const char *mark = strstr(head, "\r\nx-drover-warmup: ");
        if (mark != NULL) {
            mark += strlen("\r\nx-drover-warmup: ");
            pthread_mutex_lock(&server->lock);
            size_t used = strlen(server->seen);
            snprintf(server->seen + used, sizeof server->seen - used, "%s%.*s", used ? "," : "",
                     (int)strcspn(mark, "\r"), mark);
            pthread_mutex_unlock(&server->lock);
        }
        if (server->hang) continue; /* the connection stays open, unanswered */
        const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        CHECK(write(conn, answer, sizeof answer - 1) == (ssize_t)(sizeof answer - 1));
        close(conn);
    }
}

static void warm_up(drover_bus *bus, const char *how) {
    static struct warm_server server = {.lock = PTHREAD_MUTEX_INITIALIZER};
    server.hang = strcmp(how, "hang") == 0;
    server.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(server.listener >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(server.listener, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(server.listener, 16) == 0);
    socklen_t addr_len = sizeof addr;
    CHECK(getsockname(server.listener, (struct sockaddr *)&addr, &addr_len) == 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve_warmup, &server) == 0);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));

    drover_warmup_report report = {.size = sizeof(drover_warmup_report)};
    CHECK_ERR(drover_bus_warm_up(bus, NULL, &report), DROVER_RESULT_NULL_ARGUMENT, "`address` is NULL");
    CHECK_ERR(drover_bus_warm_up(bus, address, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_report` is NULL");
    CHECK_ERR(drover_bus_warm_up(bus, "localhost", &report), DROVER_RESULT_INVALID_ARGUMENT, "`address`");
    CHECK_OK(drover_bus_warm_up(bus, address, &report));

    char json[2048];
    pthread_mutex_lock(&server.lock);
    snprintf(json, sizeof json,
             "{\"warmup\":{\"asked\":%s,\"seen\":\"%s\",\"done\":%u,\"timed_out\":%s,\"error\":%s%s%s}}",
             report.asked ? "true" : "false", server.seen, report.done, report.timed_out ? "true" : "false",
             report.error ? "\"" : "", report.error ? report.error : "null", report.error ? "\"" : "");
    pthread_mutex_unlock(&server.lock);
    drover_string_free(report.error);
    CHECK_OK(drover_bus_send_message(bus, json));
    /* The warm-up is over: the server's accept() wakes up failing, and its thread ends. */
    CHECK(shutdown(server.listener, SHUT_RDWR) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    close(server.listener);
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
    static uint64_t my_id = 0;
    CHECK_OK(drover_bus_worker_id(bus, &my_id));
    if (getenv("C_WORKER_STATUS") != NULL) {
        CHECK_OK(drover_bus_set_status_function(bus, "c", status_c, &my_id));
        CHECK_OK(drover_bus_set_status_function(bus, "null", status_null, NULL));
        CHECK_OK(drover_bus_set_status_function(bus, "text", status_text, NULL));
        CHECK_OK(drover_bus_set_status_function(bus, "gone", status_null, NULL));
        CHECK_OK(drover_bus_set_status_function(bus, "gone", NULL, NULL)); /* removed again */
    }
    leadership = getenv("C_WORKER_LEADERSHIP");
    if (leadership != NULL) {
        char handler[256];
        snprintf(handler, sizeof handler, "leader:%s", leadership);
        const char *handlers[] = {handler};
        CHECK_OK(drover_bus_set_handlers(bus, handlers, 1));
        CHECK_ERR(drover_bus_leader_join(bus, NULL), DROVER_RESULT_NULL_ARGUMENT, "`key` is NULL");
        CHECK_OK(drover_bus_leader_join(bus, leadership));
    }
    const char *warmup = getenv("C_WORKER_WARMUP");
    if (warmup != NULL) warm_up(bus, warmup);
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
