/* compresskinds.h — the compressing kinds and documents test_compress.c and test_report_compress.c
 * share. doc compresses once per document whatever the question; doc32 is compressed by another
 * model than its tier 1 (qwen3-32b), so a fault marker can hit the compressor alone. */
#ifndef TQ_COMPRESSKINDS_H
#define TQ_COMPRESSKINDS_H

#define DOC_KIND_JSON                                                                                            \
    "{\"system_prompt\": \"Answer the question from the context in a few words.\"," \
    " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\"," \
    " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1}, \"cache\": {\"enabled\": false}," \
    " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100, \"question_aware\": false}}"
#define DOC32_KIND_JSON                                                                                          \
    "{\"system_prompt\": \"Answer the question from the context in a few words.\"," \
    " \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0}, {\"model\": \"gpt-4o\"}], \"baseline_model\": \"gpt-4o\"," \
    " \"max_tokens\": 64, \"temperature\": 0, \"checks\": {\"min_chars\": 1}, \"cache\": {\"enabled\": false}," \
    " \"compress\": {\"enabled\": true, \"threshold_tokens\": 300, \"target_tokens\": 100, \"model\": \"qwen3-32b\"}}"

/* A document of about 3,000 tokens (200 distinct sentences), as SQL text. */
#define LONG_DOC "(SELECT string_agg('Line ' || i || ': the package number ' || i || ' is licensed under GPL-' || (i % 3 + 1) || '.', ' ') FROM generate_series(1, 200) i)"

#endif
