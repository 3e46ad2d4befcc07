/* fuzz.h — what every harness in tests/fuzz/ shares.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput and is linked two ways: with libFuzzer and
 * ASan+UBSan (make fuzz, clang), and with replay.c and the normal compiler (make, make asan), which
 * feeds it the committed corpus so make test replays every input found so far.
 *
 * A harness must return 0 for every input and never crash, leak or hit undefined behaviour. Beyond
 * that it checks the contracts the headers promise (FUZZ_ASSERT): an output that breaks one is a bug
 * even when no sanitizer notices, and aborting makes libFuzzer keep the input. */
#ifndef TQ_FUZZ_H
#define TQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken contract: say which, then abort so the input is kept (libFuzzer) or the replay fails. */
#define FUZZ_ASSERT(cond, what)                                                                     \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "%s:%d: contract broken: %s (%s)\n", __FILE__, __LINE__, what, #cond); \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

/* Whether the open finding `name` (one of tests/fuzz/found/README.md's) is listed in the environment
 * variable TIERQ_FUZZ_KNOWN ("bearer_ws,judge_nan"): its contract check is then skipped, so a fuzzing
 * session can explore past a bug that is reported but not fixed yet. Unset, every check applies
 * (make test, and make fuzz by default). */
static inline int fuzz_known(const char *name)
{
    const char *k = getenv("TIERQ_FUZZ_KNOWN");
    size_t n = strlen(name);
    for (const char *p = k ? strstr(k, name) : NULL; p; p = strstr(p + 1, name))
        if ((p == k || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* FUZZ_ASSERT for a contract an open finding breaks (see fuzz_known). */
#define FUZZ_ASSERT_UNLESS_KNOWN(name, cond, what)                                                  \
    do {                                                                                            \
        if (!fuzz_known(name))                                                                      \
            FUZZ_ASSERT(cond, what);                                                                \
    } while (0)

/* data[0..size) as a malloc'd NUL-terminated string (for the functions that take C strings); the
 * copy stops at the first NUL, as a C string would. Aborts on allocation failure, which is not a
 * finding. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Whether s[0..n) holds no ASCII control character (C0 or DEL): "one printable line". */
static inline int fuzz_one_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Whether the fixed-size field f[cap] is NUL-terminated inside its storage. */
static inline int fuzz_terminated(const char *f, size_t cap) { return memchr(f, '\0', cap) != NULL; }

#endif
