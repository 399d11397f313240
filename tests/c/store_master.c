/* A C master and the shared state of issue 18: four C workers (tests/c/worker.c) store, watch and
 * load through the master, which reads and writes the same store; 100 callers in 4 workers load
 * one cache key once; a failing loader fails every waiter and the next call loads again; the
 * workers' C status functions answer drover_master_gather_statuses(); their application status
 * shows in the worker info; and a C recycle predicate replaces a worker, make-before-break, once
 * its uptime and memory cross a threshold.
 *
 * usage: store_master <c-worker> */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

#define DEADLINE_MS 30000
#define WORKERS 4

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Messages read while waiting for another worker's, kept for their turn: workers answer in any order. */
#define KEPT 64
static struct {
    uint64_t id;
    char data[4096];
} kept[KEPT];
static size_t kept_count = 0;

/* The next message from worker `id` (others' messages are kept, other events passed over); its data
 * is copied to `out`. */
static void next_message(drover_master *master, uint64_t id, char *out, size_t size) {
    for (size_t i = 0; i < kept_count; i++) {
        if (kept[i].id != id) continue;
        snprintf(out, size, "%s", kept[i].data);
        memmove(&kept[i], &kept[i + 1], (kept_count - i - 1) * sizeof kept[0]);
        kept_count--;
        return;
    }
    /* Heartbeats come all the time: the deadline is for the message, not for any event. */
    long long deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        drover_event event = {.size = sizeof(drover_event)};
        long long left = deadline - now_ms();
        drover_result r = left <= 0 ? DROVER_RESULT_TIMEOUT : drover_master_next_event(master, left, &event);
        if (r == DROVER_RESULT_TIMEOUT) FAIL("no message from worker %llu within %d ms", (unsigned long long)id, DEADLINE_MS);
        CHECK_OK(r);
        int mine = event.kind == DROVER_EVENT_KIND_MESSAGE && event.worker_id == id;
        if (mine) {
            snprintf(out, size, "%s", event.data);
        } else if (event.kind == DROVER_EVENT_KIND_MESSAGE) {
            CHECK(kept_count < KEPT);
            kept[kept_count].id = event.worker_id;
            snprintf(kept[kept_count].data, sizeof kept[0].data, "%s", event.data);
            kept_count++;
        } else if (event.kind != DROVER_EVENT_KIND_HEARTBEAT) {
            fprintf(stderr, "  (passed over: %s)\n", event.text);
        }
        drover_event_clear(&event);
        if (mine) return;
    }
}

/* Waits for a message from worker `id` containing `needle`, passing over the others. */
static void wait_message(drover_master *master, uint64_t id, const char *needle, char *out, size_t size) {
    for (;;) {
        next_message(master, id, out, size);
        if (strstr(out, needle) != NULL) return;
        fprintf(stderr, "  (passed over from worker %llu: %s)\n", (unsigned long long)id, out);
    }
}

static void send(drover_master *master, uint64_t id, const char *json) { CHECK_OK(drover_master_send(master, id, json)); }

/* The value of worker `id`'s message field "key" as an integer (the message is at most 4 KiB). */
static long long int_of(const char *data, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(data, pattern);
    if (at == NULL) FAIL("no \"%s\" in %s", key, data);
    return atoll(at + strlen(pattern));
}

static void expect_store(drover_master *master, const char *path, const char *want) {
    char *value = NULL;
    CHECK_OK(drover_master_store_get(master, path, &value));
    if (strcmp(value, want) != 0) FAIL("store %s is %s, expected %s", path, value, want);
    drover_string_free(value);
}

/* The recycle predicate's state: armed by the test, the worker it recycles, what it saw. */
struct recycle {
    atomic_int armed;
    atomic_int chosen;
    uint64_t target;
    atomic_int asked;
    /* The most CPU time a worker was seen to have used. */
    atomic_ullong max_cpu_ms;
};

static bool recycle_when(void *user, const drover_worker_stats *stats, char *reason, size_t reason_size) {
    struct recycle *r = user;
    atomic_fetch_add(&r->asked, 1);
    /* What a predicate sees: every field filled. */
    if (stats->size < sizeof(drover_worker_stats) || stats->id == 0 || stats->pid == 0 || stats->name == NULL ||
        strncmp(stats->name, "c-store-", 8) != 0 || stats->counters_json == NULL || stats->instance >= WORKERS) {
        fprintf(stderr, "bad stats for worker %llu\n", (unsigned long long)stats->id);
        exit(1);
    }
    if (!atomic_load(&r->armed) || stats->id != r->target || atomic_load(&r->chosen)) return false;
    unsigned long long cpu = stats->cpu_ms, seen = atomic_load(&r->max_cpu_ms);
    while (cpu > seen && !atomic_compare_exchange_weak(&r->max_cpu_ms, &seen, cpu)) {
    }
    /* Past its thresholds: a second up, a MiB resident (from its heartbeats). */
    if (stats->uptime_ms < 1000 || stats->rss_bytes < 1024 * 1024) return false;
    atomic_store(&r->chosen, 1);
    snprintf(reason, reason_size, "uptime %llu ms, rss %llu bytes, cpu %llu ms: over the limits",
             (unsigned long long)stats->uptime_ms, (unsigned long long)stats->rss_bytes,
             (unsigned long long)stats->cpu_ms);
    return true;
}

static void store_and_watch(drover_master *master) {
    char data[4096];
    /* Names and instances, on both sides. */
    send(master, 1, "{\"cmd\":\"names\"}");
    wait_message(master, 1, "\"name\"", data, sizeof data);
    CHECK(strcmp(data, "{\"group\":\"c-store\",\"instance\":0,\"name\":\"c-store-1\"}") == 0);
    drover_worker_info info = {.size = sizeof(drover_worker_info)};
    CHECK_OK(drover_master_get_worker(master, 2, &info));
    CHECK(strcmp(info.name, "c-store-2") == 0 && info.instance == 1 && info.app_status[0] == '\0');

    /* Worker 1 watches "users"; worker 2 stores below it; the master reads it; worker 1 is told. */
    send(master, 1, "{\"cmd\":\"watch\",\"path\":\"users\"}");
    wait_message(master, 1, "\"watching\"", data, sizeof data);
    long long watch = int_of(data, "watching");
    CHECK(watch > 0);
    send(master, 2, "{\"cmd\":\"store-set\",\"path\":\"users.42\",\"value\":{\"name\":\"ada\"}}");
    wait_message(master, 2, "\"stored\":\"users.42\"", data, sizeof data);
    expect_store(master, "users.42", "{\"name\":\"ada\"}");
    expect_store(master, "users", "{\"42\":{\"name\":\"ada\"}}");
    wait_message(master, 1, "\"changed\"", data, sizeof data);
    char want[512];
    snprintf(want, sizeof want, "{\"changed\":{\"path\":\"users.42\",\"value\":{\"name\":\"ada\"},\"watch\":%lld}}", watch);
    if (strcmp(data, want) != 0) FAIL("%s, expected %s", data, want);

    /* The master writes: the watcher is told, in order; keys, compare-and-set, delete. */
    CHECK_OK(drover_master_store_set(master, "users.7", "\"bob\"", 0));
    CHECK_OK(drover_master_store_set(master, "config.mode", "\"fast\"", 0)); /* not watched */
    bool swapped = false, removed = false;
    CHECK_OK(drover_master_store_cas(master, "users.7", "\"bob\"", "\"carol\"", &swapped));
    CHECK(swapped);
    CHECK_OK(drover_master_store_cas(master, "users.7", "\"bob\"", "\"dave\"", &swapped));
    CHECK(!swapped);
    CHECK_OK(drover_master_store_cas(master, "users.8", NULL, "\"erin\"", &swapped)); /* absent: set */
    CHECK(swapped);
    CHECK_OK(drover_master_store_delete(master, "users.42", &removed));
    CHECK(removed);
    CHECK_OK(drover_master_store_delete(master, "users.42", &removed));
    CHECK(!removed);
    const char *changes[] = {"\"path\":\"users.7\",\"value\":\"bob\"", "\"path\":\"users.7\",\"value\":\"carol\"",
                             "\"path\":\"users.8\",\"value\":\"erin\"", "\"path\":\"users.42\",\"value\":null"};
    for (size_t i = 0; i < sizeof changes / sizeof *changes; i++) {
        next_message(master, 1, data, sizeof data);
        if (strstr(data, changes[i]) == NULL) FAIL("change %zu: %s, expected %s", i, data, changes[i]);
    }
    char *keys = NULL;
    CHECK_OK(drover_master_store_keys(master, "users", &keys));
    CHECK(strcmp(keys, "[\"7\",\"8\"]") == 0);
    drover_string_free(keys);
    CHECK_OK(drover_master_store_keys(master, "", &keys));
    CHECK(strcmp(keys, "[\"config\",\"users\"]") == 0);
    drover_string_free(keys);
    send(master, 3, "{\"cmd\":\"store-get\",\"path\":\"config\"}");
    wait_message(master, 3, "\"got\"", data, sizeof data);
    CHECK(strcmp(data, "{\"got\":{\"mode\":\"fast\"}}") == 0);

    /* A value with a time to live: its watcher is told when it is set and when it expires. */
    send(master, 3, "{\"cmd\":\"watch\",\"path\":\"session\"}");
    wait_message(master, 3, "\"watching\"", data, sizeof data);
    send(master, 2, "{\"cmd\":\"store-set\",\"path\":\"session.x\",\"value\":1,\"ttl_ms\":300}");
    wait_message(master, 3, "\"changed\"", data, sizeof data);
    CHECK(strstr(data, "\"path\":\"session.x\",\"value\":1") != NULL);
    next_message(master, 3, data, sizeof data);
    CHECK(strstr(data, "\"path\":\"session.x\",\"value\":null") != NULL);
    expect_store(master, "session.x", "null");

    /* Unwatched: the next change is not told (the next message from worker 1 is its answer). */
    snprintf(want, sizeof want, "{\"cmd\":\"unwatch\",\"watch\":%lld}", watch);
    send(master, 1, want);
    wait_message(master, 1, "\"unwatched\":true", data, sizeof data);
    CHECK_OK(drover_master_store_set(master, "users.9", "9", 0));
    send(master, 1, "{\"cmd\":\"store-get\",\"path\":\"users.9\"}");
    next_message(master, 1, data, sizeof data);
    CHECK(strcmp(data, "{\"got\":9}") == 0);

    /* Bad input, on the master's side and through a worker. */
    char *value = NULL;
    CHECK_ERR(drover_master_store_get(master, NULL, &value), DROVER_RESULT_NULL_ARGUMENT, "`path` is NULL");
    CHECK_ERR(drover_master_store_set(master, "a..b", "1", 0), DROVER_RESULT_INVALID_ARGUMENT, "a..b");
    CHECK_ERR(drover_master_store_get(master, "a.\xff", &value), DROVER_RESULT_INVALID_UTF8, "`path`");
    CHECK_ERR(drover_master_store_set(master, "x", "{bad", 0), DROVER_RESULT_INVALID_ARGUMENT, "`value_json`");
    CHECK_ERR(drover_master_store_set(master, "users.7.name", "1", 0), DROVER_RESULT_INVALID_ARGUMENT, "users.7");
    CHECK_ERR(drover_master_store_keys(master, "users", NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_keys_json`");
    CHECK_ERR(drover_master_store_get((drover_master *)&info, "x", &value), DROVER_RESULT_INVALID_OBJECT,
              "not a live drover_master");
    CHECK(value == NULL);
    send(master, 2, "{\"cmd\":\"store-set\",\"path\":\"a..b\",\"value\":1}");
    wait_message(master, 2, "\"store_error\"", data, sizeof data);
    CHECK(strstr(data, "DROVER_RESULT_INVALID_ARGUMENT") != NULL && strstr(data, "a..b") != NULL);
    fprintf(stderr, "ok: C workers and a C master share the store and its watches\n");
}

static void cache(drover_master *master) {
    char data[4096], first_value[256] = "";
    /* 100 callers in 4 workers at once: the loader runs once, everyone gets its value. */
    for (uint64_t id = 1; id <= WORKERS; id++) send(master, id, "{\"cmd\":\"cache\",\"key\":\"big\",\"callers\":25}");
    long long loads = 0;
    for (uint64_t id = 1; id <= WORKERS; id++) {
        wait_message(master, id, "\"cache\":\"big\"", data, sizeof data);
        fprintf(stderr, "  worker %llu: %s\n", (unsigned long long)id, data);
        CHECK(int_of(data, "ok") == 25 && int_of(data, "failed") == 0);
        CHECK(strstr(data, "\"same\":true") != NULL);
        const char *value = strstr(data, "\"value\":");
        CHECK(value != NULL);
        if (first_value[0] == '\0') snprintf(first_value, sizeof first_value, "%s", value);
        if (strcmp(first_value, value) != 0) FAIL("worker %llu got %s, another %s", (unsigned long long)id, value, first_value);
        loads += int_of(data, "loads");
    }
    if (loads != 1) FAIL("the loader ran %lld times for 100 callers", loads);

    /* A failing loader fails every caller waiting for it; the next call loads again. */
    send(master, 2, "{\"cmd\":\"cache\",\"key\":\"flaky\",\"callers\":10,\"fail\":true}");
    wait_message(master, 2, "\"cache\":\"flaky\"", data, sizeof data);
    fprintf(stderr, "  failing: %s\n", data);
    CHECK(int_of(data, "ok") == 0 && int_of(data, "failed") == 10);
    CHECK(int_of(data, "loads") >= 1 && int_of(data, "loads") < 10); /* the others waited, and failed with it */
    CHECK(strstr(data, "DROVER_RESULT_HANDLER_FAILED") != NULL && strstr(data, "C loader failed on purpose") != NULL);
    send(master, 3, "{\"cmd\":\"cache\",\"key\":\"flaky\",\"callers\":5}");
    wait_message(master, 3, "\"cache\":\"flaky\"", data, sizeof data);
    CHECK(int_of(data, "ok") == 5 && int_of(data, "loads") == 1);
    /* A loader answering text that is not JSON fails its call, named as such. */
    send(master, 4, "{\"cmd\":\"cache-garbage\"}");
    wait_message(master, 4, "\"garbage\"", data, sizeof data);
    CHECK(strstr(data, "DROVER_RESULT_INVALID_ARGUMENT") != NULL && strstr(data, "not valid JSON") != NULL);
    fprintf(stderr, "ok: get_or_load loads once for 100 callers in 4 C workers, and a failed load is retried\n");
}

static void statuses(drover_master *master) {
    char *gathered = NULL;
    CHECK_ERR(drover_master_gather_statuses(master, 1000, NULL), DROVER_RESULT_NULL_ARGUMENT, "`out_json`");
    CHECK_OK(drover_master_gather_statuses(master, DEADLINE_MS, &gathered));
    fprintf(stderr, "  gathered: %s\n", gathered);
    for (int id = 1; id <= WORKERS; id++) {
        char want[64];
        snprintf(want, sizeof want, "\"%d\":{\"c\":{\"id\":%d,\"pid\":", id, id);
        if (strstr(gathered, want) == NULL) FAIL("%s not in %s", want, gathered);
    }
    CHECK(strstr(gathered, "\"null\":{\"error\":{\"code\":\"handler_failed\",\"message\":\"the status function "
                           "\\\"null\\\" returned NULL\"}}") != NULL);
    CHECK(strstr(gathered, "\"text\":{\"error\":{\"code\":\"handler_failed\",\"message\":\"the status function "
                           "\\\"text\\\" returned text that is not JSON") != NULL);
    CHECK(strstr(gathered, "gone") == NULL);
    drover_string_free(gathered);

    char data[4096];
    send(master, 2, "{\"cmd\":\"app-status\",\"status\":\"PROCESSING\",\"counters\":{\"jobs\":3,\"queue\":12}}");
    wait_message(master, 2, "\"app_status\":\"PROCESSING\"", data, sizeof data);
    drover_worker_info info = {.size = sizeof(drover_worker_info)};
    CHECK_OK(drover_master_get_worker(master, 2, &info));
    CHECK(strcmp(info.app_status, "PROCESSING") == 0);
    char *counters = NULL;
    CHECK_OK(drover_master_worker_counters_json(master, 2, &counters));
    CHECK(strcmp(counters, "{\"jobs\":3.0,\"queue\":12.0}") == 0);
    drover_string_free(counters);
    CHECK_ERR(drover_master_worker_counters_json(master, 99, &counters), DROVER_RESULT_UNKNOWN_WORKER, "99");
    fprintf(stderr, "ok: C status functions answer gather_statuses and the app status shows\n");
}

static void recycles(drover_master *master, struct recycle *r) {
    atomic_store(&r->armed, 1);
    int recycling = 0, replacement_started = 0, exited = 0;
    long long deadline = now_ms() + DEADLINE_MS;
    while (!exited) {
        drover_event event = {.size = sizeof(drover_event)};
        long long left = deadline - now_ms();
        drover_result res = left <= 0 ? DROVER_RESULT_TIMEOUT : drover_master_next_event(master, left, &event);
        if (res == DROVER_RESULT_TIMEOUT) FAIL("no recycling within %d ms (asked %d times)", DEADLINE_MS, atomic_load(&r->asked));
        CHECK_OK(res);
        if (event.kind == DROVER_EVENT_KIND_RECYCLING) {
            CHECK(event.worker_id == r->target);
            CHECK(strstr(event.text, "over the limits") != NULL);
            recycling = 1;
        } else if (recycling && event.kind == DROVER_EVENT_KIND_STATUS && event.worker_id != r->target &&
                   event.to == DROVER_WORKER_STATUS_STARTED) {
            replacement_started = 1;
        } else if (event.kind == DROVER_EVENT_KIND_EXIT && event.worker_id == r->target) {
            /* Make-before-break: its replacement was serving before it was asked to go. */
            CHECK(recycling && replacement_started && event.exit.requested);
            exited = 1;
        }
        drover_event_clear(&event);
    }
    drover_worker_info *workers = NULL;
    size_t count = 0, alive = 0;
    CHECK_OK(drover_master_workers(master, sizeof(drover_worker_info), &workers, &count));
    for (size_t i = 0; i < count; i++) alive += workers[i].alive;
    drover_worker_list_free(workers, count);
    CHECK(alive == WORKERS);
    CHECK(atomic_load(&r->max_cpu_ms) > 0); /* the workers' CPU time is read (they all did work) */
    fprintf(stderr, "ok: a C recycle predicate replaces a worker make-before-break\n");
}

int main(int argc, char **argv) {
    if (argc != 2) FAIL("usage: store_master <c-worker>");
    drover_config *config = NULL;
    CHECK_OK(drover_config_new(&config));
    CHECK_OK(drover_config_set_program(config, argv[1]));
    CHECK_OK(drover_config_set_count(config, WORKERS));
    CHECK_OK(drover_config_set_name(config, "c-store"));
    CHECK_OK(drover_config_set_env(config, "C_WORKER_STATUS", "1"));
    CHECK_OK(drover_config_set_json(config, "{\"heartbeatInterval\":200,\"memoryCheckInterval\":200}"));
    CHECK_OK(drover_config_set_start_timeout_ms(config, 20000));
    CHECK_OK(drover_config_set_stop_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_quit_timeout_ms(config, 3000));
    CHECK_OK(drover_config_set_kill_timeout_ms(config, 1000));
    drover_master *master = NULL;
    CHECK_OK(drover_master_new(config, &master));
    CHECK_OK(drover_config_free(config));

    struct recycle recycle = {.target = 3};
    CHECK_ERR(drover_master_recycle_when(NULL, recycle_when, &recycle), DROVER_RESULT_NULL_ARGUMENT, "`master` is NULL");
    CHECK_OK(drover_master_recycle_when(master, recycle_when, &recycle));
    CHECK_OK(drover_master_start(master, DEADLINE_MS));

    store_and_watch(master);
    cache(master);
    statuses(master);
    recycles(master, &recycle);

    CHECK_OK(drover_master_recycle_when(master, NULL, NULL));
    CHECK_OK(drover_master_graceful_shutdown(master));
    CHECK_OK(drover_master_free(master));
    fprintf(stderr, "ok: free\n");
    return 0;
}
