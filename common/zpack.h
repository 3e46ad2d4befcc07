/* zpack.h — zstd frames for stored text (the response cache keeps answers compressed, issue 14).
 *
 * A frame records its own decompressed size and a checksum of the content; zpack_unpack checks the
 * size against the length the row says and against a cap before allocating, and zstd checks the
 * checksum, so a corrupt or hostile row is an error — never a crash, never an unbounded allocation,
 * never another answer served. */
#ifndef TQ_ZPACK_H
#define TQ_ZPACK_H

#include "buf.h"
#include "err.h"

#include <stddef.h>

#define ZPACK_DEFAULT_LEVEL 3

/* Append to out the zstd frame of data[0..len) at level (1..19). Returns 0, TQ_EINVAL (bad level) or
 * a Buf error; out is restored to its length on failure. */
int zpack_pack(const void *data, size_t len, int level, Buf *out, TqErr *err);

/* A thread that packed frees the compression context it kept (at its end). */
void zpack_thread_done(void);

/* Append to out the data of the frame frame[0..flen), which must decompress to exactly raw_len bytes
 * (at most max_len). Returns 0; TQ_EINVAL (not one whole zstd frame, a size other than raw_len,
 * above max_len, corrupt data: err says which) or a Buf error; out is restored on failure. */
int zpack_unpack(const void *frame, size_t flen, size_t raw_len, size_t max_len, Buf *out, TqErr *err);

#endif
