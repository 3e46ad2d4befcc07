/* log.h — one line per event on stderr: time, level, module, message, key=value details.
 *
 * Secrets registered with log_add_secret are replaced by "[redacted]" in every line, as a second
 * line of defence: code must still never format a secret on purpose. Thread-safe: each line is
 * written with one fwrite under a lock. */
#ifndef TQ_LOG_H
#define TQ_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

void log_set_level(LogLevel level);
LogLevel log_level_from_env(void); /* TIERQ_LOG=debug|info|warn|error, default info */
/* Register a secret (copied) to redact; strings shorter than 6 bytes are ignored. */
void log_add_secret(const char *secret);
/* A copy of s (malloc'd; NULL for NULL or out of memory) with every registered secret replaced by
 * "[redacted]": for text from outside that is about to be stored (a provider's error body may echo
 * an API key in any form). Strings longer than a log line are copied unchanged. */
char *log_scrub_dup(const char *s);

/* True the first time a key is seen in this process (thread-safe): for warnings worth one line per
 * model or provider, not one per request. After 256 distinct keys every key counts as new again. */
bool log_first_time(const char *key);
void log_msg(LogLevel level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
