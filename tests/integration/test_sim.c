/* test_sim.c — the simulated provider (tests/sim), tested over HTTP on loopback.
 *
 * By default the test starts its own simulator from TIERQ_SIM_BIN (or build/tierq-sim) with a model
 * catalog and an answer key it writes to a temporary directory, so every assertion knows the
 * expected answer. With TIERQ_SIM_URL set (e.g. http://127.0.0.1:PORT/v1) it runs the subset that
 * works against any simulator using the shipped catalog. The model-settings tests also load the
 * shipped catalogs from TIERQ_ROOT (default: the current directory). */
#include "../check.h"
#include "../sim/batch.h" /* BATCH_INSTRUCTION, compared with the test's own copy */
#include "buf.h"
#include "json.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOW_MS 400
#define TEST_KEY "sim-test-key-4242"

typedef struct Sim {
    pid_t pid;
    char base[128]; /* http://127.0.0.1:PORT (no /v1) */
} Sim;

static Sim g_sim;      /* the main simulator */
static Sim g_authsim;  /* second one: --require-key and a global fault rate */
static bool g_self;    /* we started g_sim with our own catalog and answer key */
static char g_dir[64]; /* temporary directory for our files */
static CURL *g_curl;   /* one handle, so sequential requests reuse the connection */
static const char *M_ANY = "oracle"; /* a model that exists in the simulator under test */
static const char *g_bin; /* the simulator binary */
static bool g_fresh;   /* next requests on a new connection (curl silently retries a request whose
                          reused connection closes without an answer, which would hide "drop") */

/* ---- files for the self-started simulator ---- */

static const char *MODELS_JSON =
    "{\"models\": {\n"
    " \"oracle\": {\"skill\": 1.0, \"latency_ms\": {\"mean\": 0, \"jitter\": 0}, \"logprobs\": true,"
    " \"usage_style\": \"openai\"},\n"
    " \"dunce\": {\"skill\": 0.0, \"latency_ms\": 0, \"logprobs\": true, \"usage_style\": \"openai\"},\n"
    " \"ds-oracle\": {\"skill\": 1.0, \"latency_ms\": 0, \"usage_style\": \"deepseek\", \"reasoning\": true},\n"
    " \"silent\": {\"skill\": 1.0, \"latency_ms\": 0, \"logprobs\": false, \"usage_style\": \"none\"},\n"
    " \"slowpoke\": {\"skill\": 1.0, \"latency_ms\": {\"mean\": 150, \"jitter\": 0}, \"usage_style\": \"openai\"},\n"
    " \"mid\": {\"skill\": 0.55, \"latency_ms\": 0, \"logprobs\": true},\n"
    " \"high\": {\"skill\": 0.88, \"latency_ms\": 0, \"logprobs\": true}\n"
    "}}\n";

#define N_REVIEWS 400
static const char *const SENTIMENT[] = {"positive", "negative", "neutral", "mixed", "sarcastic"};
#define LONG_SUMMARY "A small command line tool that converts images between many formats quickly and safely"
#define N_EXPLAIN 60 /* free-text items (not a label set) for the judge tests */
#define FEWSHOT_PROMPT "Complete it.\n\nAnswer:\nThe sky is" /* contains the judge's separator */
#define EXTRACT_JSON "{\"name\": \"vim\", \"section\": \"editors\"}"

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* The answer key, in COPY text format: escapes in fields must come back decoded. */
static int write_answers(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("kind\tprompt\texpected\n", f);
    fputs("classify\tPackage: vim\\nDescription: Vi IMproved\teditors\n", f);
    fputs("classify\tPackage: bash\\tshell\tshells\n", f);
    fputs("classify\tPackage: gcc\tdevel\n", f);
    fputs("classify\tBack\\\\slash package\tutils\n", f);
    fputs("simple\tWhat is the capital of France?\tParis\n", f);
    for (int i = 0; i < N_REVIEWS; i++)
        fprintf(f, "sentiment\tReview %d: the product arrived and I have opinions.\t%s\n", i, SENTIMENT[i % 5]);
    fputs("summarize\tSummarize: imgconv\t" LONG_SUMMARY "\n", f);
    fputs("summarize\tSummarize: other\tAnother long summary that is not a label because it is long enough\n", f);
    for (int i = 0; i < N_EXPLAIN; i++)
        fprintf(f, "explain\tExplain item %d\tItem %d is explained here by a sentence of free text with enough words\n", i,
                i);
    fputs("extract\tExtract: vim\t" EXTRACT_JSON "\n", f);
    fputs("fewshot\tComplete it.\\n\\nAnswer:\\nThe sky is\tblue\n", f);
    return fclose(f);
}

/* ---- starting and stopping simulators ---- */

/* Start a simulator with the catalog file models (NULL: our own), our answer key and extra flags. */
static int start_sim_models(Sim *s, const char *bin, const char *models_path, const char *const extra[])
{
    int pfd[2];
    if (pipe(pfd))
        return -1;
    char models[4096], answers[128], log[128];
    if (models_path)
        snprintf(models, sizeof models, "%s", models_path);
    else
        snprintf(models, sizeof models, "%s/models.json", g_dir);
    snprintf(answers, sizeof answers, "%s/answers.tsv", g_dir);
    snprintf(log, sizeof log, "%s/sim-%d.log", g_dir, (int)time(NULL));
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        FILE *lf = fopen(log, "a");
        if (lf)
            dup2(fileno(lf), 2);
        setenv("TIERQ_LOG", "warn", 1);
        char seed[] = "7", slow[16];
        snprintf(slow, sizeof slow, "%d", SLOW_MS);
        const char *argv[32] = {bin, "--port", "0", "--models", models, "--answers", answers, "--seed", seed,
                          "--slow-ms", slow};
        int n = 11;
        for (int i = 0; extra && extra[i] && n < 30; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    s->pid = pid;
    char line[128] = {0};
    size_t got = 0;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
        if (poll(&p, 1, 10000) <= 0)
            break;
        ssize_t r = read(pfd[0], line + got, sizeof line - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pfd[0]);
    int port = 0;
    if (sscanf(line, "listening on 127.0.0.1:%d", &port) != 1 || port <= 0) {
        fprintf(stdout, "# simulator did not start (first line: \"%s\"), see %s\n", line, log);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", port);
    return 0;
}

static int start_sim(Sim *s, const char *bin, const char *const extra[])
{
    return start_sim_models(s, bin, NULL, extra);
}

/* SIGTERM, then the exit status (or -1 if it did not exit within 5 s). */
static int stop_sim(Sim *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* ---- HTTP ---- */

typedef struct Resp {
    CURLcode cc;
    long status;
    Buf body;
    Buf headers;
    double secs;
    JsonDoc doc;
    bool parsed;
} Resp;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    return buf_append(ud, p, sz * n) ? 0 : sz * n;
}

static void resp_init(Resp *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->body, (size_t)64 << 20);
    buf_init(&r->headers, (size_t)1 << 20);
}

static void resp_free(Resp *r)
{
    json_doc_free(&r->doc);
    buf_free(&r->body);
    buf_free(&r->headers);
}

static void setup_easy(CURL *c, const Sim *s, const char *method, const char *path, const char *body, size_t body_len,
                       struct curl_slist *hdrs, Resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
}

static void finish_resp(CURL *c, Resp *r)
{
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->secs);
    r->parsed = r->body.len && json_parse(&r->doc, r->body.data, r->body.len, 0, NULL) == 0;
}

static void http_to(const Sim *s, const char *method, const char *path, const char *body, const char *key, Resp *r)
{
    resp_init(r);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        char auth[256];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_reset(g_curl);
    setup_easy(g_curl, s, method, path, body, body ? strlen(body) : 0, h, r);
    if (g_fresh)
        curl_easy_setopt(g_curl, CURLOPT_FRESH_CONNECT, 1L);
    r->cc = curl_easy_perform(g_curl);
    finish_resp(g_curl, r);
    curl_slist_free_all(h);
}

static void http(const char *method, const char *path, const char *body, Resp *r)
{
    http_to(&g_sim, method, path, body, NULL, r);
}

/* A chat request body; extra is inserted verbatim as more top-level fields (may be NULL). */
static char *chat_body(const char *model, const char *system, const char *user, const char *extra)
{
    Buf b;
    buf_init(&b, 0);
    buf_puts(&b, "{\"model\":");
    json_put_cstr(&b, model);
    buf_puts(&b, ",\"messages\":[");
    if (system) {
        buf_puts(&b, "{\"role\":\"system\",\"content\":");
        json_put_cstr(&b, system);
        buf_puts(&b, "},");
    }
    buf_puts(&b, "{\"role\":\"user\",\"content\":");
    json_put_cstr(&b, user);
    buf_puts(&b, "}]");
    if (extra) {
        buf_putc(&b, ',');
        buf_puts(&b, extra);
    }
    buf_putc(&b, '}');
    return buf_take(&b);
}

static void chat_to(const Sim *s, const char *key, const char *model, const char *system, const char *user,
                    const char *extra, Resp *r)
{
    char *body = chat_body(model, system, user, extra);
    http_to(s, "POST", "/v1/chat/completions", body, key, r);
    free(body);
}

static void chat(const char *model, const char *system, const char *user, const char *extra, Resp *r)
{
    chat_to(&g_sim, NULL, model, system, user, extra, r);
}

/* ---- JSON paths: "choices.0.message.content" ---- */

static int jpath(const Resp *r, const char *path)
{
    if (!r->parsed)
        return -1;
    int cur = 0;
    while (*path && cur >= 0) {
        char seg[64];
        size_t n = strcspn(path, ".");
        if (n >= sizeof seg)
            return -1;
        memcpy(seg, path, n);
        seg[n] = '\0';
        path += n + (path[n] == '.');
        if (json_type(&r->doc, cur) == JSON_ARRAY) /* "responses.429" is a key, "choices.0" an index */
            cur = json_at(&r->doc, cur, atoi(seg));
        else
            cur = json_get(&r->doc, cur, seg);
    }
    return cur;
}

/* Decoded string at path, in a static ring of buffers (valid for a few calls); NULL if absent. */
static const char *jstr(const Resp *r, const char *path)
{
    static char *ring[8];
    static int next;
    int i = jpath(r, path);
    if (i < 0 || json_type(&r->doc, i) != JSON_STRING)
        return NULL;
    free(ring[next]);
    ring[next] = json_strdup(&r->doc, i);
    const char *s = ring[next];
    next = (next + 1) % 8;
    return s;
}

static int64_t jint(const Resp *r, const char *path)
{
    int64_t v = -1;
    int i = jpath(r, path);
    if (i < 0 || json_int64(&r->doc, i, &v))
        return -1;
    return v;
}

/* Value of a response header (case-insensitive name), copied into out; "" when absent. */
static const char *header(const Resp *r, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *h = r->headers.data ? r->headers.data : "";
    size_t nl = strlen(name);
    for (const char *line = h; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(line + len - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            snprintf(out, cap, "%.*s", (int)vl, v);
            break;
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    return out;
}

static int64_t toks(const char *s) { return (int64_t)((strlen(s) + 3) / 4); }

static void reset_stats(void)
{
    Resp r;
    http("POST", "/sim/reset", "", &r);
    resp_free(&r);
}

static void stats(Resp *r) { http("GET", "/sim/stats", NULL, r); }

/* ---- tests ---- */

static void test_models_endpoint(void)
{
    Resp r;
    http("GET", "/v1/models", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(jstr(&r, "object"), "list");
    bool found = false;
    int data = jpath(&r, "data");
    for (int i = 0; i < json_size(&r.doc, data); i++) {
        char *id = json_strdup(&r.doc, json_get(&r.doc, json_at(&r.doc, data, i), "id"));
        if (id && strcmp(id, M_ANY) == 0)
            found = true;
        free(id);
    }
    CHECKF(found, "model %s missing from /v1/models", M_ANY);
    resp_free(&r);
}

static void test_correct_answer_is_deterministic(void)
{
    Resp a, b;
    chat("oracle", "You classify packages.", "Package: vim\nDescription: Vi IMproved", "\"temperature\":0", &a);
    chat("oracle", "You classify packages.", "Package: vim\nDescription: Vi IMproved", "\"temperature\":0", &b);
    CHECK_INT(a.status, 200);
    CHECK_STR(jstr(&a, "object"), "chat.completion");
    CHECK_STR(jstr(&a, "model"), "oracle");
    CHECK_STR(jstr(&a, "choices.0.message.role"), "assistant");
    CHECK_STR(jstr(&a, "choices.0.message.content"), "editors"); /* the \n in the TSV was decoded */
    CHECK_STR(jstr(&a, "choices.0.finish_reason"), "stop");
    CHECK_STR(jstr(&b, "choices.0.message.content"), jstr(&a, "choices.0.message.content"));
    resp_free(&a);
    resp_free(&b);

    /* A tab and a backslash escaped in the key, and the plain /chat/completions path. */
    Resp c, d;
    chat("oracle", NULL, "Package: bash\tshell", NULL, &c);
    CHECK_STR(jstr(&c, "choices.0.message.content"), "shells");
    char *body = chat_body("oracle", NULL, "Back\\slash package", NULL);
    http("POST", "/chat/completions", body, &d);
    free(body);
    CHECK_INT(d.status, 200);
    CHECK_STR(jstr(&d, "choices.0.message.content"), "utils");
    resp_free(&c);
    resp_free(&d);

    /* The answer is the same for a mid-skill model asked twice, whatever it is. */
    Resp m1, m2;
    chat("mid", NULL, "Review 17: the product arrived and I have opinions.", NULL, &m1);
    chat("mid", NULL, "Review 17: the product arrived and I have opinions.", NULL, &m2);
    const char *c1 = jstr(&m1, "choices.0.message.content");
    CHECK(c1 != NULL);
    CHECK_STR(jstr(&m2, "choices.0.message.content"), c1);
    resp_free(&m1);
    resp_free(&m2);
}

static bool is_sentiment(const char *s)
{
    for (int i = 0; s && i < 5; i++)
        if (strcmp(s, SENTIMENT[i]) == 0)
            return true;
    return false;
}

static void test_wrong_answers_are_plausible(void)
{
    /* A label kind: another label of the same set. */
    Resp r;
    chat("dunce", NULL, "Review 3: the product arrived and I have opinions.", NULL, &r); /* expected mixed */
    const char *got = jstr(&r, "choices.0.message.content");
    CHECK_INT(r.status, 200);
    CHECKF(is_sentiment(got), "wrong label \"%s\" is not in the label set", got ? got : "(null)");
    CHECK(got && strcmp(got, "mixed") != 0);
    resp_free(&r);

    /* A long text kind: degraded text, not the expected one. */
    chat("dunce", NULL, "Summarize: imgconv", NULL, &r);
    got = jstr(&r, "choices.0.message.content");
    CHECK(got && got[0]);
    CHECK(got && strcmp(got, LONG_SUMMARY) != 0);
    resp_free(&r);

    /* Not in the key: the generic answer from the prompt's first words. */
    chat("oracle", NULL, "Tell me something about penguins please", NULL, &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Answer: Tell me something about penguins please");
    resp_free(&r);
}

static void test_usage_openai(void)
{
    const char *sys = "Answer with a single word.";
    const char *user = "What is the capital of France?";
    Resp r;
    chat("oracle", sys, user, NULL, &r);
    int64_t prompt = toks(sys) + 4 + toks(user) + 4;
    CHECK_INT(jint(&r, "usage.prompt_tokens"), prompt);
    CHECK_INT(jint(&r, "usage.completion_tokens"), toks("Paris") + 1);
    CHECK_INT(jint(&r, "usage.total_tokens"), prompt + toks("Paris") + 1);
    CHECK_INT(jint(&r, "usage.prompt_tokens_details.cached_tokens"), 0); /* short system prompt */
    CHECK_INT(jint(&r, "usage.completion_tokens_details.reasoning_tokens"), 0);
    resp_free(&r);
}

static void test_usage_deepseek_and_none(void)
{
    Resp r;
    chat("ds-oracle", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    int64_t p = jint(&r, "usage.prompt_tokens");
    CHECK(p > 0);
    CHECK_INT(jint(&r, "usage.prompt_cache_hit_tokens"), 0);
    CHECK_INT(jint(&r, "usage.prompt_cache_miss_tokens"), p);
    CHECK(jpath(&r, "usage.prompt_tokens_details") < 0);
    int64_t reasoning = jint(&r, "usage.completion_tokens_details.reasoning_tokens");
    CHECK(reasoning >= 48);
    CHECK_INT(jint(&r, "usage.completion_tokens"), toks("Paris") + 1 + reasoning);
    CHECK(jstr(&r, "choices.0.message.reasoning_content") != NULL);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Paris");
    resp_free(&r);

    chat("silent", NULL, "What is the capital of France?", "\"logprobs\":true", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Paris");
    CHECK(r.parsed && jpath(&r, "usage") < 0);
    CHECK(r.parsed && json_is_null(&r.doc, jpath(&r, "choices.0.logprobs"))); /* model without logprobs */
    resp_free(&r);
}

static void test_prefix_cache(void)
{
    /* A system prompt of ~600 tokens, unique to this run so nothing cached it before. */
    Buf sys;
    buf_init(&sys, 0);
    buf_printf(&sys, "Run %ld.%d. ", (long)time(NULL), (int)getpid());
    while (sys.len < 2400)
        buf_puts(&sys, "You are a careful assistant that follows the house style guide. ");
    int64_t sys_tokens = toks(sys.data) + 4;
    Resp a, b, c, d;
    chat(M_ANY, sys.data, "What is the capital of France?", NULL, &a);
    chat(M_ANY, sys.data, "What is 2+2?", NULL, &b);
    CHECK_INT(a.status, 200);
    CHECK_INT(jint(&a, "usage.prompt_tokens_details.cached_tokens"), 0);
    CHECK_INT(jint(&b, "usage.prompt_tokens_details.cached_tokens"), sys_tokens);
    /* Another model has its own cache; deepseek style reports hit and miss. */
    if (g_self) {
        chat("ds-oracle", sys.data, "What is 2+2?", NULL, &c);
        chat("ds-oracle", sys.data, "What is 2+2?", NULL, &d);
        CHECK_INT(jint(&c, "usage.prompt_cache_hit_tokens"), 0);
        CHECK_INT(jint(&d, "usage.prompt_cache_hit_tokens"), sys_tokens);
        CHECK_INT(jint(&d, "usage.prompt_cache_hit_tokens") + jint(&d, "usage.prompt_cache_miss_tokens"),
                  jint(&d, "usage.prompt_tokens"));
        resp_free(&c);
        resp_free(&d);
    }
    resp_free(&a);
    resp_free(&b);
    /* A repeated but short system prompt is below --cache-min-tokens: never reported. */
    chat(M_ANY, "Short.", "x", NULL, &a);
    chat(M_ANY, "Short.", "x", NULL, &b);
    CHECK_INT(jint(&b, "usage.prompt_tokens_details.cached_tokens"), 0);
    resp_free(&a);
    resp_free(&b);
    buf_free(&sys);
}

static void test_max_tokens_truncates(void)
{
    Resp r;
    chat("oracle", NULL, "Summarize: imgconv", "\"max_tokens\":3", &r);
    const char *got = jstr(&r, "choices.0.message.content");
    CHECK_STR(jstr(&r, "choices.0.finish_reason"), "length");
    CHECK(got && strlen(got) == 8 && strncmp(got, LONG_SUMMARY, 8) == 0);
    CHECK_INT(jint(&r, "usage.completion_tokens"), 3);
    resp_free(&r);
    chat("oracle", NULL, "Summarize: imgconv", "\"max_completion_tokens\":200", &r);
    CHECK_STR(jstr(&r, "choices.0.finish_reason"), "stop");
    CHECK_STR(jstr(&r, "choices.0.message.content"), LONG_SUMMARY);
    resp_free(&r);
}

static void test_logprobs_shape(void)
{
    Resp r;
    chat("oracle", NULL, "Summarize: imgconv", "\"logprobs\":true,\"top_logprobs\":3", &r);
    int content = jpath(&r, "choices.0.logprobs.content");
    CHECK(json_type(&r.doc, content) == JSON_ARRAY);
    int n = json_size(&r.doc, content);
    CHECK(n >= (int)strlen(LONG_SUMMARY) / 5);
    Buf joined;
    buf_init(&joined, 0);
    for (int i = 0; i < n; i++) {
        int e = json_at(&r.doc, content, i);
        char *tok = json_strdup(&r.doc, json_get(&r.doc, e, "token"));
        double lp = 1;
        json_double(&r.doc, json_get(&r.doc, e, "logprob"), &lp);
        CHECK(lp <= 0 && lp > -20);
        CHECK(tok && json_size(&r.doc, json_get(&r.doc, e, "bytes")) == (int)strlen(tok));
        int top = json_get(&r.doc, e, "top_logprobs");
        CHECK_INT(json_size(&r.doc, top), 3);
        if (tok)
            buf_puts(&joined, tok);
        free(tok);
    }
    CHECK_STR(joined.data, LONG_SUMMARY);
    buf_free(&joined);
    resp_free(&r);

    chat("oracle", NULL, "Summarize: imgconv", NULL, &r); /* not asked for */
    CHECK(r.parsed && json_is_null(&r.doc, jpath(&r, "choices.0.logprobs")));
    resp_free(&r);
}

/* Mean first-token probability and accuracy of model over the sentiment items, on simulator s
 * (key: its --require-key, or NULL); ok[i] (unless NULL) tells whether item i was answered right. */
static void measure_on(const Sim *s, const char *key, const char *model, double *acc, double *conf_right,
                       double *conf_wrong, bool *ok)
{
    int right = 0, wrong = 0;
    double sr = 0, sw = 0;
    for (int i = 0; i < N_REVIEWS; i++) {
        char prompt[128];
        snprintf(prompt, sizeof prompt, "Review %d: the product arrived and I have opinions.", i);
        Resp r;
        chat_to(s, key, model, NULL, prompt, "\"logprobs\":true,\"max_tokens\":8", &r);
        const char *got = jstr(&r, "choices.0.message.content");
        double lp = 0;
        json_double(&r.doc, jpath(&r, "choices.0.logprobs.content.0.logprob"), &lp);
        bool good = got && strcmp(got, SENTIMENT[i % 5]) == 0;
        if (good)
            right++, sr += exp(lp);
        else
            wrong++, sw += exp(lp);
        if (ok)
            ok[i] = good;
        resp_free(&r);
    }
    *acc = (double)right / N_REVIEWS;
    *conf_right = right ? sr / right : 0;
    *conf_wrong = wrong ? sw / wrong : 0;
}

static void measure(const char *model, double *acc, double *conf_right, double *conf_wrong)
{
    measure_on(&g_sim, NULL, model, acc, conf_right, conf_wrong, NULL);
}

static void test_accuracy_and_confidence_follow_skill(void)
{
    double acc_mid, cr_mid, cw_mid, acc_high, cr_high, cw_high;
    measure("mid", &acc_mid, &cr_mid, &cw_mid);
    measure("high", &acc_high, &cr_high, &cw_high);
    printf("# mid: accuracy %.3f confidence right %.3f wrong %.3f; high: accuracy %.3f\n", acc_mid, cr_mid, cw_mid,
           acc_high);
    CHECKF(acc_mid > 0.52 && acc_mid < 0.74, "mid (skill 0.55) accuracy %.3f", acc_mid);
    CHECKF(acc_high > 0.84 && acc_high < 0.96, "high (skill 0.88) accuracy %.3f", acc_high);
    CHECK(acc_high > acc_mid + 0.15);
    CHECKF(cr_mid > cw_mid + 0.15, "confidence right %.3f vs wrong %.3f", cr_mid, cw_mid);
    CHECK(cr_mid > 0.8 && cr_mid < 0.97);
    CHECK(cw_mid > 0.45 && cw_mid < 0.75);
}

static void test_choices_and_temperature(void)
{
    Resp r;
    chat("mid", NULL, "Review 5: the product arrived and I have opinions.", "\"n\":6,\"temperature\":0", &r);
    CHECK_INT(json_size(&r.doc, jpath(&r, "choices")), 6);
    /* jstr's strings live for a few calls only: keep a copy of the one compared against */
    char *first = json_strdup(&r.doc, jpath(&r, "choices.0.message.content"));
    for (int i = 1; i < 6; i++) {
        char path[64];
        snprintf(path, sizeof path, "choices.%d.message.content", i);
        CHECK_STR(jstr(&r, path), first);
    }
    resp_free(&r);
    /* At temperature 1 the samples are independent: over 40 choices of a 0.55 model some disagree. */
    chat("mid", NULL, "Review 5: the product arrived and I have opinions.", "\"n\":40,\"temperature\":1", &r);
    int distinct_from_first = 0;
    free(first);
    first = json_strdup(&r.doc, jpath(&r, "choices.0.message.content"));
    for (int i = 1; i < 40; i++) {
        char path[64];
        snprintf(path, sizeof path, "choices.%d.message.content", i);
        const char *c = jstr(&r, path);
        distinct_from_first += c && first && strcmp(c, first) != 0;
    }
    CHECK(distinct_from_first > 0);
    free(first);
    resp_free(&r);
}

static void test_json_mode(void)
{
    Resp r;
    chat("oracle", NULL, "What is the capital of France?", "\"response_format\":{\"type\":\"json_object\"}", &r);
    const char *content = jstr(&r, "choices.0.message.content");
    JsonDoc d;
    bool ok = content && json_parse(&d, content, strlen(content), 0, NULL) == 0;
    CHECK(ok);
    if (ok) {
        char *answer = json_strdup(&d, json_get(&d, 0, "answer"));
        CHECK_STR(answer, "Paris");
        CHECK_INT(json_size(&d, 0), 1);
        free(answer);
        json_doc_free(&d);
    }
    resp_free(&r);
    /* An answer that already is a JSON object is not wrapped again. */
    chat("oracle", NULL, "Extract: vim", "\"response_format\":{\"type\":\"json_object\"}", &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), EXTRACT_JSON);
    resp_free(&r);
    /* A wrong label from a skill-0 model is wrapped too: the content is always an object. */
    chat("dunce", NULL, "Review 3: the product arrived and I have opinions.",
         "\"response_format\":{\"type\":\"json_object\"}", &r);
    content = jstr(&r, "choices.0.message.content");
    ok = content && json_parse(&d, content, strlen(content), 0, NULL) == 0;
    CHECK(ok);
    if (ok) {
        CHECK(json_type(&d, 0) == JSON_OBJECT);
        char *answer = json_strdup(&d, json_get(&d, 0, "answer"));
        CHECK(is_sentiment(answer) && strcmp(answer, "mixed") != 0);
        free(answer);
        json_doc_free(&d);
    }
    resp_free(&r);
}

/* ---- judge requests ---- */

#define JUDGE_SYSTEM "You grade answers. Reply with one integer from 0 (wrong) to 10 (right)."

static char *judge_user(const char *question, const char *answer)
{
    Buf b;
    buf_init(&b, 0);
    buf_printf(&b, "Question:\n%s\n\nAnswer:\n%s", question, answer);
    return buf_take(&b);
}

/* A judge request; r receives the response. */
static void judge(const char *model, const char *question, const char *answer, const char *extra, Resp *r)
{
    char *user = judge_user(question, answer);
    chat(model, JUDGE_SYSTEM, user, extra, r);
    free(user);
}

/* The score in a judge reply: the content must be an integer 0..10 written plainly ("7", "10").
 * -1 for anything else (another status, other text, "07", "11"). */
static int score_of(const Resp *r)
{
    if (r->status != 200)
        return -1;
    const char *c = jstr(r, "choices.0.message.content");
    if (!c || !c[0] || strlen(c) > 2 || (c[0] == '0' && c[1]))
        return -1;
    for (const char *p = c; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    int v = atoi(c);
    return v <= 10 ? v : -1;
}

static int judge_score(const char *model, const char *question, const char *answer, const char *extra)
{
    Resp r;
    judge(model, question, answer, extra, &r);
    int s = score_of(&r);
    resp_free(&r);
    return s;
}

#define N_JUDGED 200

typedef struct JudgeRun {
    int pass_correct; /* correct answers scored >= 7 */
    int fail_wrong;   /* wrong answers scored <= 4 */
    int invalid;      /* replies that are not an integer 0..10 */
    int hist[11];
} JudgeRun;

/* model judges the right and a wrong label for N_JUDGED keyed review items. */
static JudgeRun judge_run(const char *model)
{
    JudgeRun jr;
    memset(&jr, 0, sizeof jr);
    for (int i = 0; i < N_JUDGED; i++) {
        char q[128];
        snprintf(q, sizeof q, "Review %d: the product arrived and I have opinions.", i);
        int sc = judge_score(model, q, SENTIMENT[i % 5], NULL);
        int sw = judge_score(model, q, SENTIMENT[(i + 1 + i / 5 % 4) % 5], NULL);
        jr.invalid += (sc < 0) + (sw < 0);
        jr.pass_correct += sc >= 7;
        jr.fail_wrong += sw >= 0 && sw <= 4;
        if (sc >= 0)
            jr.hist[sc]++;
        if (sw >= 0)
            jr.hist[sw]++;
    }
    return jr;
}

static double judge_accuracy(const JudgeRun *jr) { return (jr->pass_correct + jr->fail_wrong) / (2.0 * N_JUDGED); }

static void test_judge_tracks_truth_by_skill(void)
{
    JudgeRun high = judge_run("high"), mid = judge_run("mid"), oracle = judge_run("oracle");
    printf("# judge accuracy over %d right + %d wrong answers: high (0.88) %.3f [correct>=7 %d, wrong<=4 %d], "
           "mid (0.55) %.3f [%d, %d], oracle %.3f\n",
           N_JUDGED, N_JUDGED, judge_accuracy(&high), high.pass_correct, high.fail_wrong, judge_accuracy(&mid),
           mid.pass_correct, mid.fail_wrong, judge_accuracy(&oracle));
    CHECK_INT(high.invalid + mid.invalid + oracle.invalid, 0);
    /* A good judge: most right answers pass, most wrong ones fail, but not all (it is a model). */
    CHECKF(high.pass_correct >= N_JUDGED * 82 / 100, "high: %d of %d right answers scored >= 7", high.pass_correct,
           N_JUDGED);
    CHECKF(high.fail_wrong >= N_JUDGED * 82 / 100, "high: %d of %d wrong answers scored <= 4", high.fail_wrong,
           N_JUDGED);
    CHECKF(judge_accuracy(&high) < 0.97, "high judge is never fooled: %.3f", judge_accuracy(&high));
    /* A weak judge is noticeably unreliable, yet better than a coin. */
    CHECKF(judge_accuracy(&mid) > 0.60 && judge_accuracy(&mid) < 0.80, "mid judge accuracy %.3f",
           judge_accuracy(&mid));
    CHECKF(judge_accuracy(&high) > judge_accuracy(&mid) + 0.10, "high %.3f vs mid %.3f", judge_accuracy(&high),
           judge_accuracy(&mid));
    /* Skill 1 is always right. */
    CHECK_INT(oracle.pass_correct, N_JUDGED);
    CHECK_INT(oracle.fail_wrong, N_JUDGED);
    /* Scores spread over the whole range: both sides and the middling 5-6 of a fooled judge. */
    int low = 0, middle = 0, top = 0;
    for (int v = 0; v <= 10; v++) {
        int n = high.hist[v] + mid.hist[v];
        if (v <= 4)
            low += n;
        else if (v <= 6)
            middle += n;
        else
            top += n;
    }
    CHECK(high.hist[0] + mid.hist[0] > 0 && high.hist[10] + mid.hist[10] > 0);
    CHECKF(middle > 20 && low > 200 && top > 200, "scores 0-4: %d, 5-6: %d, 7-10: %d", low, middle, top);
}

static void test_judge_free_text_and_normalisation(void)
{
    /* Free text: the expected answer passes, the simulator's own wrong (degraded) answer fails. */
    int pass = 0, fail = 0, invalid = 0;
    for (int i = 0; i < N_EXPLAIN; i++) {
        char q[64], expected[160];
        snprintf(q, sizeof q, "Explain item %d", i);
        snprintf(expected, sizeof expected, "Item %d is explained here by a sentence of free text with enough words",
                 i);
        Resp r;
        chat("dunce", NULL, q, NULL, &r);
        char *wrong = json_strdup(&r.doc, jpath(&r, "choices.0.message.content"));
        resp_free(&r);
        CHECK(wrong && strcmp(wrong, expected) != 0);
        int sc = judge_score("oracle", q, expected, NULL);
        int sw = judge_score("oracle", q, wrong ? wrong : "", NULL);
        free(wrong);
        invalid += (sc < 0) + (sw < 0);
        pass += sc >= 7;
        fail += sw >= 0 && sw <= 4;
    }
    CHECK_INT(invalid, 0);
    CHECK_INT(pass, N_EXPLAIN);
    CHECK_INT(fail, N_EXPLAIN);

    /* Correct means equal after tierq.normalize_answer: case, quotes, edge punctuation, spaces. */
    const char *q3 = "Review 3: the product arrived and I have opinions."; /* expected "mixed" */
    CHECK(judge_score("oracle", q3, " \"Mixed.\" ", NULL) >= 7);
    CHECK(judge_score("oracle", q3, "\xe2\x80\x9cMIXED\xe2\x80\x9d", NULL) >= 7);
    CHECK(judge_score("oracle", q3, "mi-xed", NULL) <= 4);
    CHECK(judge_score("oracle", q3, "mixed feelings", NULL) <= 4);
    CHECK(judge_score("oracle", q3, "", NULL) <= 4);
    CHECK(judge_score("oracle", "Summarize: imgconv", "  " LONG_SUMMARY "!\n", NULL) >= 7);
    /* The simulator's own JSON-mode answer {"answer": ...} is the right answer too. */
    CHECK(judge_score("oracle", q3, "{\"answer\":\"mixed\"}", NULL) >= 7);
    CHECK(judge_score("oracle", q3, "{\"answer\":\"neutral\"}", NULL) <= 4);
    /* The key lookup trims the question like an ordinary prompt. */
    CHECK(judge_score("oracle", "  What is the capital of France?\n", "Paris", NULL) >= 7);
    /* A question that itself contains the separator: the split that finds the key wins. */
    CHECK(judge_score("oracle", FEWSHOT_PROMPT, "blue", NULL) >= 7);
    CHECK(judge_score("oracle", FEWSHOT_PROMPT, "green", NULL) <= 4);
}

static void test_judge_unknown_question_is_uncertain(void)
{
    int sum = 0, n = 0, invalid = 0, extreme = 0, distinct = 0;
    int seen[11] = {0};
    for (int i = 0; i < 100; i++) {
        char q[64];
        snprintf(q, sizeof q, "An unkeyed question number %d?", i);
        int s = judge_score("high", q, "some answer", NULL);
        if (s < 0) {
            invalid++;
            continue;
        }
        sum += s, n++;
        extreme += s <= 1 || s >= 9;
        distinct += !seen[s]++;
    }
    CHECK_INT(invalid, 0);
    double mean = n ? (double)sum / n : 0;
    CHECKF(mean > 4.4 && mean < 5.6, "mean score of unknown questions %.2f", mean);
    CHECKF(distinct >= 4, "only %d distinct scores: no noise", distinct);
    CHECKF(extreme <= 10, "%d of 100 unknown questions scored 0-1 or 9-10", extreme);
}

static void test_judge_is_deterministic(void)
{
    int differ = 0, invalid = 0, varied = 0, first = -1;
    for (int i = 0; i < 40; i++) {
        char q[128];
        snprintf(q, sizeof q, "Review %d: the product arrived and I have opinions.", i);
        const char *a = SENTIMENT[(i * 3) % 5];
        int s1 = judge_score("mid", q, a, NULL), s2 = judge_score("mid", q, a, NULL);
        invalid += s1 < 0;
        differ += s1 != s2;
        if (first < 0)
            first = s1;
        varied += s1 != first;
    }
    CHECK_INT(invalid, 0);
    CHECK_INT(differ, 0);
    CHECK(varied > 0);
    /* temperature 0: every choice is the same sample; at temperature 1 choices are independent. */
    const char *q = "Review 11: the product arrived and I have opinions.";
    Resp r;
    judge("mid", q, "negative", "\"n\":5,\"temperature\":0", &r);
    char *c0 = json_strdup(&r.doc, jpath(&r, "choices.0.message.content"));
    for (int i = 1; i < 5; i++) {
        char path[64];
        snprintf(path, sizeof path, "choices.%d.message.content", i);
        CHECK_STR(jstr(&r, path), c0);
    }
    resp_free(&r);
    free(c0);
    judge("mid", q, "negative", "\"n\":30,\"temperature\":1", &r);
    c0 = json_strdup(&r.doc, jpath(&r, "choices.0.message.content"));
    int other = 0;
    for (int i = 1; i < 30; i++) {
        char path[64];
        snprintf(path, sizeof path, "choices.%d.message.content", i);
        const char *c = jstr(&r, path);
        other += c && c0 && strcmp(c, c0) != 0;
    }
    CHECK(other > 0);
    free(c0);
    resp_free(&r);
}

static void test_judge_reply_shape(void)
{
    const char *q = "Review 7: the product arrived and I have opinions."; /* expected neutral */
    char *user = judge_user(q, "neutral");
    Resp r;
    chat("oracle", JUDGE_SYSTEM, user, "\"logprobs\":true", &r);
    int s = score_of(&r);
    CHECK(s >= 7);
    /* usage as for any request: the messages in, the short number out */
    CHECK_INT(jint(&r, "usage.prompt_tokens"), toks(JUDGE_SYSTEM) + 4 + toks(user) + 4);
    CHECK_INT(jint(&r, "usage.completion_tokens"), 2);
    CHECK_STR(jstr(&r, "choices.0.finish_reason"), "stop");
    CHECK_STR(jstr(&r, "choices.0.logprobs.content.0.token"), jstr(&r, "choices.0.message.content"));
    resp_free(&r);
    /* max_tokens 1 keeps the one-token score whole. */
    chat("oracle", JUDGE_SYSTEM, user, "\"max_tokens\":1", &r);
    CHECK_INT(score_of(&r), s);
    CHECK_INT(jint(&r, "usage.completion_tokens"), 1);
    resp_free(&r);
    /* JSON mode: {"score": N} */
    chat("oracle", JUDGE_SYSTEM, user, "\"response_format\":{\"type\":\"json_object\"}", &r);
    char want[32];
    snprintf(want, sizeof want, "{\"score\":%d}", s);
    CHECK_STR(jstr(&r, "choices.0.message.content"), want);
    resp_free(&r);
    /* A reasoning model thinks before it grades. */
    chat("ds-oracle", JUDGE_SYSTEM, user, NULL, &r);
    CHECK(score_of(&r) >= 7);
    CHECK(jint(&r, "usage.completion_tokens_details.reasoning_tokens") >= 48);
    resp_free(&r);
    /* Faults as usual: a marker anywhere in the message fires, and is stripped before grading. */
    char *marked = judge_user("[[sim:503]]Review 7: the product arrived and I have opinions.", "neutral");
    chat("oracle", JUDGE_SYSTEM, marked, NULL, &r);
    CHECK_INT(r.status, 503);
    resp_free(&r);
    chat("oracle", JUDGE_SYSTEM, marked, NULL, &r);
    CHECK_INT(score_of(&r), s);
    resp_free(&r);
    free(marked);

    /* Not a judge request: the grading system prompt without the Question/Answer form, or that form
     * under another system prompt, gets an ordinary answer. */
    chat("oracle", JUDGE_SYSTEM, q, NULL, &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "neutral");
    resp_free(&r);
    chat("oracle", "You answer questions.", user, NULL, &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Answer: Question: Review 7: the product arrived and I");
    resp_free(&r);
    chat("oracle", NULL, user, NULL, &r); /* no system message at all */
    CHECK(score_of(&r) < 0);
    resp_free(&r);
    free(user);
}

/* A counter of model M_ANY in a /sim/stats response. */
static int64_t model_stat(const Resp *s, const char *field)
{
    char path[128];
    snprintf(path, sizeof path, "models.%s.%s", M_ANY, field);
    return jint(s, path);
}

/* Runs against any simulator (only the model name M_ANY and an unknown question are needed). */
static void test_judge_stats(void)
{
    reset_stats();
    Resp r;
    for (int i = 0; i < 5; i++) {
        char q[64];
        snprintf(q, sizeof q, "Judge stats question %d", i);
        judge(M_ANY, q, "an answer", NULL, &r);
        CHECK_INT(r.status, 200);
        CHECK(score_of(&r) >= 0);
        resp_free(&r);
    }
    judge(M_ANY, "[[sim:429]]Judge stats faulted", "an answer", NULL, &r);
    CHECK_INT(r.status, 429);
    resp_free(&r);
    chat(M_ANY, NULL, "What is the capital of France?", NULL, &r); /* an ordinary request */
    resp_free(&r);
    int keyed = 0;
    if (g_self) { /* keyed: 3 right answers to a skill-1 judge */
        for (int i = 0; i < 3; i++) {
            char q[128];
            snprintf(q, sizeof q, "Review %d: the product arrived and I have opinions.", i);
            judge(M_ANY, q, SENTIMENT[i % 5], NULL, &r);
            keyed += score_of(&r) >= 7;
            resp_free(&r);
        }
        CHECK_INT(keyed, 3);
    }
    Resp s;
    stats(&s);
    CHECK_INT(model_stat(&s, "judge_requests"), 6 + keyed);
    CHECK_INT(model_stat(&s, "requests"), 7 + keyed);
    CHECK_INT(model_stat(&s, "answered"), 6 + keyed);
    CHECK_INT(model_stat(&s, "judge_unkeyed"), 5);
    CHECK_INT(model_stat(&s, "judge_right") + model_stat(&s, "judge_fooled"), keyed);
    if (g_self)
        CHECK_INT(model_stat(&s, "judge_right"), keyed);
    /* judge requests are not answers: correct / wrong / unkeyed count only the ordinary one */
    CHECK_INT(model_stat(&s, "correct") + model_stat(&s, "wrong") + model_stat(&s, "unkeyed"), 1);
    resp_free(&s);
}

/* An error fault: the first `times` requests fail with status and error code, then it works. */
static void check_error_fault(const char *fault, int status, const char *code, const char *type)
{
    char user[160];
    snprintf(user, sizeof user, "[[sim:%s:times=2]]What is the capital of France?", fault);
    for (int i = 0; i < 3; i++) {
        Resp r;
        chat(M_ANY, NULL, user, NULL, &r);
        if (i < 2) {
            CHECKF(r.status == status, "fault %s attempt %d: status %ld", fault, i + 1, r.status);
            if (code)
                CHECKF(jstr(&r, "error.code") && strcmp(jstr(&r, "error.code"), code) == 0, "fault %s: code %s", fault,
                       jstr(&r, "error.code") ? jstr(&r, "error.code") : "(none)");
            if (type)
                CHECK_STR(jstr(&r, "error.type"), type);
            CHECK(jstr(&r, "error.message") != NULL);
        } else {
            CHECKF(r.status == 200, "fault %s: third attempt status %ld", fault, r.status);
            if (g_self)
                CHECK_STR(jstr(&r, "choices.0.message.content"), "Paris"); /* marker stripped for the key */
        }
        resp_free(&r);
    }
}

static void test_error_faults(void)
{
    reset_stats();
    check_error_fault("429", 429, "rate_limit_exceeded", NULL);
    check_error_fault("429quota", 429, "insufficient_quota", "insufficient_quota");
    check_error_fault("500", 500, NULL, "server_error");
    check_error_fault("503", 503, NULL, "server_error");
    check_error_fault("400", 400, NULL, "invalid_request_error");
    check_error_fault("401", 401, "invalid_api_key", NULL);

    /* 429 carries retry-after headers. */
    Resp r;
    chat(M_ANY, NULL, "[[sim:429]]retry headers", NULL, &r);
    char v[64];
    CHECK_INT(r.status, 429);
    CHECK_STR(header(&r, "retry-after", v, sizeof v), "1");
    CHECK_STR(header(&r, "retry-after-ms", v, sizeof v), "200");
    resp_free(&r);

    /* intcode: error.code is the number 500. */
    chat(M_ANY, NULL, "[[sim:intcode]]integer code", NULL, &r);
    CHECK_INT(r.status, 500);
    int code = jpath(&r, "error.code");
    CHECK(json_type(&r.doc, code) == JSON_PRIMITIVE);
    CHECK_INT(jint(&r, "error.code"), 500);
    resp_free(&r);
    chat(M_ANY, NULL, "[[sim:intcode]]integer code", NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);

    Resp s;
    stats(&s);
    CHECK_INT(jint(&s, "faults.429"), 3);
    CHECK_INT(jint(&s, "faults.intcode"), 1);
    CHECK_INT(jint(&s, "responses.503"), 2);
    resp_free(&s);
}

static void test_marker_order_model_filter_and_always(void)
{
    reset_stats();
    int want[] = {429, 500, 200, 200};
    for (int i = 0; i < 4; i++) {
        Resp r;
        chat(M_ANY, NULL, "[[sim:429]][[sim:500]]two faults in order", NULL, &r);
        CHECKF(r.status == want[i], "attempt %d: status %ld, want %d", i + 1, r.status, want[i]);
        resp_free(&r);
    }
    for (int i = 0; i < 3; i++) {
        Resp r;
        chat(M_ANY, NULL, "[[sim:503:times=0]]always failing", NULL, &r);
        CHECK_INT(r.status, 503);
        resp_free(&r);
    }
    if (g_self) { /* only the named model gets the fault */
        Resp r;
        chat("oracle", NULL, "[[sim:503:model=high]]filtered", NULL, &r);
        CHECK_INT(r.status, 200);
        resp_free(&r);
        chat("high", NULL, "[[sim:503:model=high]]filtered", NULL, &r);
        CHECK_INT(r.status, 503);
        resp_free(&r);
        chat("high", NULL, "[[sim:503:model=high]]filtered", NULL, &r);
        CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    /* Reset forgets the counters: the fault fires again. */
    Resp r;
    chat(M_ANY, NULL, "[[sim:500]]once more after reset", NULL, &r);
    CHECK_INT(r.status, 500);
    resp_free(&r);
    reset_stats();
    chat(M_ANY, NULL, "[[sim:500]]once more after reset", NULL, &r);
    CHECK_INT(r.status, 500);
    resp_free(&r);
    /* Text that only looks like a marker is left alone. */
    chat(M_ANY, NULL, "[[sim:nonsense]] is not a fault", NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
}

static void test_transport_faults(void)
{
    Resp r;
    /* drop: no response at all, then success */
    g_fresh = true;
    chat(M_ANY, NULL, "[[sim:drop]]What is the capital of France?", NULL, &r);
    g_fresh = false;
    CHECKF(r.cc == CURLE_GOT_NOTHING, "drop: curl result %d (%s)", (int)r.cc, curl_easy_strerror(r.cc));
    resp_free(&r);
    chat(M_ANY, NULL, "[[sim:drop]]What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);

    /* truncated: the full Content-Length promised, half delivered */
    chat(M_ANY, NULL, "[[sim:truncated]]What is the capital of France?", NULL, &r);
    CHECKF(r.cc == CURLE_PARTIAL_FILE, "truncated: curl result %d (%s)", (int)r.cc, curl_easy_strerror(r.cc));
    char v[64];
    long promised = atol(header(&r, "content-length", v, sizeof v));
    CHECK(promised > 0 && (long)r.body.len == promised / 2);
    CHECK(!r.parsed);
    resp_free(&r);
    chat(M_ANY, NULL, "[[sim:truncated]]What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK(r.parsed);
    resp_free(&r);

    /* invalid: 200 that is not JSON */
    chat(M_ANY, NULL, "[[sim:invalid]]What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK(r.body.len > 0 && !r.parsed);
    CHECK(strncmp(header(&r, "content-type", v, sizeof v), "text/html", 9) == 0);
    resp_free(&r);

    /* oversized: a valid JSON body of over 20 MB */
    chat(M_ANY, NULL, "[[sim:oversized]]What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECKF(r.body.len > ((size_t)20 << 20), "oversized body is %zu bytes", r.body.len);
    const char *content = jstr(&r, "choices.0.message.content");
    CHECK(content && strlen(content) >= ((size_t)20 << 20));
    resp_free(&r);

    /* nousage: a normal answer without usage */
    chat(M_ANY, NULL, "[[sim:nousage]]What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK(r.parsed && jpath(&r, "choices.0.message.content") >= 0 && jpath(&r, "usage") < 0);
    resp_free(&r);
}

/* Run several requests at once on separate connections (curl multi). */
static void run_parallel(const char **bodies, int n, Resp *out)
{
    CURLM *m = curl_multi_init();
    CURL *e[256];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < n; i++) {
        resp_init(&out[i]);
        e[i] = curl_easy_init();
        setup_easy(e[i], &g_sim, "POST", "/v1/chat/completions", bodies[i], strlen(bodies[i]), h, &out[i]);
        curl_easy_setopt(e[i], CURLOPT_PRIVATE, &out[i]);
        curl_multi_add_handle(m, e[i]);
    }
    int running = n;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            Resp *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->cc = msg->data.result;
            finish_resp(msg->easy_handle, r);
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
}

static void test_slow_does_not_block_others(void)
{
    char *slow = chat_body(M_ANY, NULL, "[[sim:slow]]What is the capital of France?", NULL);
    char *fast = chat_body(M_ANY, NULL, "What is the capital of France?", NULL);
    const char *bodies[2] = {slow, fast};
    Resp r[2];
    run_parallel(bodies, 2, r);
    CHECK_INT(r[0].status, 200);
    CHECK_INT(r[1].status, 200);
    if (g_self)
        CHECK_STR(jstr(&r[0], "choices.0.message.content"), "Paris");
    CHECKF(r[0].secs >= SLOW_MS / 1000.0 * 0.95, "slow answered after %.3f s", r[0].secs);
    CHECKF(r[1].secs < r[0].secs - 0.2, "fast took %.3f s, slow %.3f s", r[1].secs, r[0].secs);
    resp_free(&r[0]);
    resp_free(&r[1]);
    free(slow);
    free(fast);
}

static void test_concurrency_and_in_flight(void)
{
    enum { N = 100 };
    reset_stats();
    char *bodies[N];
    for (int i = 0; i < N; i++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "Review %d: the product arrived and I have opinions.", i);
        bodies[i] = chat_body("slowpoke", NULL, prompt, NULL);
    }
    Resp r[N];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_parallel((const char **)bodies, N, r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        ok += r[i].status == 200 && r[i].secs >= 0.14;
        resp_free(&r[i]);
        free(bodies[i]);
    }
    CHECK_INT(ok, N);
    CHECKF(secs < 1.5, "%d requests of 150 ms took %.3f s: not concurrent", N, secs);
    Resp s;
    stats(&s);
    CHECKF(jint(&s, "in_flight.peak") >= N * 8 / 10, "in_flight.peak %lld", (long long)jint(&s, "in_flight.peak"));
    CHECK(jint(&s, "connections.peak") >= N * 8 / 10);
    CHECK_INT(jint(&s, "in_flight.current"), 0);
    CHECK_INT(jint(&s, "models.slowpoke.requests"), N);
    resp_free(&s);
}

static void test_unknown_model_and_bad_requests(void)
{
    Resp r;
    chat("nope", NULL, "hello", NULL, &r);
    CHECK_INT(r.status, 404);
    CHECK_STR(jstr(&r, "error.message"), "The model `nope` does not exist");
    CHECK_STR(jstr(&r, "error.type"), "invalid_request_error");
    CHECK_STR(jstr(&r, "error.param"), "model");
    CHECK_STR(jstr(&r, "error.code"), "model_not_found");
    resp_free(&r);

    http("POST", "/v1/chat/completions", "{not json", &r);
    CHECK_INT(r.status, 400);
    CHECK_STR(jstr(&r, "error.type"), "invalid_request_error");
    resp_free(&r);
    char body[128];
    snprintf(body, sizeof body, "{\"model\":\"%s\"}", M_ANY);
    http("POST", "/v1/chat/completions", body, &r);
    CHECK_INT(r.status, 400);
    CHECK_STR(jstr(&r, "error.param"), "messages");
    resp_free(&r);
    chat(M_ANY, NULL, "hello", "\"n\":0", &r);
    CHECK_INT(r.status, 400);
    resp_free(&r);
    http("GET", "/v1/nothing-here", NULL, &r);
    CHECK_INT(r.status, 404);
    resp_free(&r);
    http("GET", "/v1/chat/completions", NULL, &r);
    CHECK_INT(r.status, 405);
    resp_free(&r);
}

static void test_request_too_large(void)
{
    size_t n = (size_t)9 << 20;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    Resp r;
    resp_init(&r);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_reset(g_curl);
    setup_easy(g_curl, &g_sim, "POST", "/v1/chat/completions", big, n, h, &r);
    r.cc = curl_easy_perform(g_curl);
    finish_resp(g_curl, &r);
    CHECK_INT(r.status, 413);
    curl_slist_free_all(h);
    resp_free(&r);
    free(big);
    /* The simulator is still fine. */
    chat(M_ANY, NULL, "hello after 413", NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
}

static void test_stats_counts(void)
{
    reset_stats();
    Resp r;
    for (int i = 0; i < 3; i++) {
        chat(M_ANY, NULL, "What is the capital of France?", NULL, &r);
        resp_free(&r);
    }
    chat(M_ANY, NULL, "[[sim:429]]counted fault", NULL, &r);
    resp_free(&r);
    chat("nope", NULL, "x", NULL, &r);
    resp_free(&r);
    Resp s;
    stats(&s);
    CHECK_INT(jint(&s, "requests"), 5);
    CHECK_INT(jint(&s, "http_requests"), 5);
    CHECK_INT(jint(&s, "responses.200"), 3);
    CHECK_INT(jint(&s, "responses.429"), 1);
    CHECK_INT(jint(&s, "responses.404"), 1);
    CHECK_INT(jint(&s, "faults.429"), 1);
    CHECK_INT(jint(&s, "faults.500"), 0);
    char path[128];
    snprintf(path, sizeof path, "models.%s.requests", M_ANY);
    CHECK_INT(jint(&s, path), 4);
    snprintf(path, sizeof path, "models.%s.answered", M_ANY);
    CHECK_INT(jint(&s, path), 3);
    snprintf(path, sizeof path, "models.%s.prompt_tokens", M_ANY);
    CHECK_INT(jint(&s, path), 3 * (toks("What is the capital of France?") + 4));
    if (g_self)
        CHECK_INT(jint(&s, "models.oracle.correct"), 3);
    CHECK_INT(jint(&s, "in_flight.current"), 0);
    CHECK(jint(&s, "connections.current") >= 1);
    resp_free(&s);
}

static void test_keep_alive(void)
{
    reset_stats();
    for (int i = 0; i < 10; i++) {
        Resp r;
        chat(M_ANY, NULL, "What is 2+2?", NULL, &r);
        CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    Resp s;
    stats(&s);
    /* 10 requests, one handle: the connection is reused (the reset request opened it). */
    CHECKF(jint(&s, "connections.total") == 0, "connections opened: %lld",
           (long long)jint(&s, "connections.total"));
    CHECK_INT(jint(&s, "http_requests"), 10);
    resp_free(&s);
}

static void test_require_key(void)
{
    const Sim *a = &g_authsim;
    char body[256];
    snprintf(body, sizeof body, "{\"model\":\"oracle\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    Resp r;
    http_to(a, "POST", "/v1/chat/completions", body, NULL, &r);
    CHECK_INT(r.status, 401);
    CHECK_STR(jstr(&r, "error.code"), "invalid_api_key");
    CHECK(r.body.data && !strstr(r.body.data, TEST_KEY));
    resp_free(&r);
    http_to(a, "POST", "/v1/chat/completions", body, "sim-test-key-4243", &r);
    CHECK_INT(r.status, 401);
    resp_free(&r);
    http_to(a, "GET", "/v1/models", NULL, NULL, &r);
    CHECK_INT(r.status, 401);
    resp_free(&r);
    http_to(a, "GET", "/v1/models", NULL, TEST_KEY, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
    http_to(a, "GET", "/sim/stats", NULL, NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
}

static void test_global_fault_rate(void)
{
    const Sim *a = &g_authsim;
    Resp reset;
    http_to(a, "POST", "/sim/reset", "", NULL, &reset);
    CHECK_INT(reset.status, 200);
    resp_free(&reset);
    int n500 = 0, n200 = 0;
    for (int i = 0; i < 200; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"model\":\"oracle\",\"messages\":[{\"role\":\"user\",\"content\":\"question %d\"}]}", i);
        Resp r;
        http_to(a, "POST", "/v1/chat/completions", body, TEST_KEY, &r);
        n500 += r.status == 500;
        n200 += r.status == 200;
        resp_free(&r);
    }
    CHECK_INT(n500 + n200, 200);
    CHECKF(n500 >= 30 && n500 <= 70, "500s: %d of 200 at rate 0.25", n500);
    Resp s;
    http_to(a, "GET", "/sim/stats", NULL, NULL, &s);
    CHECK_INT(jint(&s, "faults.500"), n500);
    resp_free(&s);
}

static void test_sigterm_exits_cleanly(void)
{
    CHECK_INT(stop_sim(&g_authsim), 0);
    Resp r;
    http_to(&g_authsim, "GET", "/sim/health", NULL, NULL, &r);
    CHECK(r.cc != CURLE_OK);
    resp_free(&r);
}

/* ---- batched prompts ---- */

/* The wire contract, spelled out here on its own: the test fails if the simulator's copy drifts. */
#define TEST_BATCH_INSTRUCTION                                                                              \
    "\n\nYou will receive several items as a JSON object mapping item ids to items. Answer each item "    \
    "independently, following the instructions above. Reply with only a JSON object that maps each item " \
    "id to its answer as a string, with exactly the ids you received."
#define BATCH_KIND_SYSTEM "You classify things. Reply with one word."
#define BMAX 64

/* ids[i] (NULL: "1", "2", ...) -> texts[i], as a JSON object. */
static char *batch_user(const char *const *texts, const char *const *ids, int n)
{
    Buf u;
    buf_init(&u, 0);
    buf_putc(&u, '{');
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i + 1);
        if (i)
            buf_putc(&u, ',');
        json_put_cstr(&u, ids ? ids[i] : id);
        buf_putc(&u, ':');
        json_put_cstr(&u, texts[i]);
    }
    buf_putc(&u, '}');
    return buf_take(&u);
}

static char *batch_system(const char *kind_system)
{
    Buf b;
    buf_init(&b, 0);
    buf_puts(&b, kind_system);
    buf_puts(&b, TEST_BATCH_INSTRUCTION);
    return buf_take(&b);
}

static char *batch_body(const char *model, const char *kind_system, const char *const *texts, int n,
                        const char *extra)
{
    char *sys = batch_system(kind_system), *user = batch_user(texts, NULL, n);
    char *body = chat_body(model, sys, user, extra);
    free(sys);
    free(user);
    return body;
}

static void batch_to(const Sim *s, const char *model, const char *kind_system, const char *const *texts, int n,
                     const char *extra, const char *key, Resp *r)
{
    char *body = batch_body(model, kind_system, texts, n, extra);
    http_to(s, "POST", "/v1/chat/completions", body, key, r);
    free(body);
}

static void batch(const char *model, const char *const *texts, int n, const char *extra, Resp *r)
{
    batch_to(&g_sim, model, BATCH_KIND_SYSTEM, texts, n, extra, NULL, r);
}

/* The content of one choice of a batch reply, read as the JSON object it should be. */
typedef struct BatchReply {
    char *content; /* NULL when the response has no content */
    bool json;     /* content is a JSON object */
    int n;         /* members, in order (duplicates included) */
    char *keys[BMAX];
    char *vals[BMAX]; /* NULL when the value is not a string */
    JsonType types[BMAX];
    size_t voff[BMAX], vlen[BMAX]; /* raw bytes of each value inside content (strings: between the quotes) */
} BatchReply;

static void batch_reply(const Resp *r, int choice, BatchReply *br)
{
    memset(br, 0, sizeof *br);
    char path[64];
    snprintf(path, sizeof path, "choices.%d.message.content", choice);
    int c = jpath(r, path);
    br->content = c >= 0 ? json_strdup(&r->doc, c) : NULL;
    if (!br->content)
        return;
    JsonDoc d;
    if (json_parse(&d, br->content, strlen(br->content), 0, NULL))
        return;
    if (json_type(&d, 0) == JSON_OBJECT) {
        br->json = true;
        int k = 1;
        for (int i = 0; i < json_size(&d, 0) && br->n < BMAX; i++, k = json_skip(&d, k + 1)) {
            int m = br->n++;
            br->keys[m] = json_strdup(&d, k);
            br->types[m] = json_type(&d, k + 1);
            br->vals[m] = br->types[m] == JSON_STRING ? json_strdup(&d, k + 1) : NULL;
            size_t len;
            const char *raw = json_raw(&d, k + 1, &len);
            br->voff[m] = (size_t)(raw - br->content);
            br->vlen[m] = len;
        }
    }
    json_doc_free(&d);
}

static void batch_reply_free(BatchReply *br)
{
    free(br->content);
    for (int i = 0; i < br->n; i++) {
        free(br->keys[i]);
        free(br->vals[i]);
    }
    memset(br, 0, sizeof *br);
}

/* Index of the first member with id key, -1 if none. */
static int br_find(const BatchReply *br, const char *key)
{
    for (int i = 0; i < br->n; i++)
        if (br->keys[i] && strcmp(br->keys[i], key) == 0)
            return i;
    return -1;
}

/* The answer a single request with user message text gets (choice `choice`), malloc'd. */
static char *single_answer(const char *model, const char *system, const char *text, const char *extra, int choice)
{
    Resp r;
    chat(model, system, text, extra, &r);
    char path[64];
    snprintf(path, sizeof path, "choices.%d.message.content", choice);
    char *s = r.status == 200 ? json_strdup(&r.doc, jpath(&r, path)) : NULL;
    resp_free(&r);
    return s;
}

static char g_review[BMAX][96];

/* Review prompts from number first: their expected answer is SENTIMENT[number % 5]. */
static const char **reviews(int first, int n, const char **texts)
{
    for (int i = 0; i < n; i++) {
        snprintf(g_review[i], sizeof g_review[i], "Review %d: the product arrived and I have opinions.", first + i);
        texts[i] = g_review[i];
    }
    return texts;
}

/* Every member of br is the answer a single request gets for texts[i], ids "1".."n" in order. */
static int batch_mismatches(const char *model, const BatchReply *br, const char *const *texts, int n,
                            const char *extra, int choice)
{
    int bad = br->json && br->n == n ? 0 : n + 1;
    for (int i = 0; !bad && i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i + 1);
        char *want = single_answer(model, NULL, texts[i], extra, choice);
        bool ok = br->keys[i] && strcmp(br->keys[i], id) == 0 && br->vals[i] && want && strcmp(br->vals[i], want) == 0;
        if (!ok)
            printf("#   %s item %d: got \"%s\" under \"%s\", single request \"%s\"\n", model, i + 1,
                   br->vals[i] ? br->vals[i] : "(not a string)", br->keys[i] ? br->keys[i] : "?", want ? want : "?");
        bad += !ok;
        free(want);
    }
    return bad;
}

static void test_batch_answers_like_single_requests(void)
{
    CHECK_STR(TEST_BATCH_INSTRUCTION, BATCH_INSTRUCTION); /* tests/sim/batch.h holds the same text */
    const char *texts[BMAX];
    int n = 0;
    reviews(100, 24, texts);
    n = 24;
    texts[n++] = "Summarize: imgconv";
    texts[n++] = "Explain item 3";
    texts[n++] = "Package: vim\nDescription: Vi IMproved"; /* escapes in the item text */
    texts[n++] = "Back\\slash package";
    texts[n++] = "  What is the capital of France?\n"; /* trimmed for the lookup, like a single prompt */
    texts[n++] = "Tell me about \"batches\" and \xc3\xa9t\xc3\xa9 please";     /* unkeyed, quotes, UTF-8 */
    texts[n++] = "Extract: vim";                                          /* an answer that is JSON text */
    const char *models[] = {"mid", "high", "dunce", "ds-oracle", "oracle"};
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        Resp r;
        batch(models[m], texts, n, NULL, &r);
        CHECK_INT(r.status, 200);
        CHECK_STR(jstr(&r, "choices.0.finish_reason"), "stop");
        BatchReply br;
        batch_reply(&r, 0, &br);
        CHECKF(batch_mismatches(models[m], &br, texts, n, NULL, 0) == 0, "model %s", models[m]);
        if (strcmp(models[m], "mid") == 0) { /* the draw is exercised: a 0.55 model gets some wrong */
            int wrong = 0;
            for (int i = 0; i < 24 && i < br.n; i++)
                wrong += br.vals[i] && strcmp(br.vals[i], SENTIMENT[(100 + i) % 5]) != 0;
            CHECKF(wrong >= 3 && wrong <= 18, "mid got %d of 24 wrong", wrong);
        }
        batch_reply_free(&br);
        resp_free(&r);
    }
    /* JSON mode changes nothing: the reply is the same object. */
    Resp a, b;
    batch("mid", texts, n, NULL, &a);
    batch("mid", texts, n, "\"response_format\":{\"type\":\"json_object\"}", &b);
    CHECK_STR(jstr(&b, "choices.0.message.content"), jstr(&a, "choices.0.message.content"));
    resp_free(&a);
    resp_free(&b);
    /* Samples: choice k of a batch is choice k of single requests with the same seed and temperature. */
    const char *extra = "\"n\":3,\"temperature\":1,\"seed\":9";
    batch("mid", texts, 24, extra, &a);
    CHECK_INT(json_size(&a.doc, jpath(&a, "choices")), 3);
    for (int c = 0; c < 3; c++) {
        BatchReply br;
        batch_reply(&a, c, &br);
        CHECKF(batch_mismatches("mid", &br, texts, 24, extra, c) == 0, "choice %d", c);
        batch_reply_free(&br);
    }
    resp_free(&a);
    /* Ids are whatever the client sent, in the order sent. */
    const char *ids[] = {"z9", "a1", "m"};
    char *sys = batch_system(BATCH_KIND_SYSTEM), *user = batch_user(texts, ids, 3);
    chat("oracle", sys, user, NULL, &a);
    BatchReply br;
    batch_reply(&a, 0, &br);
    CHECK_INT(br.n, 3);
    for (int i = 0; i < 3 && i < br.n; i++) {
        CHECK_STR(br.keys[i], ids[i]);
        CHECK_STR(br.vals[i], SENTIMENT[(100 + i) % 5]);
    }
    batch_reply_free(&br);
    resp_free(&a);
    free(user);
    /* Not batches: ordinary answers. An object under a system prompt without the instruction ... */
    user = batch_user(texts, NULL, 2);
    chat("oracle", BATCH_KIND_SYSTEM, user, NULL, &a);
    const char *got = jstr(&a, "choices.0.message.content");
    CHECK(got && strncmp(got, "Answer: {", 9) == 0);
    resp_free(&a);
    free(user);
    /* ... the instruction with a user message that is not an object of strings ... */
    chat("oracle", sys, "What is the capital of France?", NULL, &a);
    CHECK_STR(jstr(&a, "choices.0.message.content"), "Paris");
    resp_free(&a);
    chat("oracle", sys, "{\"1\": 42}", NULL, &a);
    CHECK_STR(jstr(&a, "choices.0.message.content"), "Answer: {\"1\": 42}");
    resp_free(&a);
    chat("oracle", sys, "{}", NULL, &a);
    CHECK_STR(jstr(&a, "choices.0.message.content"), "Answer: {}");
    resp_free(&a);
    /* ... and the instruction not at the end of the system prompt. */
    Buf other;
    buf_init(&other, 0);
    buf_puts(&other, sys);
    buf_puts(&other, " Thanks.");
    user = batch_user(texts, NULL, 2);
    chat("oracle", other.data, user, NULL, &a);
    got = jstr(&a, "choices.0.message.content");
    CHECK(got && strncmp(got, "Answer: {", 9) == 0);
    resp_free(&a);
    free(user);
    buf_free(&other);
    free(sys);

    /* A judge kind batched: every item is graded as a single judge request would be. */
    const char *jt[10];
    char *owned[10];
    for (int i = 0; i < 10; i++) {
        char q[96];
        snprintf(q, sizeof q, "Review %d: the product arrived and I have opinions.", 300 + i);
        jt[i] = owned[i] = judge_user(q, SENTIMENT[(300 + i + i / 3) % 5]);
    }
    batch_to(&g_sim, "mid", JUDGE_SYSTEM, jt, 10, NULL, NULL, &a);
    batch_reply(&a, 0, &br);
    CHECK(br.json && br.n == 10);
    int same = 0;
    for (int i = 0; i < 10 && i < br.n; i++) {
        char *want = single_answer("mid", JUDGE_SYSTEM, jt[i], NULL, 0);
        same += want && br.vals[i] && strcmp(want, br.vals[i]) == 0 && strlen(want) <= 2;
        free(want);
    }
    CHECK_INT(same, 10);
    batch_reply_free(&br);
    resp_free(&a);
    for (int i = 0; i < 10; i++)
        free(owned[i]);
}

/* The batch Review 200..203 (answers positive, negative, neutral, mixed for oracle) with marker
 * prepended to item `at` (1-based; 0: none). */
static void fault_batch(const char *marker, int at, const char *extra, Resp *r, BatchReply *br)
{
    const char *texts[4];
    char marked[160];
    reviews(200, 4, texts);
    if (at) {
        snprintf(marked, sizeof marked, "%s%s", marker, texts[at - 1]);
        texts[at - 1] = marked;
    }
    batch("oracle", texts, 4, extra, r);
    batch_reply(r, 0, br);
}

static const char *expect_200(int item) { return SENTIMENT[(200 + item - 1) % 5]; }

/* br is the clean reply: ids 1..4 with the right answers. */
static bool clean_reply(const BatchReply *br)
{
    if (!br->json || br->n != 4)
        return false;
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i + 1);
        if (!br->keys[i] || strcmp(br->keys[i], id) || !br->vals[i] || strcmp(br->vals[i], expect_200(i + 1)))
            return false;
    }
    return true;
}

static bool member_is(const BatchReply *br, int i, const char *key, const char *val)
{
    return i >= 0 && i < br->n && br->keys[i] && strcmp(br->keys[i], key) == 0 && br->vals[i] &&
           strcmp(br->vals[i], val) == 0;
}

static void test_batch_faults(void)
{
    reset_stats();
    Resp r;
    BatchReply br, clean;
    fault_batch(NULL, 0, NULL, &r, &clean);
    CHECK(clean_reply(&clean));
    resp_free(&r);

    /* missing: id 2 absent */
    fault_batch("[[sim:batch_missing]]", 2, NULL, &r, &br);
    CHECK_INT(r.status, 200);
    CHECK(br.json && br.n == 3 && br_find(&br, "2") < 0);
    CHECK(member_is(&br, 0, "1", expect_200(1)) && member_is(&br, 1, "3", expect_200(3)) &&
          member_is(&br, 2, "4", expect_200(4)));
    batch_reply_free(&br);
    resp_free(&r);
    fault_batch("[[sim:batch_missing]]", 2, NULL, &r, &br); /* times=1: the next request is clean */
    CHECK(clean_reply(&br));
    batch_reply_free(&br);
    resp_free(&r);

    /* dup: id 2 twice, the second time with another answer */
    fault_batch("[[sim:batch_dup]]", 2, NULL, &r, &br);
    CHECK(br.json && br.n == 5);
    CHECK(member_is(&br, 1, "2", expect_200(2)));
    CHECK(br.n == 5 && br.keys[2] && strcmp(br.keys[2], "2") == 0 && br.vals[2] &&
          strcmp(br.vals[2], expect_200(2)) != 0);
    CHECK(member_is(&br, 3, "3", expect_200(3)));
    batch_reply_free(&br);
    resp_free(&r);

    /* swap: item 2's answer under id 3 and item 3's under id 2 */
    fault_batch("[[sim:batch_swap]]", 2, NULL, &r, &br);
    CHECK(br.json && br.n == 4);
    CHECK(member_is(&br, 0, "1", expect_200(1)) && member_is(&br, 1, "2", expect_200(3)) &&
          member_is(&br, 2, "3", expect_200(2)) && member_is(&br, 3, "4", expect_200(4)));
    batch_reply_free(&br);
    resp_free(&r);
    /* on the last item: it trades with the first */
    fault_batch("[[sim:batch_swap]]", 4, NULL, &r, &br);
    CHECK(member_is(&br, 0, "1", expect_200(4)) && member_is(&br, 3, "4", expect_200(1)));
    batch_reply_free(&br);
    resp_free(&r);

    /* unknown: one extra id that was not sent */
    fault_batch("[[sim:batch_unknown]]", 2, NULL, &r, &br);
    CHECK(br.json && br.n == 5);
    int unknown = 0, known = 0;
    for (int i = 0; i < br.n; i++) {
        int id = br.keys[i] ? atoi(br.keys[i]) : 0;
        if (id >= 1 && id <= 4 && strlen(br.keys[i]) == 1)
            known += br.vals[i] && strcmp(br.vals[i], expect_200(id)) == 0;
        else
            unknown++;
    }
    CHECK_INT(known, 4);
    CHECK_INT(unknown, 1);
    batch_reply_free(&br);
    resp_free(&r);

    /* malformed: item 2's value is a number or an object */
    fault_batch("[[sim:batch_malformed]]", 2, NULL, &r, &br);
    CHECK(br.json && br.n == 4);
    int v2 = br_find(&br, "2");
    CHECK(v2 == 1 && (br.types[1] == JSON_OBJECT || br.types[1] == JSON_PRIMITIVE));
    CHECK(member_is(&br, 0, "1", expect_200(1)) && member_is(&br, 2, "3", expect_200(3)));
    batch_reply_free(&br);
    resp_free(&r);

    /* merge: items 2 and 3 in one value under id 2, id 3 missing */
    fault_batch("[[sim:batch_merge]]", 2, NULL, &r, &br);
    CHECK(br.json && br.n == 3 && br_find(&br, "3") < 0);
    v2 = br_find(&br, "2");
    CHECK(v2 >= 0 && br.vals[v2] && strstr(br.vals[v2], expect_200(2)) && strstr(br.vals[v2], expect_200(3)));
    CHECK(member_is(&br, 0, "1", expect_200(1)) && member_is(&br, 2, "4", expect_200(4)));
    batch_reply_free(&br);
    resp_free(&r);

    /* truncated: a valid HTTP 200 whose content is the reply cut in the middle */
    fault_batch("[[sim:batch_truncated]]", 3, NULL, &r, &br);
    CHECK_INT(r.status, 200);
    CHECK(r.parsed);
    CHECK_STR(jstr(&r, "choices.0.finish_reason"), "stop");
    CHECK(br.content && !br.json);
    size_t full = clean.content ? strlen(clean.content) : 0, got = br.content ? strlen(br.content) : 0;
    CHECKF(got > 0 && got < full && got * 2 >= full - 2 && got * 2 <= full,
           "truncated content %zu of %zu bytes", got, full);
    CHECK(br.content && clean.content && strncmp(br.content, clean.content, got) == 0);
    CHECK_INT(jint(&r, "usage.completion_tokens"), (int64_t)(got + 3) / 4 + 1);
    batch_reply_free(&br);
    resp_free(&r);

    /* invalid: the content is not JSON at all (the answers as prose) */
    fault_batch("[[sim:batch_invalid]]", 1, NULL, &r, &br);
    CHECK_INT(r.status, 200);
    CHECK(br.content && !br.json);
    JsonDoc d;
    bool parses = br.content && json_parse(&d, br.content, strlen(br.content), 0, NULL) == 0;
    if (parses)
        json_doc_free(&d);
    CHECK(!parses);
    CHECK(br.content && strstr(br.content, expect_200(1)) && strstr(br.content, expect_200(4)));
    batch_reply_free(&br);
    resp_free(&r);
    /* in JSON mode too */
    fault_batch("[[sim:batch_invalid]]", 4, "\"response_format\":{\"type\":\"json_object\"}", &r, &br);
    CHECK(br.content && !br.json);
    batch_reply_free(&br);
    resp_free(&r);

    /* times=N counts per item text, whatever else the batch holds */
    for (int k = 0; k < 3; k++) {
        const char *texts[3];
        char marked[160];
        reviews(210 + k, 3, texts); /* other items each time */
        snprintf(marked, sizeof marked, "[[sim:batch_missing:times=2]]%s", "Review 250: the product arrived and I have opinions.");
        texts[1] = marked;
        batch("oracle", texts, 3, NULL, &r);
        batch_reply(&r, 0, &br);
        bool has = br_find(&br, "2") >= 0;
        CHECKF(has == (k == 2), "attempt %d: id 2 %s", k + 1, has ? "present" : "missing");
        CHECK(br.json && br.n == (k == 2 ? 3 : 2));
        batch_reply_free(&br);
        resp_free(&r);
    }
    /* :model= limits the fault to one model */
    fault_batch("[[sim:batch_missing:model=high]]", 2, NULL, &r, &br);
    CHECK(clean_reply(&br));
    batch_reply_free(&br);
    resp_free(&r);
    /* A batch marker in a single request is removed and does nothing: the item re-sent alone works. */
    Resp one;
    chat("oracle", NULL, "[[sim:batch_merge]]Review 201: the product arrived and I have opinions.", NULL, &one);
    CHECK_INT(one.status, 200);
    CHECK_STR(jstr(&one, "choices.0.message.content"), expect_200(2));
    resp_free(&one);
    /* A request-level marker in an item fails the whole call, once per item text. */
    fault_batch("[[sim:503]]", 3, NULL, &r, &br);
    CHECK_INT(r.status, 503);
    batch_reply_free(&br);
    resp_free(&r);
    fault_batch("[[sim:503]]", 3, NULL, &r, &br);
    CHECK_INT(r.status, 200);
    CHECK(clean_reply(&br));
    batch_reply_free(&br);
    resp_free(&r);
    /* Request-level faults go first: the batch marker of an item waits until the error is spent. */
    fault_batch("[[sim:batch_dup]][[sim:429]]", 1, NULL, &r, &br);
    CHECK_INT(r.status, 429);
    batch_reply_free(&br);
    resp_free(&r);
    fault_batch("[[sim:batch_dup]][[sim:429]]", 1, NULL, &r, &br);
    CHECK(br.json && br.n == 5);
    batch_reply_free(&br);
    resp_free(&r);

    Resp s;
    stats(&s);
    CHECK_INT(jint(&s, "faults.batch_missing"), 3);
    CHECK_INT(jint(&s, "faults.batch_dup"), 2);
    CHECK_INT(jint(&s, "faults.batch_swap"), 2);
    CHECK_INT(jint(&s, "faults.batch_unknown"), 1);
    CHECK_INT(jint(&s, "faults.batch_malformed"), 1);
    CHECK_INT(jint(&s, "faults.batch_merge"), 1);
    CHECK_INT(jint(&s, "faults.batch_truncated"), 1);
    CHECK_INT(jint(&s, "faults.batch_invalid"), 2);
    CHECK_INT(jint(&s, "faults.batch_garble"), 0);
    CHECK_INT(jint(&s, "faults.503"), 1);
    CHECK_INT(jint(&s, "faults.429"), 1);
    resp_free(&s);
    batch_reply_free(&clean);
}

static void test_batch_prefix_cache_and_usage(void)
{
    /* A kind's system prompt of ~400 tokens with the instruction, unique to this run. */
    Buf kind;
    buf_init(&kind, 0);
    buf_printf(&kind, "Batch run %ld.%d. ", (long)time(NULL), (int)getpid());
    while (kind.len < 1350)
        buf_puts(&kind, "Classify each review by its sentiment, using the house label set. ");
    char *sys = batch_system(kind.data);
    int64_t sys_tokens = toks(sys) + 4;
    CHECKF(sys_tokens >= 380 && sys_tokens <= 440, "system prompt of %lld tokens", (long long)sys_tokens);
    const char *texts[8];
    Resp a, b, c, d;
    batch_to(&g_sim, "oracle", kind.data, reviews(400, 8, texts), 8, NULL, NULL, &a);
    batch_to(&g_sim, "oracle", kind.data, reviews(410, 8, texts), 8, NULL, NULL, &b); /* other items */
    batch_to(&g_sim, "oracle", kind.data, reviews(420, 8, texts), 8, NULL, NULL, &c);
    CHECK_INT(a.status, 200);
    CHECK_INT(jint(&a, "usage.prompt_tokens_details.cached_tokens"), 0);
    CHECK_INT(jint(&b, "usage.prompt_tokens_details.cached_tokens"), sys_tokens);
    CHECK_INT(jint(&c, "usage.prompt_tokens_details.cached_tokens"), sys_tokens);
    /* usage: the whole request in, the whole reply out */
    char *user = batch_user(reviews(420, 8, texts), NULL, 8);
    CHECK_INT(jint(&c, "usage.prompt_tokens"), sys_tokens + toks(user) + 4);
    const char *content = jstr(&c, "choices.0.message.content");
    CHECK(content != NULL);
    CHECK_INT(jint(&c, "usage.completion_tokens"), content ? toks(content) + 1 : -1);
    CHECK_INT(jint(&c, "usage.total_tokens"), jint(&c, "usage.prompt_tokens") + jint(&c, "usage.completion_tokens"));
    free(user);
    /* deepseek style: hit and miss */
    batch_to(&g_sim, "ds-oracle", kind.data, reviews(400, 8, texts), 8, NULL, NULL, &d);
    CHECK_INT(jint(&d, "usage.prompt_cache_hit_tokens"), 0);
    resp_free(&d);
    batch_to(&g_sim, "ds-oracle", kind.data, reviews(430, 8, texts), 8, NULL, NULL, &d);
    CHECK_INT(jint(&d, "usage.prompt_cache_hit_tokens"), sys_tokens);
    CHECK_INT(jint(&d, "usage.prompt_cache_hit_tokens") + jint(&d, "usage.prompt_cache_miss_tokens"),
              jint(&d, "usage.prompt_tokens"));
    resp_free(&a);
    resp_free(&b);
    resp_free(&c);
    resp_free(&d);
    /* max_tokens cuts the whole reply */
    batch("oracle", reviews(400, 8, texts), 8, "\"max_tokens\":5", &a);
    CHECK_STR(jstr(&a, "choices.0.finish_reason"), "length");
    CHECK_INT(jint(&a, "usage.completion_tokens"), 5);
    content = jstr(&a, "choices.0.message.content");
    CHECK(content && strlen(content) == 16);
    resp_free(&a);
    free(sys);
    buf_free(&kind);
}

typedef struct TokenWalk {
    int ntok;
    double lp[4096];
    size_t off[4096], len[4096];
} TokenWalk;

/* The logprobs tokens of choice 0 with their byte offsets; false if they do not rebuild content. */
static bool token_walk(const Resp *r, const char *content, TokenWalk *w)
{
    int arr = jpath(r, "choices.0.logprobs.content");
    w->ntok = 0;
    if (arr < 0 || json_type(&r->doc, arr) != JSON_ARRAY)
        return false;
    size_t at = 0;
    bool ok = true;
    for (int i = 0; i < json_size(&r->doc, arr) && w->ntok < 4096; i++) {
        int e = json_at(&r->doc, arr, i);
        char *tok = json_strdup(&r->doc, json_get(&r->doc, e, "token"));
        double lp = 1;
        json_double(&r->doc, json_get(&r->doc, e, "logprob"), &lp);
        size_t tl = tok ? strlen(tok) : 0;
        ok = ok && tok && strncmp(content + at, tok, tl) == 0;
        w->lp[w->ntok] = lp, w->off[w->ntok] = at, w->len[w->ntok] = tl, w->ntok++;
        at += tl;
        free(tok);
    }
    return ok && at == strlen(content);
}

static void test_batch_logprobs(void)
{
    enum { PER = 20, BATCHES = 20 };
    double sum_right = 0, sum_wrong = 0;
    int right = 0, wrong = 0, straddle = 0, unsure_punct = 0, bad_walk = 0, first_same = 0, first_checked = 0;
    for (int bn = 0; bn < BATCHES; bn++) {
        const char *texts[PER];
        reviews(bn * PER, PER, texts);
        Resp r;
        batch("mid", texts, PER, "\"logprobs\":true,\"top_logprobs\":2", &r);
        BatchReply br;
        batch_reply(&r, 0, &br);
        static TokenWalk w;
        if (!br.json || br.n != PER || !token_walk(&r, br.content, &w)) {
            bad_walk++;
            batch_reply_free(&br);
            resp_free(&r);
            continue;
        }
        CHECK_INT(json_size(&r.doc, jpath(&r, "choices.0.logprobs.content.0.top_logprobs")), 2);
        for (int t = 0; t < w.ntok; t++) { /* each token wholly inside one value or wholly outside */
            int inside = -1;
            for (int i = 0; i < br.n; i++) {
                size_t vs = br.voff[i], ve = vs + br.vlen[i];
                if (w.off[t] < ve && w.off[t] + w.len[t] > vs) {
                    straddle += w.off[t] < vs || w.off[t] + w.len[t] > ve;
                    inside = i;
                }
            }
            if (inside < 0)
                unsure_punct += w.lp[t] < -0.001;
        }
        for (int i = 0; i < br.n; i++) {
            double sum = 0;
            int k = 0, first = -1;
            for (int t = 0; t < w.ntok; t++)
                if (w.off[t] >= br.voff[i] && w.off[t] + w.len[t] <= br.voff[i] + br.vlen[i]) {
                    sum += w.lp[t], k++;
                    if (first < 0)
                        first = t;
                }
            if (!k)
                continue;
            bool ok = br.vals[i] && strcmp(br.vals[i], SENTIMENT[(bn * PER + i) % 5]) == 0;
            if (ok)
                sum_right += sum / k, right++;
            else
                sum_wrong += sum / k, wrong++;
            if (bn == 0 && i < 5) { /* the first token is the single request's first token, same draw */
                Resp one;
                chat("mid", NULL, texts[i], "\"logprobs\":true", &one);
                double lp = 1;
                json_double(&one.doc, jpath(&one, "choices.0.logprobs.content.0.logprob"), &lp);
                first_checked++;
                first_same += fabs(lp - w.lp[first]) < 1e-9;
                resp_free(&one);
            }
        }
        batch_reply_free(&br);
        resp_free(&r);
    }
    double mr = right ? sum_right / right : 0, mw = wrong ? sum_wrong / wrong : 0;
    printf("# batch logprobs: %d right items mean logprob %.3f, %d wrong %.3f\n", right, mr, wrong, mw);
    CHECK_INT(bad_walk, 0);
    CHECK_INT(straddle, 0);
    CHECK_INT(unsure_punct, 0);
    CHECK_INT(right + wrong, PER * BATCHES);
    CHECK(right > 100 && wrong > 60);
    CHECKF(mr > mw + 0.2, "right items %.3f vs wrong %.3f", mr, mw);
    CHECK_INT(first_checked, 5);
    CHECK_INT(first_same, 5);
}

static void test_batch_stats(void)
{
    reset_stats();
    const char *texts[4];
    Resp r;
    batch("oracle", reviews(350, 3, texts), 3, NULL, &r); /* keyed items (N_REVIEWS) */
    resp_free(&r);
    batch("oracle", reviews(360, 4, texts), 4, NULL, &r);
    resp_free(&r);
    reviews(370, 2, texts);
    texts[1] = "[[sim:429]]Review 371: the product arrived and I have opinions.";
    batch("oracle", texts, 2, NULL, &r);
    CHECK_INT(r.status, 429);
    resp_free(&r);
    chat("oracle", NULL, "What is the capital of France?", NULL, &r);
    resp_free(&r);
    texts[0] = "Tell me about penguins"; /* unkeyed */
    batch("oracle", texts, 1, NULL, &r);
    resp_free(&r);
    Resp s;
    stats(&s);
    CHECK_INT(jint(&s, "models.oracle.batch_requests"), 4);
    CHECK_INT(jint(&s, "models.oracle.batch_items"), 10);
    CHECK_INT(jint(&s, "models.oracle.requests"), 5);
    CHECK_INT(jint(&s, "models.oracle.answered"), 4);
    CHECK_INT(jint(&s, "models.oracle.correct"), 3 + 4 + 1); /* items of answered batches, and the single */
    CHECK_INT(jint(&s, "models.oracle.unkeyed"), 1);
    CHECK_INT(jint(&s, "models.oracle.wrong"), 0);
    CHECK_INT(jint(&s, "models.mid.batch_requests"), 0);
    CHECK_INT(jint(&s, "faults.429"), 1);
    resp_free(&s);
}

/* --fault-rate batch_garble=0.5 on the second simulator: about half the batches carry one fault. */
static void test_batch_garble_rate(void)
{
    const Sim *a = &g_authsim;
    Resp reset;
    http_to(a, "POST", "/sim/reset", "", NULL, &reset);
    resp_free(&reset);
    enum { N = 200 };
    int ok = 0, garbled = 0, determinism = 0, same = 0;
    for (int i = 0; i < N; i++) {
        char t[3][64];
        const char *texts[3];
        for (int k = 0; k < 3; k++) {
            snprintf(t[k], sizeof t[k], "garble batch %d item %d", i, k);
            texts[k] = t[k];
        }
        Resp r;
        batch_to(a, "oracle", BATCH_KIND_SYSTEM, texts, 3, NULL, TEST_KEY, &r);
        if (r.status != 200) { /* this simulator also has 500=0.25 */
            resp_free(&r);
            continue;
        }
        ok++;
        BatchReply br;
        batch_reply(&r, 0, &br);
        bool clean = br.json && br.n == 3;
        for (int k = 0; clean && k < 3; k++) {
            char id[8], want[96];
            snprintf(id, sizeof id, "%d", k + 1);
            snprintf(want, sizeof want, "Answer: %s", t[k]);
            clean = member_is(&br, k, id, want);
        }
        garbled += !clean;
        if (i < 30) { /* the same body gets the same fault (drawn from its hash) */
            Resp again;
            batch_to(a, "oracle", BATCH_KIND_SYSTEM, texts, 3, NULL, TEST_KEY, &again);
            if (again.status == 200) {
                determinism++;
                const char *c1 = jstr(&r, "choices.0.message.content"), *c2 = jstr(&again, "choices.0.message.content");
                same += c1 && c2 && strcmp(c1, c2) == 0;
            }
            resp_free(&again);
        }
        batch_reply_free(&br);
        resp_free(&r);
    }
    printf("# batch_garble=0.5: %d of %d answered batches garbled\n", garbled, ok);
    CHECK(ok > N / 2);
    CHECKF(garbled > ok * 35 / 100 && garbled < ok * 65 / 100, "%d of %d garbled", garbled, ok);
    CHECK(determinism > 10);
    CHECK_INT(same, determinism);
    Resp s;
    http_to(a, "GET", "/sim/stats", NULL, NULL, &s);
    int64_t sum = 0;
    const char *names[] = {"batch_missing", "batch_dup", "batch_swap", "batch_unknown",
                           "batch_malformed", "batch_merge", "batch_truncated", "batch_invalid"};
    int kinds = 0;
    for (int k = 0; k < 8; k++) {
        char path[64];
        snprintf(path, sizeof path, "faults.%s", names[k]);
        sum += jint(&s, path);
        kinds += jint(&s, path) > 0;
    }
    int64_t g = jint(&s, "faults.batch_garble");
    CHECK_INT(sum, g);
    CHECKF(kinds >= 6, "only %d kinds of batch faults drawn", kinds);
    CHECK(g >= garbled); /* the re-sent bodies were garbled again */
    resp_free(&s);
    /* Single requests never get a batch fault. */
    Resp one;
    char body[256];
    snprintf(body, sizeof body, "{\"model\":\"oracle\",\"messages\":[{\"role\":\"user\",\"content\":\"plain\"}]}");
    http_to(a, "POST", "/v1/chat/completions", body, TEST_KEY, &one);
    resp_free(&one);
    http_to(a, "GET", "/sim/stats", NULL, NULL, &s);
    CHECK_INT(jint(&s, "faults.batch_garble"), g);
    resp_free(&s);
}

/* ---- model settings: catalog keys, harsher catalogs, /sim/models/<name> ---- */

/* Start the simulator on a catalog with text catalog (and the flags extra, NULL-terminated, may be
 * NULL) and wait for it to give up. Returns its exit status with the last line of its stderr in msg,
 * or -1 when it started listening instead (it is stopped again). */
static int sim_exit(const char *catalog, const char *const extra[], char *msg, size_t cap)
{
    static int seq;
    char path[128], errpath[160];
    snprintf(path, sizeof path, "%s/catalog-%d.json", g_dir, ++seq);
    snprintf(errpath, sizeof errpath, "%s.err", path);
    msg[0] = '\0';
    if (write_file(path, catalog))
        return -2;
    const char *argv[24] = {g_bin, "--port", "0", "--models", path};
    int argc = 5;
    for (int i = 0; extra && extra[i] && argc < 23; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int pfd[2];
    if (pipe(pfd))
        return -2;
    pid_t pid = fork();
    if (pid < 0)
        return -2;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        FILE *ef = fopen(errpath, "w");
        if (ef)
            dup2(fileno(ef), 2);
        setenv("TIERQ_LOG", "warn", 1);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char line[128] = {0};
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    bool listening = false;
    if (poll(&pf, 1, 10000) > 0 && read(pfd[0], line, sizeof line - 1) > 0)
        listening = strncmp(line, "listening on", 12) == 0;
    close(pfd[0]);
    if (listening)
        kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    FILE *ef = fopen(errpath, "r");
    if (ef) {
        char l[1024];
        while (fgets(l, sizeof l, ef))
            snprintf(msg, cap, "%s", l);
        fclose(ef);
    }
    if (listening)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int catalog_exit(const char *catalog, char *msg, size_t cap) { return sim_exit(catalog, NULL, msg, cap); }

/* The catalog is refused at start, naming the file and want (the model and the key). */
static void check_refused(const char *catalog, const char *want)
{
    char msg[1024];
    int st = catalog_exit(catalog, msg, sizeof msg);
    CHECKF(st > 0, "exit status %d for %s", st, catalog);
    CHECKF(strstr(msg, want) != NULL, "message \"%s\" lacks \"%s\"", msg, want);
    CHECKF(strstr(msg, ".json") != NULL, "message \"%s\" does not name the file", msg);
}

static void test_catalog_refuses_unknown_keys(void)
{
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5}}, \"modles\": {}}", "unknown top-level key \"modles\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"skil\": 0.6}}}", "model m: unknown key \"skil\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"confidence\": {\"wrong\": {\"mean\": 0.7, \"sd\": 0.1}}}}}",
                  "model m: unknown key \"confidence.wrong.sd\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"confidence\": {\"wrongly\": {}}}}}",
                  "model m: unknown key \"confidence.wrongly\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"latency_ms\": {\"mean\": 1, \"jiter\": 2}}}}",
                  "model m: unknown key \"latency_ms.jiter\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"judge\": {\"fooled\": 0.5}}}}",
                  "model m: unknown key \"judge.fooled\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"difficulty\": {\"kind_offsets\": {}}}}}",
                  "model m: unknown key \"difficulty.kind_offsets\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"rpn\": 60}}}",
                  "model m: unknown key \"rpn\" (known there: skill, latency_ms, ms_per_output_token, logprobs, "
                  "usage_style, reasoning, confidence, difficulty, judge, compress, provider, rpm, tpm, down, "
                  "description)");
    /* the control: every key spelled out is accepted */
    char msg[1024];
    int st = catalog_exit(
        "{\"description\": \"all keys\", \"models\": {\"m\": {\"description\": \"x\", \"skill\": 0.5,"
        " \"latency_ms\": {\"mean\": 0, \"jitter\": 0}, \"ms_per_output_token\": 0, \"logprobs\": true,"
        " \"usage_style\": \"openai\", \"reasoning\": false,"
        " \"confidence\": {\"correct\": {\"mean\": 0.9, \"spread\": 0.07, \"min\": 0.3, \"max\": 0.999},"
        " \"wrong\": {\"mean\": 0.62, \"spread\": 0.15, \"min\": 0.05, \"max\": 0.99},"
        " \"unkeyed\": {\"mean\": 0.8, \"spread\": 0.12, \"min\": 0.05, \"max\": 0.999}, \"token_spread\": 0.03},"
        " \"difficulty\": {\"sensitivity\": 2.5, \"pivot\": 0.65, \"kind_offset\": {\"sentiment\": 0.1}},"
        " \"judge\": {\"skill\": null, \"skill_exponent\": 1.5, \"difficulty_sensitivity\": 1,"
        " \"difficulty_pivot\": 0.5, \"fooled_middling\": 0.4},"
        " \"provider\": \"p\", \"rpm\": 500, \"tpm\": null, \"down\": false}}}",
        msg, sizeof msg);
    CHECKF(st == -1, "a catalog with every key did not start (status %d): %s", st, msg);
}

static void test_catalog_refuses_values_out_of_range(void)
{
    check_refused("{\"models\": {\"m\": {\"skill\": 1.5}}}", "model m: skill must be a number in [0, 1], got 1.5");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"confidence\": {\"correct\": {\"spread\": -0.1}}}}}",
                  "model m: confidence.correct.spread must be a number in [0, 1], got -0.1");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"confidence\": {\"wrong\": {\"mean\": 1.2}}}}}",
                  "model m: confidence.wrong.mean must be a number in [0, 1]");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"judge\": {\"fooled_middling\": -0.5}}}}",
                  "model m: judge.fooled_middling must be a number in [0, 1]");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"confidence\": {\"wrong\": {\"min\": 0.9, \"max\": 0.5}}}}}",
                  "model m: confidence.wrong.min (0.9) is above confidence.wrong.max (0.5)");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"difficulty\": {\"kind_offset\": {\"sentiment\": 3}}}}}",
                  "model m: difficulty.kind_offset.sentiment must be a number in [-1, 1]");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"difficulty\": {\"sensitivity\": -1}}}}",
                  "model m: difficulty.sensitivity must be a number in [0, 50]");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"rpm\": 0}}}",
                  "model m: rpm must be null or a whole number in [1, 1000000000000], got 0");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"tpm\": 1.5}}}",
                  "model m: tpm must be null or a whole number in [1, 1000000000000], got 1.5");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"tpm\": \"100\"}}}", "model m: tpm must be null");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"down\": \"maybe\"}}}",
                  "model m: down must be false, true, \"503\" or \"drop\"");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"provider\": 7}}}", "model m: provider must be a string");
}

static const char *root_dir(void)
{
    const char *r = getenv("TIERQ_ROOT");
    return r && *r ? r : ".";
}

/* Start a simulator on the shipped catalog file name (tests/sim/name), no latency. */
static int start_shipped(Sim *s, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/sim/%s", root_dir(), name);
    const char *extra[] = {"--latency-ms", "0", NULL};
    return start_sim_models(s, g_bin, path, extra);
}

/* The number at path in the settings of model on s (GET /sim/models/<model>); NAN if absent. */
static double setting(const Sim *s, const char *model, const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "/sim/models/%s", model);
    Resp r;
    http_to(s, "GET", url, NULL, NULL, &r);
    double v = NAN;
    int i = jpath(&r, path);
    if (r.status != 200 || i < 0 || json_double(&r.doc, i, &v))
        v = NAN;
    resp_free(&r);
    return v;
}

static void test_harsher_catalogs(void)
{
    Sim shipped = {0}, weaker = {0}, over = {0};
    CHECK(start_shipped(&shipped, "models.json") == 0);
    CHECK(start_shipped(&weaker, "models-weaker.json") == 0);
    CHECK(start_shipped(&over, "models-overconfident.json") == 0);
    if (!shipped.pid || !weaker.pid || !over.pid)
        goto cleanup;
    CHECK(setting(&weaker, "qwen3-8b", "skill") == 0.40);
    CHECK(setting(&weaker, "qwen3-32b", "skill") == 0.55);
    CHECK(setting(&weaker, "deepseek-v4-flash", "skill") == 0.65);
    CHECK(setting(&weaker, "gpt-4o", "skill") == 0.88);
    CHECK(setting(&over, "qwen3-8b", "confidence.wrong.mean") == 0.76);
    CHECK(setting(&over, "qwen3-8b", "confidence.correct.mean") == 0.90);
    CHECK(setting(&shipped, "qwen3-8b", "confidence.wrong.mean") == 0.62);

    /* Against the answer key: the overconfident catalog moves only the confidence of wrong answers
     * (same draws, so the same items are right), and by about the 0.14 of its mean. */
    static bool ok_s[N_REVIEWS], ok_w[N_REVIEWS], ok_o[N_REVIEWS];
    double acc_s, cr_s, cw_s, acc_w, cr_w, cw_w, acc_o, cr_o, cw_o;
    measure_on(&shipped, NULL, "qwen3-8b", &acc_s, &cr_s, &cw_s, ok_s);
    measure_on(&weaker, NULL, "qwen3-8b", &acc_w, &cr_w, &cw_w, ok_w);
    measure_on(&over, NULL, "qwen3-8b", &acc_o, &cr_o, &cw_o, ok_o);
    printf("# qwen3-8b: shipped accuracy %.3f confidence right %.3f wrong %.3f; weaker accuracy %.3f;"
           " overconfident confidence right %.3f wrong %.3f\n",
           acc_s, cr_s, cw_s, acc_w, cr_o, cw_o);
    CHECKF(cw_o > cw_s + 0.08, "wrong answers: confidence %.3f overconfident vs %.3f shipped", cw_o, cw_s);
    CHECKF(cw_o > 0.70 && cw_o < 0.80, "overconfident wrong confidence %.3f", cw_o);
    CHECK(acc_o == acc_s && fabs(cr_o - cr_s) < 1e-9);
    int same = 0, weaker_only = 0;
    for (int i = 0; i < N_REVIEWS; i++) {
        same += ok_o[i] == ok_s[i];
        weaker_only += ok_w[i] && !ok_s[i]; /* a weaker model is right only where the stronger one is */
    }
    CHECK_INT(same, N_REVIEWS);
    CHECK_INT(weaker_only, 0);
    CHECKF(acc_w < acc_s - 0.08, "weaker accuracy %.3f vs shipped %.3f", acc_w, acc_s);
cleanup:
    stop_sim(&shipped);
    stop_sim(&weaker);
    stop_sim(&over);
}

static void tune(const Sim *s, const char *model, const char *body, Resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "/sim/models/%s", model);
    http_to(s, "POST", url, body, NULL, r);
}

static int tune_status(const Sim *s, const char *model, const char *body)
{
    Resp r;
    tune(s, model, body, &r);
    int st = (int)r.status;
    resp_free(&r);
    return st;
}

/* Judge, on s with key, the right and a wrong label of n review items: how many verdicts were right. */
static int judge_right_on(const Sim *s, const char *key, const char *model, int n)
{
    int right = 0;
    for (int i = 0; i < n; i++) {
        char q[128];
        snprintf(q, sizeof q, "Review %d: the product arrived and I have opinions.", i);
        for (int w = 0; w < 2; w++) {
            char *user = judge_user(q, SENTIMENT[(i + w) % 5]);
            Resp r;
            chat_to(s, key, model, JUDGE_SYSTEM, user, NULL, &r);
            int sc = score_of(&r);
            right += w ? (sc >= 0 && sc <= 4) : sc >= 7;
            resp_free(&r);
            free(user);
        }
    }
    return right;
}

/* Drift: POST /sim/models/<name> changes a model for the requests that follow. The simulator
 * demands a key on /v1, never on /sim/. */
static void test_runtime_switch(void)
{
    Sim t = {0};
    const char *extra[] = {"--require-key", TEST_KEY, NULL};
    if (start_sim(&t, g_bin, extra)) {
        CHECK(!"simulator started");
        return;
    }
    Resp r;
    http_to(&t, "GET", "/sim/models/mid", NULL, NULL, &r);
    CHECK_INT(r.status, 200);
    double v = -1;
    CHECK(json_double(&r.doc, jpath(&r, "skill"), &v) == 0 && v == 0.55);
    CHECK(json_is_null(&r.doc, jpath(&r, "judge.skill")));
    /* posting the settings back (every key explicit, at its value) changes no answer */
    static bool before[N_REVIEWS], after[N_REVIEWS];
    double acc0, cr0, cw0, acc1, cr1, cw1;
    measure_on(&t, TEST_KEY, "mid", &acc0, &cr0, &cw0, before);
    Resp same;
    tune(&t, "mid", r.body.data, &same);
    CHECK_INT(same.status, 200);
    CHECK_STR(same.body.data, r.body.data);
    resp_free(&same);
    resp_free(&r);
    measure_on(&t, TEST_KEY, "mid", &acc1, &cr1, &cw1, after);
    CHECK(acc1 == acc0 && cr1 == cr0 && cw1 == cw0 && memcmp(before, after, sizeof before) == 0);

    /* the drift: skill 0.99, then 0.05 */
    CHECK_INT(tune_status(&t, "mid", "{\"skill\": 0.99}"), 200);
    double acc_hi, acc_lo, c1, c2;
    measure_on(&t, TEST_KEY, "mid", &acc_hi, &c1, &c2, before);
    CHECK_INT(tune_status(&t, "mid", "{\"skill\": 0.05}"), 200);
    measure_on(&t, TEST_KEY, "mid", &acc_lo, &c1, &c2, after);
    printf("# mid: accuracy %.3f at skill 0.55, %.3f at 0.99, %.3f at 0.05\n", acc0, acc_hi, acc_lo);
    CHECKF(acc_hi > 0.93, "accuracy %.3f at skill 0.99", acc_hi);
    CHECKF(acc_lo < 0.35, "accuracy %.3f at skill 0.05", acc_lo);
    int regained = 0;
    for (int i = 0; i < N_REVIEWS; i++)
        regained += after[i] && !before[i];
    CHECK_INT(regained, 0);

    /* refused: an unknown key, a value out of range; nothing changes (all or nothing) */
    tune(&t, "mid", "{\"skill\": 0.5, \"skil\": 0.9}", &r);
    CHECK_INT(r.status, 400);
    CHECKF(r.body.data && strstr(r.body.data, "unknown key \\\"skil\\\""), "body %s", r.body.data);
    resp_free(&r);
    tune(&t, "mid", "{\"skill\": 0.5, \"confidence\": {\"wrong\": {\"spread\": -1}}}", &r);
    CHECK_INT(r.status, 400);
    CHECKF(r.body.data && strstr(r.body.data, "confidence.wrong.spread must be a number in [0, 1]"), "body %s",
           r.body.data);
    resp_free(&r);
    CHECK(setting(&t, "mid", "skill") == 0.05);
    CHECK(setting(&t, "mid", "confidence.wrong.spread") == 0.15);
    CHECK_INT(tune_status(&t, "mid", "[1]"), 400);
    CHECK_INT(tune_status(&t, "mid", "not json"), 400);
    CHECK_INT(tune_status(&t, "no-such-model", "{}"), 404);

    /* the confidence of right answers, exactly: mean 0.5, no spread -> first token ln 0.5 */
    CHECK_INT(tune_status(&t, "oracle", "{\"confidence\": {\"correct\": {\"mean\": 0.5, \"spread\": 0}}}"), 200);
    chat_to(&t, TEST_KEY, "oracle", NULL, "Review 3: the product arrived and I have opinions.", "\"logprobs\":true",
            &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), SENTIMENT[3]);
    double lp = 0;
    CHECK(json_double(&r.doc, jpath(&r, "choices.0.logprobs.content.0.logprob"), &lp) == 0 &&
          fabs(lp - log(0.5)) < 1e-6);
    resp_free(&r);

    /* a kind made harder for one model lowers its accuracy on that kind only */
    double acc_hard, acc_easy;
    CHECK_INT(tune_status(&t, "mid", "{\"skill\": 0.55, \"difficulty\": {\"kind_offset\": {\"sentiment\": 0.5}}}"),
              200);
    measure_on(&t, TEST_KEY, "mid", &acc_hard, &c1, &c2, NULL);
    CHECK_INT(tune_status(&t, "mid", "{\"difficulty\": {\"kind_offset\": {\"sentiment\": -0.5}}}"), 200);
    measure_on(&t, TEST_KEY, "mid", &acc_easy, &c1, &c2, NULL);
    printf("# mid (0.55): accuracy %.3f with sentiment 0.5 harder, %.3f 0.5 easier\n", acc_hard, acc_easy);
    CHECKF(acc_hard < acc0 - 0.1 && acc_easy > acc0 + 0.1, "%.3f < %.3f < %.3f", acc_hard, acc0, acc_easy);
    CHECK(setting(&t, "mid", "difficulty.kind_offset.sentiment") == -0.5);

    /* the judge has its own skill: dunce always answers wrong, yet as a judge with skill 1 never errs */
    CHECKF(judge_right_on(&t, TEST_KEY, "dunce", 40) < 60, "dunce judges at skill 0 like a coin");
    CHECK_INT(tune_status(&t, "dunce", "{\"judge\": {\"skill\": 1}}"), 200);
    CHECK_INT(judge_right_on(&t, TEST_KEY, "dunce", 40), 80);
    chat_to(&t, TEST_KEY, "dunce", NULL, "Review 1: the product arrived and I have opinions.", NULL, &r);
    CHECK(jstr(&r, "choices.0.message.content") && strcmp(jstr(&r, "choices.0.message.content"), SENTIMENT[1]) != 0);
    resp_free(&r);

    /* latency, for the requests that follow */
    CHECK_INT(tune_status(&t, "oracle", "{\"latency_ms\": 300}"), 200);
    chat_to(&t, TEST_KEY, "oracle", NULL, "Review 2: the product arrived and I have opinions.", NULL, &r);
    CHECKF(r.status == 200 && r.secs >= 0.29, "latency %.3f s after latency_ms 300", r.secs);
    resp_free(&r);

    /* /sim/models is neither counted nor guarded by the key */
    http_to(&t, "POST", "/sim/reset", "", NULL, &r);
    resp_free(&r);
    CHECK_INT(tune_status(&t, "mid", "{}"), 200);
    CHECK_INT(tune_status(&t, "mid", "{\"nope\": 1}"), 400);
    http_to(&t, "GET", "/sim/models/mid", NULL, NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
    http_to(&t, "GET", "/sim/stats", NULL, NULL, &r);
    CHECK_INT(jint(&r, "http_requests"), 0);
    resp_free(&r);
    CHECK_INT(stop_sim(&t), 0);
}

/* ---- rate limits and outages ---- */

static const char *LIMITS_JSON =
    "{\"models\": {\n"
    " \"rl\": {\"skill\": 1.0, \"latency_ms\": 0, \"rpm\": 60, \"provider\": \"pa\"},\n"
    " \"tk\": {\"skill\": 1.0, \"latency_ms\": 0, \"tpm\": 1000, \"provider\": \"pa\"},\n"
    " \"free\": {\"skill\": 1.0, \"latency_ms\": 0, \"provider\": \"pb\"},\n"
    " \"pz1\": {\"skill\": 1.0, \"latency_ms\": 0, \"provider\": \"pz\"},\n"
    " \"pz2\": {\"skill\": 1.0, \"latency_ms\": 0, \"provider\": \"pz\"}\n"
    "}}\n";

/* Start a simulator on LIMITS_JSON with the flags extra (may be NULL). */
static int start_limits(Sim *s, const char *const extra[])
{
    char path[128];
    snprintf(path, sizeof path, "%s/limits.json", g_dir);
    if (write_file(path, LIMITS_JSON))
        return -1;
    return start_sim_models(s, g_bin, path, extra);
}

/* A header as an integer; -1 when absent or not a number. */
static int64_t header_int(const Resp *r, const char *name)
{
    char v[64], *end;
    header(r, name, v, sizeof v);
    long long x = strtoll(v, &end, 10);
    return v[0] && !*end ? x : -1;
}

/* A Go-style duration ("120ms", "1s", "6.5s", "6m0s", "1h0m0s") in ms; -1 when malformed. */
static int64_t duration_ms(const char *s)
{
    if (strcmp(s, "0s") == 0)
        return 0;
    double total = 0;
    bool any = false;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || v < 0)
            return -1;
        if (strncmp(end, "ms", 2) == 0)
            total += v, end += 2;
        else if (*end == 'h')
            total += v * 3600000, end++;
        else if (*end == 'm')
            total += v * 60000, end++;
        else if (*end == 's')
            total += v * 1000, end++;
        else
            return -1;
        s = end;
        any = true;
    }
    return any ? (int64_t)llround(total) : -1;
}

static int64_t header_ms(const Resp *r, const char *name)
{
    char v[64];
    return duration_ms(header(r, name, v, sizeof v));
}

static const char *const LIMIT_HEADERS[] = {"x-ratelimit-limit-requests",   "x-ratelimit-remaining-requests",
                                            "x-ratelimit-reset-requests",   "x-ratelimit-limit-tokens",
                                            "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"};

/* How many of the six x-ratelimit-* headers r carries (first: the three of requests, then tokens). */
static int limit_headers(const Resp *r, int first, int n)
{
    int have = 0;
    char v[64];
    for (int i = first; i < first + n; i++)
        have += header(r, LIMIT_HEADERS[i], v, sizeof v)[0] != '\0';
    return have;
}

static int64_t stat_of(const Sim *s, const char *model, const char *field)
{
    Resp r;
    http_to(s, "GET", "/sim/stats", NULL, NULL, &r);
    char path[128];
    snprintf(path, sizeof path, "models.%s.%s", model, field);
    int64_t v = jint(&r, path);
    resp_free(&r);
    return v;
}

/* rpm 60: a burst of 60 passes with the remaining count going down, the 61st gets OpenAI's 429 with
 * every header and a retry-after that is enough; the bucket refills; other models are unaffected. */
static void test_rate_limit_requests(void)
{
    Sim t = {0};
    if (start_limits(&t, NULL)) {
        CHECK(!"simulator started");
        return;
    }
    int ok = 0, down_by_one = 0;
    int64_t prev = -1;
    Resp r;
    resp_init(&r);
    for (int i = 0; i < 70; i++) {
        resp_free(&r);
        chat_to(&t, NULL, "rl", NULL, "What is the capital of France?", NULL, &r);
        if (r.status != 200)
            break;
        ok++;
        int64_t rem = header_int(&r, "x-ratelimit-remaining-requests");
        down_by_one += prev < 0 || rem == prev - 1;
        prev = rem;
        if (i == 0) {
            CHECK_INT(header_int(&r, "x-ratelimit-limit-requests"), 60);
            CHECK_INT(rem, 59);
            CHECK_INT(header_ms(&r, "x-ratelimit-reset-requests"), 1000); /* one request refills in 1 s */
            CHECK_INT(limit_headers(&r, 3, 3), 0); /* no tpm: no token headers */
        }
    }
    /* the burst takes well under a second on loopback: at most one request refilled meanwhile */
    CHECKF(ok == 60 || ok == 61, "%d requests passed an rpm of 60", ok);
    CHECKF(down_by_one >= ok - 1, "remaining-requests went down by one %d times in %d", down_by_one, ok);
    CHECK_INT(r.status, 429);
    CHECK_INT(limit_headers(&r, 0, 3), 3);
    CHECK_INT(header_int(&r, "x-ratelimit-remaining-requests"), 0);
    CHECK_INT(header_int(&r, "x-ratelimit-limit-requests"), 60);
    int64_t reset = header_ms(&r, "x-ratelimit-reset-requests");
    CHECKF(reset > 55000 && reset <= 60000, "reset-requests %lld ms with the bucket empty", (long long)reset);
    int64_t wait = header_int(&r, "retry-after-ms");
    CHECKF(wait > 0 && wait <= 1000, "retry-after-ms %lld", (long long)wait);
    CHECK_INT(header_int(&r, "retry-after"), (wait + 999) / 1000);
    CHECK_STR(jstr(&r, "error.code"), "rate_limit_exceeded");
    CHECK_STR(jstr(&r, "error.type"), "requests");
    CHECK(jpath(&r, "error.param") >= 0 && json_is_null(&r.doc, jpath(&r, "error.param")));
    const char *msg = jstr(&r, "error.message");
    CHECKF(msg && strncmp(msg, "Rate limit reached for rl in organization ", 42) == 0 &&
               strstr(msg, " on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in "),
           "message %s", msg ? msg : "(none)");
    char want[64], dur[32];
    snprintf(dur, sizeof dur, "%lldms", (long long)wait);
    if (wait == 1000)
        snprintf(dur, sizeof dur, "1s");
    snprintf(want, sizeof want, "Please try again in %s.", dur);
    CHECKF(msg && strstr(msg, want), "message %s lacks \"%s\"", msg ? msg : "(none)", want);
    resp_free(&r);

    /* another model (no limits) is not held back and gets no limit headers */
    chat_to(&t, NULL, "free", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_INT(limit_headers(&r, 0, 6), 0);
    resp_free(&r);

    /* waiting retry-after-ms is enough: the bucket refilled one request */
    usleep((useconds_t)(wait + 20) * 1000);
    chat_to(&t, NULL, "rl", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Paris");
    CHECK_INT(header_int(&r, "x-ratelimit-remaining-requests"), 0);
    resp_free(&r);
    chat_to(&t, NULL, "rl", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 429);
    resp_free(&r);
    CHECK_INT(stat_of(&t, "rl", "rate_limited"), 2);
    CHECK_INT(stat_of(&t, "rl", "answered"), ok + 1);
    CHECK_INT(stat_of(&t, "free", "rate_limited"), 0);

    /* /sim/reset fills every bucket */
    http_to(&t, "POST", "/sim/reset", "", NULL, &r);
    resp_free(&r);
    chat_to(&t, NULL, "rl", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_INT(header_int(&r, "x-ratelimit-remaining-requests"), 59);
    resp_free(&r);
    CHECK_INT(stop_sim(&t), 0);
}

/* tpm 1000: admission charges prompt + max_tokens, the answer's usage corrects it; a request the
 * bucket cannot hold now is a 429 of type tokens with the wait it needs; one larger than the whole
 * limit is "Request too large" without retry-after. */
static void test_rate_limit_tokens(void)
{
    Sim t = {0};
    if (start_limits(&t, NULL)) {
        CHECK(!"simulator started");
        return;
    }
    Resp r;
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", "\"max_tokens\": 500", &r);
    CHECK_INT(r.status, 200);
    int64_t used = jint(&r, "usage.total_tokens");
    CHECK(used > 0 && used < 30);
    CHECK_INT(header_int(&r, "x-ratelimit-limit-tokens"), 1000);
    /* corrected by usage (not 1000 - prompt - 500); a few ms of refill may add a token */
    int64_t rem = header_int(&r, "x-ratelimit-remaining-tokens");
    CHECKF(rem >= 1000 - used && rem <= 1000 - used + 1, "remaining %lld after %lld tokens", (long long)rem,
           (long long)used);
    int64_t reset = header_ms(&r, "x-ratelimit-reset-tokens");
    CHECKF(reset > (used - 1) * 60 && reset <= used * 60, "reset-tokens %lld ms after %lld tokens", (long long)reset,
           (long long)used);
    CHECK_INT(limit_headers(&r, 0, 3), 0); /* no rpm: no request headers */
    resp_free(&r);

    /* a second one: remaining goes down by its usage */
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", "\"max_tokens\": 500", &r);
    CHECK_INT(r.status, 200);
    int64_t rem2 = header_int(&r, "x-ratelimit-remaining-tokens");
    CHECKF(rem2 >= rem - used && rem2 <= rem - used + 1, "remaining %lld then %lld", (long long)rem, (long long)rem2);
    resp_free(&r);

    /* more than the bucket holds now, less than the limit: 429 tokens, try again when it refilled */
    int64_t prompt = toks("What is the capital of France?") + 4;
    int64_t max = 990 - prompt;
    char extra[64];
    snprintf(extra, sizeof extra, "\"max_tokens\": %lld", (long long)max);
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", extra, &r);
    CHECK_INT(r.status, 429);
    CHECK_STR(jstr(&r, "error.type"), "tokens");
    CHECK_STR(jstr(&r, "error.code"), "rate_limit_exceeded");
    char want[160];
    snprintf(want, sizeof want, " on tokens per min (TPM): Limit 1000, Used %lld, Requested 990. Please try again in ",
             (long long)(1000 - rem2));
    const char *msg = jstr(&r, "error.message");
    CHECKF(msg && strstr(msg, want), "message %s lacks \"%s\"", msg ? msg : "(none)", want);
    int64_t wait = header_int(&r, "retry-after-ms");
    int64_t need = (990 - rem2) * 60; /* 1000 tokens a minute: 60 ms a token */
    CHECKF(wait > need - 60 && wait <= need, "retry-after-ms %lld for %lld tokens short", (long long)wait,
           (long long)(990 - rem2));
    CHECK_INT(header_int(&r, "retry-after"), (wait + 999) / 1000);
    CHECK_INT(limit_headers(&r, 3, 3), 3);
    resp_free(&r);

    /* larger than the limit itself: never admitted, nothing to wait for */
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", "\"max_tokens\": 2000", &r);
    CHECK_INT(r.status, 429);
    CHECK_STR(jstr(&r, "error.type"), "tokens");
    msg = jstr(&r, "error.message");
    snprintf(want, sizeof want, "Request too large for tk in organization ");
    CHECKF(msg && strncmp(msg, want, strlen(want)) == 0 && strstr(msg, "Limit 1000, Requested ") &&
               strstr(msg, "must be reduced"),
           "message %s", msg ? msg : "(none)");
    CHECK_INT(header_int(&r, "retry-after"), -1);
    CHECK_INT(header_int(&r, "retry-after-ms"), -1);
    resp_free(&r);

    /* n choices count n times max_tokens at admission */
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", "\"max_tokens\": 400, \"n\": 3", &r);
    CHECK_INT(r.status, 429);
    resp_free(&r);
    /* without max_tokens only the prompt is counted at admission, the usage after */
    chat_to(&t, NULL, "tk", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
    CHECK_INT(stat_of(&t, "tk", "rate_limited"), 3);
    CHECK_INT(stop_sim(&t), 0);
}

/* rpm and tpm change at runtime through /sim/models/<name>, checked like the file. */
static void test_rate_limit_runtime(void)
{
    Sim t = {0};
    if (start_limits(&t, NULL)) {
        CHECK(!"simulator started");
        return;
    }
    Resp r;
    CHECK_INT(tune_status(&t, "free", "{\"rpm\": 2, \"tpm\": 100000}"), 200);
    CHECK(setting(&t, "free", "rpm") == 2);
    CHECK(setting(&t, "free", "tpm") == 100000);
    int st[3];
    for (int i = 0; i < 3; i++) {
        chat_to(&t, NULL, "free", NULL, "What is the capital of France?", NULL, &r);
        st[i] = (int)r.status;
        if (i == 0)
            CHECK_INT(limit_headers(&r, 0, 6), 6);
        if (i == 2) {
            int64_t wait = header_int(&r, "retry-after-ms");
            CHECKF(wait > 29000 && wait <= 30000, "retry-after-ms %lld at 2 rpm", (long long)wait);
            CHECK_INT(header_int(&r, "retry-after"), 30);
        }
        resp_free(&r);
    }
    CHECK(st[0] == 200 && st[1] == 200 && st[2] == 429);
    /* a new limit starts full */
    CHECK_INT(tune_status(&t, "free", "{\"rpm\": 3}"), 200);
    chat_to(&t, NULL, "free", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_INT(header_int(&r, "x-ratelimit-remaining-requests"), 2);
    resp_free(&r);
    /* null: unlimited again, no headers */
    CHECK_INT(tune_status(&t, "free", "{\"rpm\": null, \"tpm\": null}"), 200);
    http_to(&t, "GET", "/sim/models/free", NULL, NULL, &r);
    CHECK(json_is_null(&r.doc, jpath(&r, "rpm")) && json_is_null(&r.doc, jpath(&r, "tpm")));
    resp_free(&r);
    for (int i = 0; i < 5; i++) {
        chat_to(&t, NULL, "free", NULL, "What is the capital of France?", NULL, &r);
        CHECK_INT(r.status, 200);
        CHECK_INT(limit_headers(&r, 0, 6), 0);
        resp_free(&r);
    }
    tune(&t, "free", "{\"rpm\": 0}", &r);
    CHECK_INT(r.status, 400);
    CHECKF(r.body.data && strstr(r.body.data, "rpm must be null or a whole number"), "body %s", r.body.data);
    resp_free(&r);
    CHECK_INT(tune_status(&t, "free", "{\"tpm\": -5}"), 400);
    CHECK_INT(tune_status(&t, "free", "{\"rpm\": 10, \"tpmm\": 5}"), 400);
    CHECK(isnan(setting(&t, "free", "rpm"))); /* all or nothing: still null */
    CHECK_INT(stop_sim(&t), 0);
}

/* Uptime of s in ms by its own clock (the one --outage windows count on). */
static int64_t uptime_of(const Sim *s)
{
    Resp r;
    http_to(s, "GET", "/sim/stats", NULL, NULL, &r);
    int64_t v = jint(&r, "uptime_ms");
    resp_free(&r);
    return v;
}

static void wait_uptime(const Sim *s, int64_t ms)
{
    for (int64_t up = uptime_of(s); up >= 0 && up < ms; up = uptime_of(s))
        usleep((useconds_t)(ms - up) * 1000);
}

/* One request on a new connection: its HTTP status, or -1 when the connection closed unanswered. */
static long status_fresh(const Sim *s, const char *model)
{
    Resp r;
    g_fresh = true;
    chat_to(s, NULL, model, NULL, "What is the capital of France?", NULL, &r);
    g_fresh = false;
    long st = r.cc == CURLE_GOT_NOTHING ? -1 : r.cc == CURLE_OK ? r.status : -2;
    resp_free(&r);
    return st;
}

/* --outage: 503 (or a drop) only during the window and only for the model (or provider) named. */
static void test_outage_window(void)
{
    Sim t = {0};
    const char *extra[] = {"--outage", "free:2:1.5", "--outage", "provider:pz:2:1.5:drop", NULL};
    if (start_limits(&t, extra)) {
        CHECK(!"simulator started");
        return;
    }
    int64_t up = uptime_of(&t);
    if (up < 1800) { /* before the window (a slow start would leave no time to look) */
        CHECK_INT(status_fresh(&t, "free"), 200);
        CHECK_INT(status_fresh(&t, "pz1"), 200);
    } else {
        printf("# the simulator took %lld ms to answer: the before-window checks are skipped\n", (long long)up);
    }
    wait_uptime(&t, 2100);
    Resp r;
    chat_to(&t, NULL, "free", NULL, "What is the capital of France?", NULL, &r);
    CHECK_INT(r.status, 503);
    CHECK_STR(jstr(&r, "error.type"), "server_error");
    CHECK_STR(jstr(&r, "error.code"), "service_unavailable");
    CHECK(jstr(&r, "error.message") != NULL);
    resp_free(&r);
    CHECK_INT(status_fresh(&t, "pz1"), -1);
    CHECK_INT(status_fresh(&t, "pz2"), -1);
    CHECK_INT(status_fresh(&t, "rl"), 200); /* another model, another provider: up */
    CHECK_INT(status_fresh(&t, "tk"), 200);
    up = uptime_of(&t);
    CHECKF(up < 3500, "the in-window checks ended at %lld ms", (long long)up);
    wait_uptime(&t, 3600);
    CHECK_INT(status_fresh(&t, "free"), 200);
    CHECK_INT(status_fresh(&t, "pz1"), 200);
    CHECK_INT(stat_of(&t, "free", "outage"), 1);
    CHECK_INT(stat_of(&t, "pz2", "outage"), 1);
    CHECK_INT(stat_of(&t, "rl", "outage"), 0);
    CHECK_INT(stop_sim(&t), 0);

    /* a spec that names nothing, or a bad window, is refused at start */
    const char *bad[][3] = {{"--outage", "nosuch:1:1", NULL},     {"--outage", "provider:nope:1:1", NULL},
                            {"--outage", "free:1:0", NULL},       {"--outage", "free:x:1", NULL},
                            {"--outage", "free:1:1:maybe", NULL}, {"--outage", "free:1", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char msg[1024];
        int code = sim_exit(LIMITS_JSON, bad[i], msg, sizeof msg);
        CHECKF(code > 0 && strstr(msg, "--outage number 1: expected MODEL:START_S:DURATION_S"),
               "%s: status %d, message %s", bad[i][1], code, msg);
    }
    /* a model name with ':' in it is taken whole */
    char msg[1024];
    const char *colon[] = {"--outage", "m:8b:1:2:drop", NULL};
    CHECK_INT(sim_exit("{\"models\": {\"m:8b\": {\"skill\": 1}}}", colon, msg, sizeof msg), -1);
}

/* The string at path in the settings of model on s; NULL if absent. */
static const char *jstr_setting(const Sim *s, const char *model, const char *path)
{
    char url[256];
    snprintf(url, sizeof url, "/sim/models/%s", model);
    Resp r;
    http_to(s, "GET", url, NULL, NULL, &r);
    const char *v = r.status == 200 ? jstr(&r, path) : NULL; /* jstr's copy outlives r */
    resp_free(&r);
    return v;
}

/* "down" switches a model off and on at runtime, without timing. */
static void test_outage_runtime_switch(void)
{
    Sim t = {0};
    if (start_limits(&t, NULL)) {
        CHECK(!"simulator started");
        return;
    }
    CHECK_INT(tune_status(&t, "rl", "{\"down\": true}"), 200);
    CHECK_STR(jstr_setting(&t, "rl", "down"), "503");
    CHECK_INT(status_fresh(&t, "rl"), 503);
    CHECK_INT(status_fresh(&t, "tk"), 200);
    CHECK_INT(tune_status(&t, "rl", "{\"down\": \"drop\"}"), 200);
    CHECK_INT(status_fresh(&t, "rl"), -1);
    CHECK_INT(tune_status(&t, "rl", "{\"down\": false}"), 200);
    CHECK_INT(status_fresh(&t, "rl"), 200);
    CHECK_INT(tune_status(&t, "rl", "{\"down\": \"sometimes\"}"), 400);
    CHECK_INT(status_fresh(&t, "rl"), 200);
    /* a down model costs no rate limit: the requests refused while down were not counted */
    Resp r;
    chat_to(&t, NULL, "rl", NULL, "What is the capital of France?", NULL, &r);
    int64_t rem = header_int(&r, "x-ratelimit-remaining-requests"); /* 60 - the 3 answered (+1 a second) */
    CHECKF(rem == 57 || rem == 58, "remaining-requests %lld", (long long)rem);
    resp_free(&r);
    CHECK_INT(stat_of(&t, "rl", "outage"), 2);
    CHECK_INT(stop_sim(&t), 0);
}

/* ---- compression requests and questions about a document (a key with a context column) ---- */

#define QA_DOCS 40
#define QA_LINES 120
#define QA_FACTS 5
static const int QA_FACT_LINE[QA_FACTS] = {10, 35, 60, 85, 110};
#define COMPRESS_SYSTEM_FMT                                                                                  \
    "You shorten documents for another model that must answer from them. Keep every fact a question "        \
    "could need, in at most %d tokens."

static Sim g_qasim; /* started with qa_models.json and qa.tsv (4 columns) */

static void qa_fact(int d, int k, char *out, size_t cap) { snprintf(out, cap, "val_%02d_%d_end", d, k); }
static void qa_question(int d, int k, char *out, size_t cap)
{
    snprintf(out, cap, "In document %d, what is value %d?", d, k);
}

/* Document d: QA_LINES lines of filler, fact k on line QA_FACT_LINE[k]. */
static char *qa_doc(int d)
{
    Buf b;
    buf_init(&b, 0);
    for (int i = 0, k = 0; i < QA_LINES; i++) {
        if (k < QA_FACTS && i == QA_FACT_LINE[k]) {
            char f[32];
            qa_fact(d, k++, f, sizeof f);
            buf_printf(&b, "Item %d of document %d: the value is %s here.\n", i, d, f);
        } else {
            buf_printf(&b, "Line %d of document %d says nothing that any question asks.\n", i, d);
        }
    }
    return buf_take(&b);
}

static int write_qa_files(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/qa_models.json", g_dir);
    if (write_file(path, "{\"models\": {\n"
                         " \"oracle\": {\"skill\": 1.0, \"latency_ms\": 0},\n"
                         " \"mid\": {\"skill\": 0.55, \"latency_ms\": 0},\n"
                         " \"high\": {\"skill\": 0.88, \"latency_ms\": 0},\n"
                         " \"cutter\": {\"skill\": 0.88, \"latency_ms\": 0, \"compress\": {\"mode\": \"truncate\"}}\n"
                         "}}\n"))
        return -1;
    snprintf(path, sizeof path, "%s/qa.tsv", g_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("kind\tprompt\tcontext\texpected\n", f);
    for (int d = 0; d < QA_DOCS; d++) {
        char *doc = qa_doc(d);
        Buf esc;
        buf_init(&esc, 0);
        for (const char *p = doc; *p; p++) /* COPY text escaping of the newlines */
            *p == '\n' ? buf_puts(&esc, "\\n") : buf_putc(&esc, *p);
        for (int k = 0; k < QA_FACTS; k++) {
            char q[96], e[32];
            qa_question(d, k, q, sizeof q);
            qa_fact(d, k, e, sizeof e);
            fprintf(f, "qa\t%s\t%s\t%s\n", q, esc.data, e);
        }
        buf_free(&esc);
        free(doc);
    }
    return fclose(f);
}

static int start_qasim(void)
{
    char models[128], answers[128];
    snprintf(models, sizeof models, "%s/qa_models.json", g_dir);
    snprintf(answers, sizeof answers, "%s/qa.tsv", g_dir);
    const char *extra[] = {"--answers", answers, "--latency-ms", "0", NULL}; /* the last --answers wins */
    return write_qa_files() || start_sim_models(&g_qasim, g_bin, models, extra);
}

/* Compress document d to target tokens (question: fact k of d is asked, -1: plain); the content in
 * out (caller frees), usage in *completion. Returns the HTTP status. */
static long compress_on(const char *model, int d, int target, int k, char **out, int64_t *completion)
{
    char sys[256], q[96];
    snprintf(sys, sizeof sys, COMPRESS_SYSTEM_FMT, target);
    char *doc = qa_doc(d);
    Buf user;
    buf_init(&user, 0);
    if (k >= 0) {
        qa_question(d, k, q, sizeof q);
        buf_printf(&user, "Question the document must still answer: %s\n\nDocument:\n", q);
    } else {
        buf_puts(&user, "Document:\n");
    }
    buf_puts(&user, doc);
    Resp r;
    chat_to(&g_qasim, NULL, model, sys, user.data, NULL, &r);
    const char *c = jstr(&r, "choices.0.message.content");
    *out = strdup(c ? c : "");
    if (completion)
        *completion = jint(&r, "usage.completion_tokens");
    long st = r.status;
    resp_free(&r);
    buf_free(&user);
    free(doc);
    return st;
}

static int doc_tokens(int d)
{
    char *doc = qa_doc(d);
    int t = (int)toks(doc);
    free(doc);
    return t;
}

/* Facts kept over all documents at ratio (document tokens / target); asked: question-aware,
 * counting only the asked fact. */
static int facts_kept(const char *model, double ratio, bool asked)
{
    int kept = 0;
    for (int d = 0; d < QA_DOCS; d++) {
        int target = (int)(doc_tokens(d) / ratio);
        for (int k = 0; k < (asked ? QA_FACTS : 1); k++) {
            char *c;
            if (compress_on(model, d, target, asked ? k : -1, &c, NULL) != 200) {
                free(c);
                return -1;
            }
            for (int j = 0; j < QA_FACTS; j++) {
                char f[32];
                qa_fact(d, j, f, sizeof f);
                if ((!asked || j == k) && strstr(c, f))
                    kept++;
            }
            free(c);
        }
    }
    return kept;
}

static void test_compress_length_and_usage(void)
{
    int t = doc_tokens(3), target = t / 5;
    char *c, *again;
    int64_t ctoks;
    CHECK_INT(compress_on("mid", 3, target, -1, &c, &ctoks), 200);
    int64_t got = toks(c);
    printf("# document %d tokens, target %d: %lld tokens out\n", t, target, (long long)got);
    CHECKF(got <= target + 1 && got >= target * 85 / 100, "output %lld tokens for a target of %d", (long long)got,
           target);
    CHECK_INT(ctoks, got + 1);
    /* whole lines of the document, in its order */
    char *doc = qa_doc(3);
    const char *at = doc;
    for (char *line = strtok(c, "\n"); line; line = strtok(NULL, "\n")) {
        const char *f = strstr(at, line);
        CHECKF(f && (f == doc || f[-1] == '\n'), "line not in order: %s", line);
        if (f)
            at = f + strlen(line);
    }
    free(c);
    /* deterministic; a target at or above the document's size returns it whole */
    CHECK_INT(compress_on("mid", 3, target, -1, &c, NULL), 200);
    CHECK_INT(compress_on("mid", 3, target, -1, &again, NULL), 200);
    CHECK_STR(c, again);
    free(c);
    free(again);
    CHECK_INT(compress_on("mid", 3, t + 10, -1, &c, NULL), 200);
    CHECK_STR(c, doc);
    free(c);
    free(doc);
}

static void test_compress_keeps_fewer_facts_at_higher_ratio(void)
{
    int k2 = facts_kept("mid", 2, false), k5 = facts_kept("mid", 5, false), k20 = facts_kept("mid", 20, false);
    printf("# mid (0.55), %d facts: kept %d at ratio 2, %d at 5, %d at 20\n", QA_DOCS * QA_FACTS, k2, k5, k20);
    CHECKF(k2 > k20 + 40 && k2 >= k5 && k5 > k20, "kept %d at ratio 2, %d at 5, %d at 20", k2, k5, k20);
    CHECKF(k20 > QA_DOCS * QA_FACTS * 40 / 100 && k20 < QA_DOCS * QA_FACTS * 70 / 100, "kept %d at ratio 20", k20);
}

static void test_compress_higher_skill_keeps_more(void)
{
    int mid = facts_kept("mid", 10, false), high = facts_kept("high", 10, false);
    printf("# ratio 10: mid (0.55) kept %d, high (0.88) %d of %d facts\n", mid, high, QA_DOCS * QA_FACTS);
    CHECKF(high > mid + 20, "high kept %d, mid %d", high, mid);
}

static void test_compress_question_aware_keeps_the_asked_fact(void)
{
    int plain = facts_kept("mid", 20, false), asked = facts_kept("mid", 20, true);
    printf("# ratio 20, mid: %d of %d facts kept plain, the asked fact %d times of %d\n", plain,
           QA_DOCS * QA_FACTS, asked, QA_DOCS * QA_FACTS);
    CHECKF(asked > plain + 30, "asked %d, plain %d", asked, plain);
}

static void test_compress_truncate_loses_later_facts(void)
{
    int early = 0, late = 0;
    for (int d = 0; d < QA_DOCS; d++) {
        int target = doc_tokens(d) / 5; /* the first fifth: line 10 of 120 is in, lines 35.. are out */
        char *c;
        CHECK_INT(compress_on("cutter", d, target, 4, &c, NULL), 200);
        CHECK(strlen(c) <= (size_t)target * 4 && strlen(c) + 4 > (size_t)target * 4);
        for (int k = 0; k < QA_FACTS; k++) {
            char f[32];
            qa_fact(d, k, f, sizeof f);
            if (strstr(c, f))
                k == 0 ? early++ : late++;
        }
        free(c);
    }
    CHECK_INT(early, QA_DOCS);
    CHECK_INT(late, 0); /* even the asked fact (4): truncation reads no question */
    /* the same model in extract mode keeps some of them */
    Resp r;
    tune(&g_qasim, "cutter", "{\"compress\": {\"mode\": \"extract\"}}", &r);
    CHECK_INT(r.status, 200);
    resp_free(&r);
    int kept = facts_kept("cutter", 5, false);
    CHECKF(kept > QA_DOCS * 3, "extract kept %d", kept);
    tune(&g_qasim, "cutter", "{\"compress\": {\"mode\": \"truncate\"}}", &r);
    resp_free(&r);
}

static void test_compress_stats(void)
{
    Resp r;
    http_to(&g_qasim, "POST", "/sim/reset", "", NULL, &r);
    resp_free(&r);
    int kept = facts_kept("high", 20, false);
    http_to(&g_qasim, "GET", "/sim/stats", NULL, NULL, &r);
    CHECK_INT(jint(&r, "models.high.compress_requests"), QA_DOCS);
    CHECK_INT(jint(&r, "models.high.compress_facts"), QA_DOCS * QA_FACTS);
    CHECK_INT(jint(&r, "models.high.compress_facts_kept"), kept);
    CHECK_INT(jint(&r, "models.high.correct") + jint(&r, "models.high.wrong") + jint(&r, "models.high.unkeyed"), 0);
    resp_free(&r);
}

/* A question of a context row, asked with doc (the document, or NULL) in a first user message. */
static int qa_answer(const char *model, int d, int k, bool strip_fact, char *out, size_t cap)
{
    char q[96], f[32];
    qa_question(d, k, q, sizeof q);
    qa_fact(d, k, f, sizeof f);
    char *doc = qa_doc(d);
    if (strip_fact) {
        char *at = strstr(doc, f);
        memcpy(at, "val_XX", 6);
    }
    Buf body;
    buf_init(&body, 0);
    buf_printf(&body, "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"Answer from the document.\"},"
                      "{\"role\":\"user\",\"content\":", model);
    json_put_cstr(&body, doc);
    buf_puts(&body, "},{\"role\":\"user\",\"content\":");
    json_put_cstr(&body, q);
    buf_puts(&body, "}]}");
    Resp r;
    http_to(&g_qasim, "POST", "/v1/chat/completions", body.data, NULL, &r);
    const char *c = jstr(&r, "choices.0.message.content");
    snprintf(out, cap, "%s", c ? c : "");
    int right = c && strcmp(c, f) == 0;
    resp_free(&r);
    buf_free(&body);
    free(doc);
    return right;
}

static void test_qa_answer_needs_its_fact(void)
{
    int with = 0, without = 0, oracle_with = 0, oracle_without = 0, n = QA_DOCS * QA_FACTS;
    char c[256];
    for (int d = 0; d < QA_DOCS; d++) {
        for (int k = 0; k < QA_FACTS; k++) {
            with += qa_answer("mid", d, k, false, c, sizeof c);
            without += qa_answer("mid", d, k, true, c, sizeof c);
            oracle_with += qa_answer("oracle", d, k, false, c, sizeof c);
            oracle_without += qa_answer("oracle", d, k, true, c, sizeof c);
            if (d == 0 && k == 0)
                CHECK_STR(c, "The document does not state this.");
        }
    }
    printf("# qa, mid (0.55): %d of %d right with the document, %d without the fact; oracle %d / %d\n", with, n,
           without, oracle_with, oracle_without);
    CHECKF(with > n * 50 / 100 && with < n * 78 / 100, "mid right %d of %d with its fact", with, n);
    CHECK_INT(without, 0);
    CHECK_INT(oracle_with, n);
    CHECK_INT(oracle_without, 0);
    /* the question below the document in one message is found too */
    char q[96], f[32];
    qa_question(7, 2, q, sizeof q);
    qa_fact(7, 2, f, sizeof f);
    char *doc = qa_doc(7);
    Buf user;
    buf_init(&user, 0);
    buf_printf(&user, "%s\n\n%s", doc, q);
    Resp r;
    chat_to(&g_qasim, NULL, "oracle", NULL, user.data, NULL, &r);
    const char *got = jstr(&r, "choices.0.message.content");
    CHECK_STR(got ? got : "(none)", f);
    resp_free(&r);
    buf_free(&user);
    free(doc);
}

/* The 3-column key behaves as always: other messages change nothing, a compression request is
 * answered (no facts to keep), and the empty / echo_long faults work on any request. */
static void test_three_column_key_and_compress_faults(void)
{
    Resp r;
    const char *body = "{\"model\":\"oracle\",\"messages\":[{\"role\":\"user\",\"content\":\"Paris is not here.\"},"
                       "{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}";
    http("POST", "/v1/chat/completions", body, &r);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "Paris");
    resp_free(&r);
    chat("dunce", NULL, "What is the capital of France?", NULL, &r);
    const char *c = jstr(&r, "choices.0.message.content");
    CHECK(c && strcmp(c, "Paris") != 0 && strcmp(c, "The document does not state this.") != 0);
    resp_free(&r);

    char *doc = qa_doc(1), sys[256];
    snprintf(sys, sizeof sys, COMPRESS_SYSTEM_FMT, 100);
    Buf user;
    buf_init(&user, 0);
    buf_printf(&user, "Document:\n%s", doc);
    chat("mid", sys, user.data, NULL, &r);
    c = jstr(&r, "choices.0.message.content");
    char *first = c ? strdup(c) : NULL;
    CHECK(c && toks(c) <= 101 && toks(c) > 80 && strstr(doc, strtok(first, "\n")));
    free(first);
    resp_free(&r);
    buf_reset(&user);
    buf_printf(&user, "Document:\n%s[[sim:empty]]", doc);
    chat("mid", sys, user.data, NULL, &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(jstr(&r, "choices.0.message.content"), "");
    resp_free(&r);
    buf_reset(&user);
    buf_printf(&user, "Document:\n%s[[sim:echo_long]]", doc);
    chat("mid", sys, user.data, NULL, &r);
    c = jstr(&r, "choices.0.message.content");
    CHECK(c && strlen(c) > strlen(doc) && strncmp(c, doc, strlen(doc)) == 0);
    CHECK(jint(&r, "usage.completion_tokens") > toks(doc));
    resp_free(&r);
    buf_free(&user);
    free(doc);
}

static void test_catalog_compress_settings(void)
{
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"compress\": {\"mdoe\": \"extract\"}}}}",
                  "model m: unknown key \"compress.mdoe\" (known there: mode, skill, reference_ratio, shape, "
                  "question_boost)");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"compress\": {\"mode\": \"zip\"}}}}",
                  "model m: compress.mode must be extract or truncate");
    check_refused("{\"models\": {\"m\": {\"skill\": 0.5, \"compress\": {\"reference_ratio\": 1}}}}",
                  "model m: compress.reference_ratio must be a number in [1.01, 1000], got 1");
    Resp r;
    http_to(&g_qasim, "GET", "/sim/models/mid", NULL, NULL, &r);
    CHECK_STR(jstr(&r, "compress.mode"), "extract");
    CHECK(jpath(&r, "compress.skill") >= 0 && json_is_null(&r.doc, jpath(&r, "compress.skill")));
    CHECK(setting(&g_qasim, "mid", "compress.reference_ratio") == 20);
    CHECK(setting(&g_qasim, "mid", "compress.shape") == 2);
    CHECK(setting(&g_qasim, "mid", "compress.question_boost") == 0.6);
    resp_free(&r);
    http_to(&g_qasim, "GET", "/sim/models/cutter", NULL, NULL, &r);
    CHECK_STR(jstr(&r, "compress.mode"), "truncate");
    resp_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_curl = curl_easy_init();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *url = getenv("TIERQ_SIM_URL");
    const char *bin = getenv("TIERQ_SIM_BIN");
    if (!bin || !*bin)
        bin = "build/tierq-sim";
    g_bin = bin;
    snprintf(g_dir, sizeof g_dir, "/tmp/tierq-test-sim.XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("not ok - setup: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/models.json", g_dir);
    int setup = write_file(path, MODELS_JSON);
    snprintf(path, sizeof path, "%s/answers.tsv", g_dir);
    setup = setup || write_answers(path);

    if (url && *url) {
        /* An external simulator: strip a trailing /v1 to get the base. */
        snprintf(g_sim.base, sizeof g_sim.base, "%s", url);
        size_t bl = strlen(g_sim.base);
        if (bl >= 3 && strcmp(g_sim.base + bl - 3, "/v1") == 0)
            g_sim.base[bl - 3] = '\0';
        M_ANY = "gpt-4o";
    } else {
        g_self = true;
        if (setup || start_sim(&g_sim, bin, NULL)) {
            printf("not ok - setup: cannot start %s (set TIERQ_SIM_BIN)\n", bin);
            return 1;
        }
    }
    if (g_self) {
        const char *extra[] = {"--require-key", TEST_KEY,     "--fault-rate", "500=0.25", "--fault-rate",
                               "batch_garble=0.5", "--latency-ms", "0",          NULL};
        if (start_sim(&g_authsim, bin, extra)) {
            printf("not ok - setup: cannot start the second simulator\n");
            stop_sim(&g_sim);
            return 1;
        }
    }

    RUN(test_models_endpoint);
    RUN(test_prefix_cache);
    RUN(test_error_faults);
    RUN(test_marker_order_model_filter_and_always);
    RUN(test_transport_faults);
    RUN(test_unknown_model_and_bad_requests);
    RUN(test_request_too_large);
    RUN(test_stats_counts);
    RUN(test_keep_alive);
    RUN(test_judge_stats);
    if (g_self) {
        RUN(test_correct_answer_is_deterministic);
        RUN(test_usage_openai);
        RUN(test_slow_does_not_block_others);
        RUN(test_wrong_answers_are_plausible);
        RUN(test_usage_deepseek_and_none);
        RUN(test_max_tokens_truncates);
        RUN(test_logprobs_shape);
        RUN(test_accuracy_and_confidence_follow_skill);
        RUN(test_choices_and_temperature);
        RUN(test_json_mode);
        RUN(test_judge_tracks_truth_by_skill);
        RUN(test_judge_free_text_and_normalisation);
        RUN(test_judge_unknown_question_is_uncertain);
        RUN(test_judge_is_deterministic);
        RUN(test_judge_reply_shape);
        RUN(test_batch_answers_like_single_requests);
        RUN(test_batch_faults);
        RUN(test_batch_prefix_cache_and_usage);
        RUN(test_batch_logprobs);
        RUN(test_batch_stats);
        RUN(test_concurrency_and_in_flight);
        RUN(test_require_key);
        RUN(test_global_fault_rate);
        RUN(test_batch_garble_rate);
        RUN(test_catalog_refuses_unknown_keys);
        RUN(test_catalog_refuses_values_out_of_range);
        RUN(test_harsher_catalogs);
        RUN(test_runtime_switch);
        RUN(test_rate_limit_requests);
        RUN(test_rate_limit_tokens);
        RUN(test_rate_limit_runtime);
        RUN(test_outage_window);
        RUN(test_outage_runtime_switch);
        if (start_qasim()) {
            printf("not ok - setup: cannot start the simulator with a context column\n");
        } else {
            RUN(test_compress_length_and_usage);
            RUN(test_compress_keeps_fewer_facts_at_higher_ratio);
            RUN(test_compress_higher_skill_keeps_more);
            RUN(test_compress_question_aware_keeps_the_asked_fact);
            RUN(test_compress_truncate_loses_later_facts);
            RUN(test_compress_stats);
            RUN(test_qa_answer_needs_its_fact);
            RUN(test_three_column_key_and_compress_faults);
            RUN(test_catalog_compress_settings);
            if (stop_sim(&g_qasim) != 0)
                printf("# the context-column simulator did not exit cleanly\n");
        }
        RUN(test_sigterm_exits_cleanly);
        if (stop_sim(&g_sim) != 0)
            printf("# the main simulator did not exit cleanly\n");
    } else {
        printf("# external simulator at %s: tests that need our catalog and answer key skipped\n", g_sim.base);
    }

    curl_easy_cleanup(g_curl);
    curl_global_cleanup();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_dir);
    return check_done();
}
