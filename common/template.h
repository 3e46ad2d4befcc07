/* template.h — "{name}" placeholders in system prompts and per-model body fields.
 *
 * A kind's system prompt (and a model's extra_body strings) may name a job parameter in braces:
 *   "Translate the user's text into {target_language}. Output only the translation."
 * Each job fills it from its params (jobs.params.target_language), else the kind's declared default.
 * A placeholder is "{" name "}" with name = [a-z_][a-z0-9_]{0,62}; anything else in braces is plain
 * text ("{"json": 1}", "{ }", "{Name}", "}}"), so prompts that show JSON examples need no escaping.
 * The literal text "{name}" is written "{{name}}".
 *
 * Pure functions, no allocation beyond the output buffer; safe from any thread. */
#ifndef TQ_TEMPLATE_H
#define TQ_TEMPLATE_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>

#define TEMPLATE_NAME_MAX 63

/* Calls fn(name, name_len, ud) for every placeholder of s[0..n) in order; stops at the first
 * non-zero return and returns it. Returns 0 when fn accepted every placeholder. */
int template_each(const char *s, size_t n, int (*fn)(const char *name, size_t len, void *ud), void *ud);

/* Whether s[0..n) holds at least one placeholder. */
bool template_has(const char *s, size_t n);

/* Append s[0..n) to out with every placeholder replaced by what value(name, len, ud) returns
 * (NULL: TQ_EINVAL, "unknown placeholder {name}" in err) and "{{name}}" turned into "{name}". Returns 0;
 * TQ_EINVAL; TQ_ELIMIT / TQ_ENOMEM from out, which is then restored to its length before the call. */
int template_expand(const char *s, size_t n, const char *(*value)(const char *name, size_t len, void *ud), void *ud,
                    Buf *out, TqErr *err);

#endif
