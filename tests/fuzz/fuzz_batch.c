/* fuzz_batch.c — a batched answer split back into its items (worker/batch.c).
 *
 * Input: the first byte sets the item count (0..16), the rest is the model's content, e.g.
 * "\x02{\"1\":\"[1] alpha\",\"2\":\"[2] beta\"}". Checked contracts (batch.h): on success every item
 * has an answer or a problem, never both; an answer carries no tag of its own or another item's;
 * answers are valid UTF-8 without NUL; an item's byte range lies inside the content. On failure
 * (TQ_EPARSE) no item has an answer. */
#include "fuzz.h"

#include "batch.h"
#include "utf8.h"

#define FUZZ_BATCH_MAX 16

/* "[" digits "] " anywhere in s. */
static int has_tag(const char *s)
{
    for (const char *p = strchr(s, '['); p; p = strchr(p + 1, '[')) {
        const char *q = p + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p + 1 && q[0] == ']' && q[1] == ' ')
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int nitems = data[0] % (FUZZ_BATCH_MAX + 1);
    const char *content = (const char *)data + 1;
    size_t len = size - 1;

    BatchItem items[FUZZ_BATCH_MAX];
    int unknown = -1;
    TqErr err = {0};
    int rc = batch_split_answers(content, len, nitems, items, &unknown, &err);
    FUZZ_ASSERT(rc == 0 || rc == TQ_EPARSE || rc == TQ_ENOMEM, "0 or TQ_EPARSE");
    FUZZ_ASSERT(rc == 0 || err.msg[0], "a failure says why");
    FUZZ_ASSERT(unknown >= 0, "unknown counted");
    for (int i = 0; i < nitems; i++) {
        const BatchItem *it = &items[i];
        if (rc) {
            FUZZ_ASSERT(!it->answer, "no item is usable when the content is not one object");
            continue;
        }
        FUZZ_ASSERT(!it->answer != !it->problem, "an answer or a problem, never both");
        if (!it->answer)
            continue;
        size_t n = strlen(it->answer);
        FUZZ_ASSERT(utf8_valid(it->answer, n), "answer is valid UTF-8 without NUL");
        FUZZ_ASSERT(!has_tag(it->answer), "an answer carries no item tag");
        FUZZ_ASSERT(it->start <= it->end && it->end <= len, "answer range inside the content");
    }
    batch_items_free(items, nitems);
    return 0;
}
