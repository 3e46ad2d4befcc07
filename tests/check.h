/* check.h — the tiny test harness every test binary uses.
 *
 * A test is a void function; CHECK records a failure (with file, line and the expression) and the
 * test goes on so one run shows every broken assertion. Each test prints one TAP-like line:
 *   ok - name
 *   not ok - name
 * tests/run.sh counts those lines over all binaries and prints the final "N passed, N failed".
 * A binary exits 1 if any of its tests failed. */
#ifndef TQ_CHECK_H
#define TQ_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_test_failed;
static int check_passed_total;
static int check_failed_total;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stdout, "#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

/* CHECK with a printf-style explanation printed when it fails. */
#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stdout, "#   %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stdout, __VA_ARGS__);                                                          \
            fputc('\n', stdout);                                                                   \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                           \
            fprintf(stdout, "#   %s:%d: %s == %s: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,  \
                    #a, #b, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");       \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stdout, "#   %s:%d: %s == %s: got %lld, want %lld\n", __FILE__, __LINE__, #a,  \
                    #b, check_a_, check_b_);                                                       \
            check_test_failed = 1;                                                                 \
        }                                                                                          \
    } while (0)

#define RUN(fn) check_run(#fn, fn)

static void check_run(const char *name, void (*fn)(void))
{
    check_test_failed = 0;
    fn();
    if (check_test_failed) {
        check_failed_total++;
        printf("not ok - %s\n", name);
    } else {
        check_passed_total++;
        printf("ok - %s\n", name);
    }
    fflush(stdout);
}

static int check_done(void)
{
    printf("# %d passed, %d failed\n", check_passed_total, check_failed_total);
    return check_failed_total ? 1 : 0;
}

#endif
