/* Assertions shared by drover's C tests. Each failure prints where, what, and drover's last error,
 * and exits with status 1. */
#ifndef DROVER_TEST_CHECK_H
#define DROVER_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) FAIL("check failed: %s", #cond);                                              \
    } while (0)

/* The call must succeed. */
#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        drover_result r_ = (call);                                                                 \
        if (r_ != DROVER_RESULT_OK)                                                                \
            FAIL("%s -> %s: %s", #call, drover_result_name(r_), drover_last_error());              \
        if (drover_last_error()[0] != '\0')                                                        \
            FAIL("%s succeeded but left a last error: %s", #call, drover_last_error());            \
    } while (0)

/* The call must fail with `code`, and drover_last_error() must contain `needle`. */
#define CHECK_ERR(call, code, needle)                                                              \
    do {                                                                                           \
        drover_result r_ = (call);                                                                 \
        if (r_ != (code))                                                                          \
            FAIL("%s -> %s (%s), expected %s", #call, drover_result_name(r_),                      \
                 drover_last_error(), drover_result_name(code));                                   \
        if (strstr(drover_last_error(), (needle)) == NULL)                                         \
            FAIL("%s: last error \"%s\" does not mention \"%s\"", #call, drover_last_error(),      \
                 (needle));                                                                        \
    } while (0)

#endif
