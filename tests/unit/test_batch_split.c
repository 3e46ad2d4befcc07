/* Splitting a batched answer by id: every item gets its own answer or a named problem, never a
 * neighbour's. */
#include "../check.h"
#include "batch.h"

#include <stdlib.h>

static int split(const char *content, int n, BatchItem *items, int *unknown)
{
    TqErr err = {0};
    return batch_split_answers(content, strlen(content), n, items, unknown, &err);
}

static void test_clean_answers_lose_their_tags(void)
{
    BatchItem it[3];
    int unknown = -1;
    const char *c = "{\"1\": \"[1] alpha\", \"2\": \"[2] beta\", \"3\": \"[3] gamma \\\"quoted\\\"\"}";
    CHECK_INT(split(c, 3, it, &unknown), 0);
    CHECK_STR(it[0].answer, "alpha");
    CHECK_STR(it[1].answer, "beta");
    CHECK_STR(it[2].answer, "gamma \"quoted\"");
    CHECK(!it[0].problem && !it[1].problem && !it[2].problem);
    CHECK_INT(unknown, 0);
    /* the byte range covers the answer after its tag, for that item's logprobs */
    CHECK(strncmp(c + it[1].start, "beta", 4) == 0);
    CHECK_INT((long long)(it[1].end - it[1].start), 4);
    batch_items_free(it, 3);
}

static void test_every_fault_is_named(void)
{
    BatchItem it[6];
    int unknown = 0;
    /* 1 swapped with 2, 3 duplicated, 4 merged with 5 (5 missing), 6 not a string, one unknown id */
    const char *c = "{\"1\": \"[2] beta\", \"2\": \"[1] alpha\", \"3\": \"[3] x\", \"3\": \"[3] y\","
                    " \"4\": \"[4] d; [5] e\", \"6\": 6, \"9\": \"[9] z\"}";
    CHECK_INT(split(c, 6, it, &unknown), 0);
    CHECK_STR(it[0].problem, "batch_item_mislabeled");
    CHECK_STR(it[1].problem, "batch_item_mislabeled");
    CHECK_STR(it[2].problem, "batch_item_duplicated");
    CHECK_STR(it[3].problem, "batch_item_merged");
    CHECK_STR(it[4].problem, "batch_item_missing");
    CHECK_STR(it[5].problem, "batch_item_malformed");
    for (int i = 0; i < 6; i++)
        CHECK(it[i].answer == NULL);
    CHECK_INT(unknown, 1);
    batch_items_free(it, 6);
}

static void test_untagged_or_unparsable(void)
{
    BatchItem it[2];
    int unknown = 0;
    CHECK_INT(split("{\"1\": \"alpha\", \"2\": \"[2] beta\"}", 2, it, &unknown), 0);
    CHECK_STR(it[0].problem, "batch_item_mislabeled");
    CHECK_STR(it[1].answer, "beta");
    batch_items_free(it, 2);
    CHECK_INT(split("{\"1\": \"[1] alpha\", \"2\": \"[2] be", 2, it, &unknown), TQ_EPARSE);
    CHECK_INT(split("Here are the answers:\n1: alpha", 2, it, &unknown), TQ_EPARSE);
    CHECK_INT(split("[\"[1] alpha\"]", 1, it, &unknown), TQ_EPARSE);
    /* ids are exact: "01" and "1.0" name no item */
    CHECK_INT(split("{\"01\": \"[1] a\", \"1.0\": \"[1] b\"}", 1, it, &unknown), 0);
    CHECK_INT(unknown, 2);
    CHECK_STR(it[0].problem, "batch_item_missing");
    batch_items_free(it, 1);
}

/* A reply wrapped in a Markdown fence (```json ... ```) is the same reply: the items parse, and
 * their byte ranges still point into the content as it came. */
static void test_fenced_reply(void)
{
    BatchItem it[2];
    int unknown = 0;
    const char *c = "```json\n{\"1\": \"[1] alpha\", \"2\": \"[2] beta\"}\n```\n";
    CHECK_INT(split(c, 2, it, &unknown), 0);
    CHECK_STR(it[0].answer, "alpha");
    CHECK_STR(it[1].answer, "beta");
    CHECK(strncmp(c + it[1].start, "beta", 4) == 0);
    batch_items_free(it, 2);
    CHECK_INT(split("```\n{\"1\": \"[1] alpha\"}```", 1, it, &unknown), 0);
    CHECK_STR(it[0].answer, "alpha");
    batch_items_free(it, 1);
    /* a fence that is not closed is not a reply */
    CHECK_INT(split("```json\n{\"1\": \"[1] alpha\"}", 1, it, &unknown), TQ_EPARSE);
}

int main(void)
{
    RUN(test_fenced_reply);
    RUN(test_clean_answers_lose_their_tags);
    RUN(test_every_fault_is_named);
    RUN(test_untagged_or_unparsable);
    return check_done();
}
