/* json.h — reading JSON with jsmn (strict mode, parent links) and writing JSON safely.
 *
 * Reading: json_parse tokenizes a document that the caller keeps alive while the JsonDoc is used;
 * tokens are addressed by index (0 is the root). Token storage grows on demand up to max_tokens,
 * so a hostile body cannot make us allocate without bound. A truncated document is TQ_EPARSE with
 * the message "truncated json". Accessors return -1 / an error code on a type mismatch rather
 * than asserting: everything here may come from outside.
 *
 * Writing: json_put_string emits a quoted JSON string with every control character escaped,
 * invalid UTF-8 replaced by U+FFFD, and NUL replaced by U+FFFD as well, because NUL can never be
 * stored in a PostgreSQL text column. */
#ifndef TQ_JSON_H
#define TQ_JSON_H

#include "buf.h"
#include "err.h"
#include "utf8.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { JSON_UNDEFINED = 0, JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_PRIMITIVE } JsonType;

typedef struct JsonDoc {
    const char *js; /* borrowed */
    size_t len;
    void *tok;      /* jsmntok_t[], owned */
    int ntok;
    int cap;
} JsonDoc;

#define JSON_DEFAULT_MAX_TOKENS 1000000

/* Parse js[0..len). On success the doc holds ntok >= 1 tokens. On failure the doc is left empty
 * (safe to json_doc_free). max_tokens <= 0 means JSON_DEFAULT_MAX_TOKENS. */
int json_parse(JsonDoc *doc, const char *js, size_t len, int max_tokens, TqErr *err);
void json_doc_free(JsonDoc *doc);

JsonType json_type(const JsonDoc *doc, int i);
int json_size(const JsonDoc *doc, int i);        /* children of an object/array; -1 if i invalid */
/* Raw bytes of token i (string tokens without quotes, escapes not decoded). */
const char *json_raw(const JsonDoc *doc, int i, size_t *len);
int json_skip(const JsonDoc *doc, int i);        /* index of the token after i's whole subtree */
int json_get(const JsonDoc *doc, int obj, const char *key); /* value index, or -1 */
int json_at(const JsonDoc *doc, int arr, int idx);          /* element index, or -1 */
/* Iterate an object: first key index is obj+1; value is key+1; next key is json_skip(doc, key+1). */

bool json_is_null(const JsonDoc *doc, int i);
/* Whether s[0..n) is a JSON number as RFC 8259 writes it: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
bool json_number_text_ok(const char *s, size_t n);
bool json_eq(const JsonDoc *doc, int i, const char *s); /* string token equals s (raw compare) */

/* Decode the string token i (escapes resolved, UTF-8 made valid, NUL replaced) and append to out. */
int json_string(const JsonDoc *doc, int i, Buf *out, TqErr *err);
/* Decoded copy, malloc'd; NULL if i is not a string or on allocation failure. */
char *json_strdup(const JsonDoc *doc, int i);
int json_int64(const JsonDoc *doc, int i, int64_t *out);  /* integer primitive or integer string */
int json_double(const JsonDoc *doc, int i, double *out);
int json_bool(const JsonDoc *doc, int i, bool *out);

/* Writing. */
int json_put_string(Buf *out, const char *s, size_t n);
int json_put_cstr(Buf *out, const char *s); /* NULL writes null */

#endif
