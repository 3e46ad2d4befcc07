/* SHA-256 against the FIPS 180-4 examples and PostgreSQL's sha256() (same digests for the same bytes,
 * so a key computed here can be checked or recomputed in SQL). */
#include "../check.h"
#include "sha256.h"

#include <stdlib.h>
#include <string.h>

static const char *hex_of(const void *data, size_t len)
{
    static char hex[65];
    uint8_t d[SHA256_BYTES];
    sha256(data, len, d);
    sha256_hex(d, hex);
    return hex;
}

static void test_fips_vectors(void)
{
    CHECK_STR(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_STR(hex_of("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK_STR(hex_of(two, strlen(two)), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    if (million) {
        memset(million, 'a', 1000000);
        CHECK_STR(hex_of(million, 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        free(million);
    }
}

/* Fed in pieces of every size across block boundaries: the same digest as in one call. */
static void test_streaming_equals_one_call(void)
{
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    uint8_t whole[SHA256_BYTES];
    for (size_t len = 0; len <= sizeof data; len += 13) {
        sha256(data, len, whole);
        for (size_t piece = 1; piece <= 70; piece += 23) {
            Sha256 s;
            sha256_init(&s);
            for (size_t at = 0; at < len; at += piece)
                sha256_update(&s, data + at, len - at < piece ? len - at : piece);
            uint8_t got[SHA256_BYTES];
            sha256_final(&s, got);
            CHECKF(memcmp(got, whole, SHA256_BYTES) == 0, "len %zu piece %zu", len, piece);
        }
    }
    /* lengths around the padding boundary (55, 56, 63, 64 bytes) */
    CHECK_STR(hex_of("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 55),
              "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    CHECK_STR(hex_of("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 56),
              "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
}

int main(void)
{
    RUN(test_fips_vectors);
    RUN(test_streaming_equals_one_call);
    return check_done();
}
