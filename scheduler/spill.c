#include "spill.h"

#include "db.h"
#include "log.h"
#include "queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPILL_MAGIC "tierq-spill 1\n"
#define SPILL_END "end\n"
#define SPILL_MAX_FILE ((size_t)1 << 31)   /* a write-back is at most 1,000 calls */
#define SPILL_STALE_S 600                  /* a taken file older than this was left by a dead replay */

const char *spill_default_dir(char *buf, size_t cap)
{
    const char *d = getenv("TIERQ_SPILL_DIR");
    if (d && *d) {
        snprintf(buf, cap, "%s", d);
        return buf;
    }
    const char *state = getenv("XDG_STATE_HOME");
    if (state && *state) {
        snprintf(buf, cap, "%s/tierq/spill", state);
        return buf;
    }
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(buf, cap, "%s/.local/state/tierq/spill", home);
        return buf;
    }
    return NULL;
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir, TqErr *err)
{
    char path[1024];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return tq_err(err, TQ_EINVAL, "spill directory name too long");
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return tq_err(err, TQ_EIO, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return tq_err(err, TQ_EIO, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int spill_write(const char *dir, const char *owner, Call *const *calls, int n, TqErr *err)
{
    char *params[QUEUE_FLUSH_NPARAMS];
    int rc = queue_flush_params(owner, calls, n, params, err);
    if (rc)
        return rc;
    if ((rc = make_dirs(dir, err)))
        goto out;
    static atomic_int seq;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char name[1200], tmp[1300];
    /* the owner names host, pid and a random part: unique across processes and machines */
    snprintf(name, sizeof name, "%s/%lld-%s-%d.spill", dir, (long long)now.tv_sec, owner, atomic_fetch_add(&seq, 1));
    for (char *p = name + strlen(dir) + 1; *p; p++)
        if (*p == '/' || *p == ':')
            *p = '_';
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = tq_err(err, TQ_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    int bad = write_all(fd, SPILL_MAGIC, strlen(SPILL_MAGIC));
    for (int i = 0; i < QUEUE_FLUSH_NPARAMS && !bad; i++) {
        char head[32];
        if (!params[i]) {
            bad = write_all(fd, "-\n", 2);
            continue;
        }
        size_t len = strlen(params[i]);
        int hl = snprintf(head, sizeof head, "%zu\n", len);
        bad = write_all(fd, head, (size_t)hl) || write_all(fd, params[i], len) || write_all(fd, "\n", 1);
    }
    if (!bad)
        bad = write_all(fd, SPILL_END, strlen(SPILL_END)) || fsync(fd) != 0;
    int saved = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (bad || rename(tmp, name) != 0) {
        rc = tq_err(err, TQ_EIO, "cannot write %s: %s", name, strerror(bad ? saved : errno));
        unlink(tmp);
        goto out;
    }
    /* the rename is durable once the directory is synced */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    log_msg(LOG_WARN, "spill", "%d calls written to %s; the next tierq run on this machine writes them back", n, name);
out:
    for (int i = 0; i < QUEUE_FLUSH_NPARAMS; i++)
        free(params[i]);
    return rc;
}

/* Read a whole file (at most SPILL_MAX_FILE bytes) into a NUL-terminated malloc'd buffer. */
static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size < SPILL_MAX_FILE && (data = malloc((size_t)st.st_size + 1))) {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != (size_t)st.st_size) {
            free(data);
            data = NULL;
        } else {
            data[got] = '\0';
            *len = got;
        }
    }
    close(fd);
    return data;
}

/* Point params into data (NUL-terminating each in place). 0, or -1 when the file is malformed. */
static int parse_spill(char *data, size_t len, const char **params)
{
    size_t ml = strlen(SPILL_MAGIC);
    if (len < ml || memcmp(data, SPILL_MAGIC, ml) != 0)
        return -1;
    size_t pos = ml;
    for (int i = 0; i < QUEUE_FLUSH_NPARAMS; i++) {
        /* a spill of an older version ends early: the columns added since are empty arrays */
        if (i >= QUEUE_FLUSH_NPARAMS_V1 && len - pos == strlen(SPILL_END) && memcmp(data + pos, SPILL_END, len - pos) == 0) {
            params[i] = "{}";
            continue;
        }
        if (pos + 2 <= len && data[pos] == '-' && data[pos + 1] == '\n') {
            params[i] = NULL;
            pos += 2;
            continue;
        }
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(data + pos, &end, 10);
        if (errno || end == data + pos || *end != '\n')
            return -1;
        size_t start = (size_t)(end - data) + 1;
        if (n > len || start + n >= len || data[start + n] != '\n')
            return -1;
        data[start + n] = '\0';
        if (strlen(data + start) != n) /* a NUL inside: not what spill_write wrote */
            return -1;
        params[i] = data + start;
        pos = start + n + 1;
    }
    return len - pos == strlen(SPILL_END) && memcmp(data + pos, SPILL_END, len - pos) == 0 ? 0 : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Take a file for replay by renaming it to *.replaying (touched, so its age says when it was taken).
 * Returns true when this process has it. */
static bool take(const char *dir, const char *name, char *taken, size_t cap)
{
    char from[1200];
    snprintf(from, sizeof from, "%s/%s", dir, name);
    if (ends_with(name, ".spill")) {
        snprintf(taken, cap, "%s.replaying", from);
    } else if (ends_with(name, ".spill.replaying")) {
        struct stat st;
        if (stat(from, &st) != 0 || time(NULL) - st.st_mtime < SPILL_STALE_S)
            return false; /* another process is replaying it */
        snprintf(taken, cap, "%s", from);
    } else {
        return false;
    }
    if (strcmp(from, taken) != 0 && rename(from, taken) != 0)
        return false; /* taken by someone else first */
    utimensat(AT_FDCWD, taken, NULL, 0);
    return true;
}

/* Rename taken (NAME.spill.replaying) to NAME.spill plus suffix. */
static void put_back(const char *taken, const char *suffix)
{
    char to[1300];
    size_t n = strlen(taken) - strlen(".replaying");
    snprintf(to, sizeof to, "%.*s%s", (int)n, taken, suffix);
    if (rename(taken, to) != 0)
        log_msg(LOG_ERROR, "spill", "cannot rename %s to %s: %s", taken, to, strerror(errno));
}

int spill_replay(PGconn *c, const char *dir, SpillReplay *out, TqErr *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : tq_err(err, TQ_EIO, "cannot read the spill directory %s: %s", dir, strerror(errno));
    /* names first: the directory changes under us as files are renamed */
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".spill") && !ends_with(e->d_name, ".spill.replaying"))
            continue;
        if (n == cap) {
            int nc = cap ? cap * 2 : 16;
            char **nn = realloc(names, (size_t)nc * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            cap = nc;
        }
        if ((names[n] = strdup(e->d_name)) != NULL)
            n++;
    }
    closedir(d);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char taken[1300];
        if (rc || !take(dir, names[i], taken, sizeof taken)) {
            free(names[i]);
            continue;
        }
        free(names[i]);
        size_t len = 0;
        char *data = read_file(taken, &len);
        const char *params[QUEUE_FLUSH_NPARAMS];
        if (!data || parse_spill(data, len, params) != 0) {
            log_msg(LOG_ERROR, "spill", "%s cannot be read as a spill file; kept as *.unreadable", taken);
            put_back(taken, ".unreadable");
            free(data);
            continue;
        }
        QueueWriteBack wb = {0};
        TqErr e2 = {0};
        if (queue_write_back_params(c, params, &wb, &e2) == 0) {
            out->files++;
            out->done += wb.done;
            out->retry += wb.retry;
            out->failed += wb.failed;
            if (unlink(taken) != 0)
                log_msg(LOG_ERROR, "spill", "replayed %s but cannot remove it: %s (a replay again changes nothing)",
                        taken, strerror(errno));
        } else if (!db_is_broken(c) && !db_error_is_transient(&e2)) {
            out->refused++;
            log_msg(LOG_ERROR, "spill", "PostgreSQL refused %s (%s); kept as *.refused", taken, e2.msg);
            put_back(taken, ".refused");
        } else {
            put_back(taken, "");
            rc = tq_err(err, TQ_EDB, "replaying %s: %s", taken, e2.msg);
        }
        free(data);
    }
    free(names);
    return rc;
}
