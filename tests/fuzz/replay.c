/* replay.c — run one harness over files, without a fuzzing engine.
 *
 *   fuzz_replay_<name> PATH...
 *
 * Each PATH is a file or a directory; every regular file of a directory (not its subdirectories,
 * not dot files) is one input, in name order. A PATH that does not exist is skipped, so the crash
 * regression directory may be absent. Each input is read into a buffer of exactly its size (so an
 * ASan build catches a read past the end, as under libFuzzer) and handed to LLVMFuzzerTestOneInput.
 * The path is printed before the input runs, so a crash names its input. Ends with
 * "replayed N inputs"; exit 0, or 1 when an input could not be read. */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#define REPLAY_MAX_INPUT (1u << 20) /* libFuzzer runs us with -max_len 8192; a corpus file is small */

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    while (!rc) {
        if (n == cap) {
            uint8_t *grown = cap < REPLAY_MAX_INPUT ? realloc(buf, cap * 2) : NULL;
            if (!grown) {
                fprintf(stderr, "replay: %s: larger than %u bytes\n", path, REPLAY_MAX_INPUT);
                rc = -1;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                fprintf(stderr, "replay: %s: read error\n", path);
                rc = -1;
            }
            break;
        }
    }
    fclose(f);
    if (!rc) {
        /* an exact-size copy: the bytes after the input must not be readable */
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact) {
            rc = -1;
        } else {
            if (n)
                memcpy(exact, buf, n);
            printf("  %s\n", path);
            fflush(stdout);
            LLVMFuzzerTestOneInput(exact, n);
            free(exact);
        }
    }
    free(buf);
    return rc;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file of dir, in name order. Returns the number replayed, or -1. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !rc) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *grown);
            if (!grown) {
                rc = -1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(dir) + 1 + strlen(e->d_name) + 1;
        if (!(names[n] = malloc(len))) {
            rc = -1;
            break;
        }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!rc && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(names[i]))
                rc = -1;
            else
                count++;
        }
        free(names[i]);
    }
    free(names);
    return rc ? -1 : count;
}

int main(int argc, char **argv)
{
    int total = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0)
            continue; /* an absent regression directory is fine */
        if (S_ISDIR(st.st_mode)) {
            int n = replay_dir(argv[i]);
            if (n < 0)
                failed = 1;
            else
                total += n;
        } else if (replay_file(argv[i])) {
            failed = 1;
        } else {
            total++;
        }
    }
    printf("replayed %d inputs\n", total);
    return failed;
}
