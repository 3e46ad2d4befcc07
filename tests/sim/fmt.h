/* fmt.h — number formatting for hot paths, without printf's cost (every response carries a dozen
 * integers and logprobs carry several per token). All return 0 or the buf_append error. */
#ifndef SIM_FMT_H
#define SIM_FMT_H

#include "buf.h"

#include <stdint.h>

int fmt_i64(Buf *b, int64_t v);
int fmt_u64(Buf *b, uint64_t v);
/* v with exactly 6 decimals ("-0.105361"); |v| must be below 1e12. */
int fmt_fixed6(Buf *b, double v);
/* Append s (a C string literal), then v: the common `"key":value` step. */
int fmt_kv(Buf *b, const char *s, int64_t v);

#endif
