#include "zpack.h"

#include <zstd.h>

/* One context per thread, kept: making one per answer cost the writer more than compressing. */
static _Thread_local ZSTD_CCtx *kept;

void zpack_thread_done(void)
{
    ZSTD_freeCCtx(kept);
    kept = NULL;
}

int zpack_pack(const void *data, size_t len, int level, Buf *out, TqErr *err)
{
    if (level < 1 || level > 19)
        return tq_err(err, TQ_EINVAL, "zstd level %d is not between 1 and 19", level);
    size_t bound = ZSTD_compressBound(len);
    size_t before = out->len;
    int rc = buf_reserve(out, bound);
    if (rc)
        return tq_err(err, rc, "no room for %zu compressed bytes", bound);
    if (!kept && !(kept = ZSTD_createCCtx()))
        return tq_err(err, TQ_ENOMEM, "zstd: out of memory");
    ZSTD_CCtx *cx = kept;
    /* with the frame's checksum, so a flipped bit in a stored row is an error, not another answer */
    size_t n = ZSTD_CCtx_reset(cx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(n))
        n = ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(n))
        n = ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(n))
        n = ZSTD_compress2(cx, out->data + out->len, bound, data, len);
    if (ZSTD_isError(n)) {
        out->len = before;
        return tq_err(err, TQ_EINVAL, "zstd: %s", ZSTD_getErrorName(n));
    }
    out->len += n;
    return 0;
}

int zpack_unpack(const void *frame, size_t flen, size_t raw_len, size_t max_len, Buf *out, TqErr *err)
{
    if (raw_len > max_len)
        return tq_err(err, TQ_EINVAL, "stored length %zu is above the limit %zu", raw_len, max_len);
    /* the frame's own idea of its size, before allocating anything */
    unsigned long long said = ZSTD_getFrameContentSize(frame, flen);
    if (said == ZSTD_CONTENTSIZE_ERROR)
        return tq_err(err, TQ_EINVAL, "not a zstd frame");
    if (said == ZSTD_CONTENTSIZE_UNKNOWN || said != raw_len)
        return tq_err(err, TQ_EINVAL, "the frame holds %s bytes, the row says %zu",
                      said == ZSTD_CONTENTSIZE_UNKNOWN ? "an unknown number of" : "another number of", raw_len);
    size_t whole = ZSTD_findFrameCompressedSize(frame, flen);
    if (ZSTD_isError(whole) || whole != flen)
        return tq_err(err, TQ_EINVAL, "not exactly one whole zstd frame");
    size_t before = out->len;
    int rc = buf_reserve(out, raw_len + 1);
    if (rc)
        return tq_err(err, rc, "no room for %zu bytes", raw_len);
    size_t n = ZSTD_decompress(out->data + out->len, raw_len, frame, flen);
    if (ZSTD_isError(n) || n != raw_len) {
        out->len = before;
        return tq_err(err, TQ_EINVAL, "zstd: %s", ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame");
    }
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}
