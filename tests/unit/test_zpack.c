/* zpack: a round trip, and every way a stored frame can be wrong refused without a crash. */
#include "../check.h"
#include "zpack.h"

#include <string.h>

static void test_round_trip_and_ratio(void)
{
    const char *text = "The answer is positive. The answer is positive. The answer is positive. The answer is positive.";
    Buf z, back;
    buf_init(&z, 1 << 20);
    buf_init(&back, 1 << 20);
    TqErr err = {0};
    CHECK_INT(zpack_pack(text, strlen(text), ZPACK_DEFAULT_LEVEL, &z, &err), 0);
    CHECKF(z.len < strlen(text), "compressed %zu of %zu", z.len, strlen(text));
    CHECK_INT(zpack_unpack(z.data, z.len, strlen(text), 1 << 20, &back, &err), 0);
    CHECK_STR(back.data, text);
    /* empty text too */
    buf_reset(&z);
    buf_reset(&back);
    CHECK_INT(zpack_pack("", 0, 1, &z, &err), 0);
    CHECK_INT(zpack_unpack(z.data, z.len, 0, 10, &back, &err), 0);
    CHECK_INT((long long)back.len, 0);
    CHECK_INT(zpack_pack("x", 1, 0, &z, &err), TQ_EINVAL);
    buf_free(&z);
    buf_free(&back);
}

static void test_bad_frames_are_refused(void)
{
    const char *text = "hello hello hello hello hello";
    Buf z, out;
    buf_init(&z, 1 << 20);
    buf_init(&out, 1 << 20);
    TqErr err = {0};
    CHECK_INT(zpack_pack(text, strlen(text), 3, &z, &err), 0);
    size_t n = strlen(text);
    /* not zstd at all */
    CHECK_INT(zpack_unpack("garbage bytes", 13, n, 1 << 20, &out, &err), TQ_EINVAL);
    CHECKF(strstr(err.msg, "not a zstd frame"), "%s", err.msg);
    /* the row's length disagrees with the frame */
    CHECK_INT(zpack_unpack(z.data, z.len, n + 1, 1 << 20, &out, &err), TQ_EINVAL);
    /* above the cap, refused before allocating */
    CHECK_INT(zpack_unpack(z.data, z.len, n, n - 1, &out, &err), TQ_EINVAL);
    /* cut short, and with trailing bytes */
    CHECK_INT(zpack_unpack(z.data, z.len - 3, n, 1 << 20, &out, &err), TQ_EINVAL);
    char longer[256];
    memcpy(longer, z.data, z.len);
    memcpy(longer + z.len, "xx", 2);
    CHECK_INT(zpack_unpack(longer, z.len + 2, n, 1 << 20, &out, &err), TQ_EINVAL);
    /* every single byte flipped in turn: refused (the frame carries a checksum of its content) */
    for (size_t i = 0; i < z.len; i++) {
        char bad[256];
        memcpy(bad, z.data, z.len);
        bad[i] ^= 0x5a;
        buf_reset(&out);
        int rc = zpack_unpack(bad, z.len, n, 1 << 20, &out, &err);
        CHECKF(rc == TQ_EINVAL && out.len == 0, "byte %zu: rc %d len %zu", i, rc, out.len);
    }
    CHECK_INT((long long)out.len <= (long long)n, 1);
    buf_free(&z);
    buf_free(&out);
}

int main(void)
{
    RUN(test_round_trip_and_ratio);
    RUN(test_bad_frames_are_refused);
    return check_done();
}
