/* check.h — the quality check of one answer: hard gates and soft signals giving a score in [0,1]
 * (DESIGN.md §3, "The call path", step 4). The caller compares the score with the tier's `accept`
 * bar and escalates when it is under it (step 5).
 *
 * Pure functions: no I/O, no clock, no globals that change after the first call, so everything here
 * is safe from any thread and never blocks. The LLM judge is a separate chat call the worker makes
 * itself (check_judge_prompt builds it, check_parse_judge reads the reply, and the judge call's cost
 * is charged to the job it served); this module only combines its score.
 *
 * The check never sees the job's `expected` answer: CheckInput has no field for it.
 *
 * ---- The combination -------------------------------------------------------------------------------
 *
 * 1. Hard gates, in this order; the first that fails decides: score 0, gate_failed, reason names it.
 *      no refusal (message.refusal)             "refusal"       (detail quotes the refusal text)
 *      finish_reason is a normal stop           "truncated" (length), "content_filter",
 *                                               "tool_calls" (tool_calls, function_call),
 *                                               "provider_interrupted" (DeepSeek's
 *                                               insufficient_system_resource), "finish_other".
 *                                               Normal: "stop", absent or null, "eos_token", "eos",
 *                                               "end_turn", "stop_sequence", "end" (servers differ)
 *      the answer is not empty                  "empty"        (only whitespace counts as empty;
 *                                               a reasoning-only reply is empty)
 *      checks.min_chars <= chars <= max_chars   "too_short", "too_long"
 *      the answer is one of the allowed labels  "label_not_allowed" (job labels apply even when
 *                                               checks is NULL)
 *      the answer is JSON (checks.json)         "invalid_json"
 *      ... an object with checks.json_keys      "json_key_missing" (also: valid JSON, not an object)
 *      the answer matches checks.regex          "regex_mismatch"
 *    "The answer" for the gates is the content with leading and trailing ASCII whitespace trimmed;
 *    chars are Unicode code points. The regex is POSIX extended (regcomp REG_EXTENDED), searched
 *    in the trimmed answer: anchor it with ^...$ to demand a whole match.
 *
 * 2. Soft signals. A signal is configured when the kind enables it, and counts when the input
 *    carries it:
 *      L  logprob confidence   checks.logprobs; in->logprobs present        check_logprob_confidence
 *      J  judge score          checks.judge_model >= 0; judge_score not NaN (0..10 mapped to 0..1)
 *      A  agreement            checks.agreement; second_sample != NULL      1 if the two samples are
 *                              equal after check_normalize, else 0
 *    A configured signal that the input lacks is MISSING (the provider sent no logprobs, the judge
 *    gave no verdict, the second sample failed) — unless the caller did not ask for it on purpose
 *    (in->not_asked; e.g. no judge on the last tier, whose answer is final anyway).
 *
 * 3. score = min(signals present); with no signal configured, score = 1.0 ("passed every gate,
 *    nothing against it": such a kind accepts any answer that passes its gates at the first tier).
 *    A missing signal is unknown, never perfect: with checks.missing_signal "escalate" (the
 *    default) the score is 0, so the answer escalates; with "other_checks" the score rests on the
 *    signals present, and is 0 when none is. result.missing names the missing signals either way,
 *    for the ledger and the report.
 *    The minimum, not a mean: each signal is evidence that can veto, and a mean would let a strong
 *    signal hide a weak one — agreement of two samples says nothing about correctness when both are
 *    the same mistake, so A = 1 must not lift a low L or J, while A = 0 (the model contradicts
 *    itself) always escalates.
 *
 * ---- Labels ------------------------------------------------------------------------------------------
 *
 * The allowed set is the job's params.labels when given (in->nlabels > 0), else checks.labels, else
 * none (no label gate). The answer and every label are compared after check_normalize, so "Utils.",
 * "**utils**", "\"UTILS\"" all match the label "utils"; "the answer is utils" does not. On a match,
 * canonical is a copy of the label as written in the set: that is what the caller stores as result. */
#ifndef TQ_CHECK_ANSWER_H
#define TQ_CHECK_ANSWER_H

#include "buf.h"
#include "config.h"
#include "err.h"
#include "openai.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

/* The judge's system prompt, byte-exact: the simulator recognises judge requests by its first
 * words "You grade answers." (tests/sim/judge.h). */
#define CHECK_JUDGE_SYSTEM                                                                          \
    "You grade answers. Reply with one integer from 0 to 10: how likely the answer is correct and "  \
    "complete. Reply with the number only."

/* judge_score value meaning "no judge score". */
#define CHECK_NO_JUDGE ((double)NAN)

/* Soft signals, as bits of CheckInput.not_asked and CheckResult.missing. */
enum { CHECK_SIGNAL_LOGPROBS = 1u, CHECK_SIGNAL_JUDGE = 2u, CHECK_SIGNAL_AGREEMENT = 4u };

typedef struct CheckInput {
    const TqChecks *checks;     /* the kind's checks; NULL = none (only the finish and empty gates) */
    const char *const *labels;  /* the job's params.labels; override checks->labels when nlabels > 0 */
    int nlabels;
    const char *content;        /* the answer; may hold any bytes (NULL only with content_len 0) */
    size_t content_len;
    const char *finish_reason;  /* as parsed ("" or NULL = absent) */
    const OaiLogprobs *logprobs;/* NULL or !present = no logprob signal */
    double judge_score;         /* in [0,1], or CHECK_NO_JUDGE (NaN). NB: a zeroed struct means a
                                 * judge score of 0, but it only counts when checks->judge_model >= 0 */
    const char *second_sample;  /* the other sample's content, NUL-terminated; NULL = none */
    const char *refusal;        /* message.refusal; NULL or "" = none */
    bool has_reasoning;         /* the reply carried reasoning (explains an empty answer) */
    unsigned not_asked;         /* CHECK_SIGNAL_* bits the caller did not gather on purpose */
} CheckInput;

typedef struct CheckResult {
    double score;        /* in [0,1] */
    bool gate_failed;    /* a hard gate failed (score is then 0) */
    const char *reason;  /* static, stable: "passed" or the failed gate's name (see above) */
    char detail[200];    /* one printable line for logs and last_error, e.g.
                          * "answer \"utilities\" is not one of 58 labels" or
                          * "score 0.310 = min(logprobs 0.940, judge 0.310)" */
    double confidence;   /* logprob confidence whenever logprobs are present (reported even when
                          * checks->logprobs is off and it does not count), else NaN */
    char *canonical;     /* malloc'd, owned: the matched label as written in the set when a label
                          * gate applied and no gate failed; else NULL */
    unsigned missing;    /* CHECK_SIGNAL_* bits: configured signals the input lacked (gates passed) */
} CheckResult;

/* Check one answer. Returns 0 and fills *out (release with check_result_free) — a failed gate is a
 * result, not an error. Errors leave *out untouched:
 *   TQ_EINVAL  in/out NULL, content NULL with content_len > 0, a counted judge_score outside [0,1],
 *              or checks->regex does not compile (config_load rejects those, so only a bug gets here)
 *   TQ_ENOMEM  out of memory */
int check_answer(const CheckInput *in, CheckResult *out, TqErr *err);

/* "logprobs,judge" for a CHECK_SIGNAL_* mask ("" for 0), into out[0..cap). */
void check_signal_names(unsigned mask, char *out, size_t cap);

/* Free canonical and set it to NULL. check_result_free(NULL) does nothing. */
void check_result_free(CheckResult *r);

/* Append the normalised form of s[0..n) to out — the exact rules of tierq.normalize_answer() in
 * sql/002_report.sql, which `tierq report` uses to compare result with expected:
 *   lower-case; strip punctuation and quotes from the start and end of every whitespace-separated
 *   word (inner punctuation stays: "3.14", "e-mail"); words joined by one space; no edge spaces.
 *   "  Hello,   World! " -> "hello world"     "\"utils\"" -> "utils"     "(yes)" -> "yes"
 * The SQL runs lower() and the regex classes [[:punct:]] and \s of the database's ctype; the test
 * database uses C.UTF-8, where they cover Unicode ("ÉCOLE" -> "école", "…wait…" -> "wait", "€5" ->
 * "5"). This function uses the same glibc classification through a private C.UTF-8 locale_t, plus
 * the seven typographic quotes the SQL names; if that locale is not installed it falls back to
 * ASCII rules (which is what a database with C collation does). Bytes that are not valid UTF-8 are
 * kept as they are. Returns 0; TQ_ELIMIT or TQ_ENOMEM from out, which is then restored to its length
 * before the call. */
int check_normalize(const char *s, size_t n, Buf *out);

/* Whether a and b (NUL-terminated; NULL never agrees) are equal after check_normalize. Allocates
 * nothing. Meant for labels and short answers. */
bool check_samples_agree(const char *a, const char *b);

/* Confidence in [0,1] from token logprobs, or NaN when lp is NULL, not present or not finite:
 *   exp((sum_logprob + min_logprob) / (n_tokens + 1))
 * the geometric mean of the token probabilities with the least confident token counted twice.
 * The plain geometric mean exp(mean) measures fluency over the whole answer; counting the worst
 * token once more makes one doubtful token weigh heavily in a short answer — where the first token
 * of a label often is the whole decision (n = 1: exp(min); n = 3: the worst token is half the
 * weight) — while in a long answer it barely moves the score, so one rare synonym in 300 tokens
 * does not sink it as exp(min) alone would. */
double check_logprob_confidence(const OaiLogprobs *lp);

/* Append the judge request's messages to system and user:
 *   system = CHECK_JUDGE_SYSTEM
 *   user   = "Question:\n" question "\n\nAnswer:\n" answer
 * byte-exact (the simulator looks the question up by its exact text). question is what the model
 * was asked (the job's prompt), answer the content being graded. Returns 0; TQ_EINVAL for a NULL
 * argument; TQ_ELIMIT / TQ_ENOMEM from the buffers, which are then restored to their lengths. */
int check_judge_prompt(const char *question, const char *answer, Buf *system, Buf *user);

/* Read a judge reply into a score in [0,1]. Accepts exactly one number 0..10, decimals allowed,
 * anywhere in the text ("7", " 9.\n", "Score: 7", "**8**", "{\"score\": 6}", "8.5"), optionally as a
 * fraction "N/M" or "N out of M" with 0 < M and N <= M ("7/10" -> 0.7, "4/5" -> 0.8). Text up to a
 * last "</think>" (a reasoning model's thinking left in the content) is skipped.
 * Returns 0 and sets *score01; TQ_EPARSE (score01 untouched) when there is no number, more than one
 * ("7 or 8", "0 to 10: 7"), a negative one, or one out of range; TQ_EINVAL for NULL arguments. */
int check_parse_judge(const char *content, double *score01);

#endif
