/* utf8.h — the one UTF-8 codec: decode, encode, validate, repair and cut on a character boundary.
 *
 * Everything that reaches PostgreSQL, a log line or a JSON body passes through these: text from
 * outside (prompts, provider answers, error bodies) may hold any bytes, and a text column accepts
 * neither invalid UTF-8 nor NUL. Pure functions, any thread. */
#ifndef TQ_UTF8_H
#define TQ_UTF8_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode the character at s[0..n): its length (1..4) with *cp set, or 0 when the bytes there are
 * not valid UTF-8 (overlong, surrogate, beyond U+10FFFF, cut short). NUL decodes as a 1-byte
 * character U+0000. */
size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Encode a Unicode scalar value (not a surrogate, <= U+10FFFF) into out; returns its length. */
size_t utf8_encode(uint32_t cp, char out[4]);
/* Whether s[0..n) is valid UTF-8 without NUL bytes. */
bool utf8_valid(const char *s, size_t n);
/* Append s[0..n) to out with invalid sequences and NUL bytes replaced by U+FFFD. */
int utf8_sanitize(Buf *out, const char *s, size_t n);
/* The largest m <= n such that s[0..m) does not end inside a character. */
size_t utf8_cut(const char *s, size_t n, size_t m);
/* Copy src[0..n) into dst[0..cap) NUL-terminated; when it does not fit, cut on a character
 * boundary and end with "...". cap < 4 gives "" (when cap > 0). */
void utf8_copy_cut(char *dst, size_t cap, const char *src, size_t n);
/* Make the NUL-terminated s one printable line in place: every byte of an invalid sequence, every
 * control character (C0, DEL, and the C1 range U+0080..U+009F) becomes '?'. For messages that quote
 * text from files or the network. */
void utf8_one_line(char *s);

#endif
