/* sha256.h — SHA-256 (FIPS 180-4), for keys that must not collide: the response cache (issue 14,
 * being built) keys an answer by a hash of everything that determines it, and a collision would serve
 * one job another's answer.
 * None of tierq's libraries exports a hash for this (libcurl, libpq and zstd keep theirs internal),
 * so it is implemented here, checked against the FIPS test vectors (tests/unit/test_sha256.c).
 *
 * Streaming: init, update any number of times, final. Not thread-safe per context; contexts are
 * independent. */
#ifndef TQ_SHA256_H
#define TQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct Sha256 {
    uint32_t h[8];
    uint64_t bytes;     /* total length so far */
    uint8_t block[64];  /* partial block */
    size_t fill;        /* bytes in block */
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t len);
void sha256_final(Sha256 *s, uint8_t out[SHA256_BYTES]);

/* One call: out = SHA-256 of data[0..len). */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);

/* Lower-case hex of the digest into hex[65] (NUL-terminated). */
void sha256_hex(const uint8_t digest[SHA256_BYTES], char hex[2 * SHA256_BYTES + 1]);

/* Hash keys are sequences of fields: each is its length (8 bytes, big-endian) then its bytes, and
 * NULL is length 2^64-1 with no bytes, so no two different sequences hash alike and a missing field
 * differs from an empty one. */
void sha256_field(Sha256 *s, const char *text);
void sha256_field_int(Sha256 *s, long long v);

#endif
