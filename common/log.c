#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MAX_SECRETS 32
#define LOG_LINE_MAX 4096

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static LogLevel log_min = LOG_INFO;
static char *log_secrets[LOG_MAX_SECRETS];
static int log_nsecrets;

void log_set_level(LogLevel level) { log_min = level; }

#define LOG_ONCE_MAX 256
static char *log_once_keys[LOG_ONCE_MAX];
static int log_nonce;

bool log_first_time(const char *key)
{
    bool first = true;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < log_nonce && first; i++)
        if (strcmp(log_once_keys[i], key) == 0)
            first = false;
    if (first && log_nonce < LOG_ONCE_MAX) {
        char *copy = strdup(key);
        if (copy)
            log_once_keys[log_nonce++] = copy;
    }
    pthread_mutex_unlock(&log_lock);
    return first;
}

LogLevel log_level_from_env(void)
{
    const char *v = getenv("TIERQ_LOG");
    if (!v) return LOG_INFO;
    if (strcmp(v, "debug") == 0) return LOG_DEBUG;
    if (strcmp(v, "warn") == 0) return LOG_WARN;
    if (strcmp(v, "error") == 0) return LOG_ERROR;
    return LOG_INFO;
}

void log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 6)
        return;
    pthread_mutex_lock(&log_lock);
    if (log_nsecrets < LOG_MAX_SECRETS)
        log_secrets[log_nsecrets++] = strdup(secret);
    pthread_mutex_unlock(&log_lock);
}

/* Replace every registered secret in line (in place; "[redacted]" may be longer than a short
 * secret, so we rebuild into a second buffer). */
static void log_redact(char *line, size_t cap)
{
    for (int s = 0; s < log_nsecrets; s++) {
        const char *sec = log_secrets[s];
        size_t sl = strlen(sec);
        char *hit;
        while ((hit = strstr(line, sec)) != NULL) {
            char tmp[LOG_LINE_MAX];
            size_t head = (size_t)(hit - line);
            snprintf(tmp, sizeof tmp, "%.*s[redacted]%s", (int)head, line, hit + sl);
            snprintf(line, cap, "%s", tmp);
        }
    }
}

char *log_scrub_dup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    size_t cap = n + 1 + 16 * (size_t)LOG_MAX_SECRETS; /* "[redacted]" may be longer than a secret */
    if (cap > LOG_LINE_MAX)
        cap = n + 1 > LOG_LINE_MAX ? n + 1 : LOG_LINE_MAX;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    memcpy(out, s, n + 1);
    pthread_mutex_lock(&log_lock);
    if (log_nsecrets > 0 && n < LOG_LINE_MAX)
        log_redact(out, cap);
    pthread_mutex_unlock(&log_lock);
    return out;
}

void log_msg(LogLevel level, const char *module, const char *fmt, ...)
{
    if (level < log_min)
        return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[LOG_LINE_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level], module);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    log_redact(line, sizeof line);
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len++] = '\n';
        line[len] = '\0';
    }
    fwrite(line, 1, len, stderr);
    pthread_mutex_unlock(&log_lock);
}
