/* Conformance: tierq against what real servers document, not against our simulator.
 *
 * 1. Every fixture of tests/conformance/ (hand-written from vLLM, llama.cpp, Ollama, Azure OpenAI,
 *    DeepSeek, Qwen, Groq, OpenRouter and TGI documentation) is played back by build/tierq-fixture
 *    to the real tierq binary against a real PostgreSQL; the job's final state, reason, result,
 *    error and the ledger's tokens must be what tests/conformance/cases.tsv says. One line per
 *    fixture.
 * 2. Every request body tierq builds — each shipped kind, batched, judged, sampled, the baseline
 *    map — recorded by the fixture server in front of the simulator, is checked against the OpenAI
 *    request schema subset (tests/conformance/chat_request.schema.json) by build/tierq-schema-check.
 * 3. Through a gateway: extra headers (literal and from the environment), a base URL with its own
 *    query string, extra query parameters, the User-Agent, and the translate kind's target language
 *    in the system prompt and in Qwen-MT's translation_options, read from the recorded requests. */
#include "runhelp.h"

#include <stdbool.h>
#include <sys/stat.h>

static char dir[256], jobs[300], record[300], fixtures[512];
#define out run_out

typedef struct Fixture {
    pid_t pid;
    char base_url[128];
} Fixture;

/* Start build/tierq-fixture (playing tests/conformance/, recording to `record`, proxying to
 * upstream when given). */
static int fixture_start(Fixture *f, const char *upstream)
{
    char bin[600], portfile[400];
    snprintf(bin, sizeof bin, "%s/tierq-fixture", getenv("TIERQ_BUILD_DIR") ? getenv("TIERQ_BUILD_DIR") : "build");
    snprintf(portfile, sizeof portfile, "%s/fixture.port", dir);
    unlink(portfile);
    char *argv[16];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = (char *)"--port";
    argv[argc++] = (char *)"0";
    argv[argc++] = (char *)"--port-file";
    argv[argc++] = portfile;
    argv[argc++] = (char *)"--fixtures";
    argv[argc++] = fixtures;
    argv[argc++] = (char *)"--record";
    argv[argc++] = record;
    if (upstream) {
        argv[argc++] = (char *)"--upstream";
        argv[argc++] = (char *)upstream;
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        execv(bin, argv);
        _exit(127);
    }
    f->pid = pid;
    for (int i = 0; i < 200; i++) {
        FILE *pf = fopen(portfile, "r");
        int port = 0;
        if (pf) {
            if (fscanf(pf, "%d", &port) != 1)
                port = 0;
            fclose(pf);
        }
        if (port > 0) {
            snprintf(f->base_url, sizeof f->base_url, "http://127.0.0.1:%d/v1", port);
            return 0;
        }
        usleep(25000);
    }
    printf("# the fixture server did not start (%s)\n", bin);
    return -1;
}

static void fixture_stop(Fixture *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
    }
    f->pid = 0;
}

static void setup_files(void)
{
    snprintf(dir, sizeof dir, "/tmp/tq_conf.%d", (int)getpid());
    snprintf(jobs, sizeof jobs, "%s/jobs", dir);
    snprintf(record, sizeof record, "%s/requests.jsonl", dir);
    snprintf(fixtures, sizeof fixtures, "%s/tests/conformance", getenv("TIERQ_ROOT"));
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s'/jobs/*.json '%s/'", dir, jobs, getenv("TIERQ_ROOT"),
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    /* one provider behind a gateway: headers, a query string in the base URL, extra query */
    snprintf(cmd, sizeof cmd,
             "sed -i 's|\"providers\": {|\"providers\": {\"conf\": {\"base_url\": \"https://gateway.example/openai/deployments/d1?api-version=2024-10-21\","
             " \"headers\": {\"x-portkey-provider\": \"openai\", \"x-gateway-key\": {\"env\": \"TQ_CONF_GATEWAY_KEY\"}},"
             " \"query\": {\"tag\": \"nightly run\"}},|' '%s/models.json'",
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    snprintf(cmd, sizeof cmd,
             "sed -i 's|\"models\": {|\"models\": {\"conf-model\": {\"provider\": \"conf\", \"api_model\": \"served-model\","
             " \"input_usd_per_mtok\": 1, \"cached_input_usd_per_mtok\": 0.5, \"output_usd_per_mtok\": 2},|' '%s/models.json'",
             jobs);
    if (system(cmd) != 0)
        printf("# setup failed\n");
    char p[400];
    snprintf(p, sizeof p, "%s/conf.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\", \"tiers\": [{\"model\": \"conf-model\"}], \"max_tokens\": 64}");
    snprintf(p, sizeof p, "%s/confbatch.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer each item briefly.\", \"tiers\": [{\"model\": \"conf-model\"}],"
                  " \"max_tokens\": 16, \"batch\": {\"enabled\": true, \"max_items\": 2, \"fill_ms\": 5000}}");
    /* kinds that send a judge and a second sample, for the schema check */
    snprintf(p, sizeof p, "%s/judged.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer briefly.\", \"tiers\": [{\"model\": \"qwen3-32b\", \"accept\": 0.7},"
                  " {\"model\": \"gpt-4o\"}], \"max_tokens\": 32, \"checks\": {\"min_chars\": 1, \"judge_model\": \"qwen3-8b\"}}");
    snprintf(p, sizeof p, "%s/sampled.json", jobs);
    write_file(p, "{\"system_prompt\": \"Answer with one word.\", \"tiers\": [{\"model\": \"qwen3-8b\", \"accept\": 0.5},"
                  " {\"model\": \"gpt-4o\"}], \"max_tokens\": 64, \"checks\": {\"agreement\": true}}");
    setenv("TIERQ_JOBS_DIR", jobs, 1);
    setenv("TQ_CONF_GATEWAY_KEY", "gw-secret-0c1d2e3f4a5b", 1);
}

typedef struct Case {
    char fixture[96];
    char state[16], reason[48], result[64], error_contains[160];
    long long tin, tcached, tout, treason;
} Case;

static int load_cases(Case **list)
{
    char path[600];
    snprintf(path, sizeof path, "%s/cases.tsv", fixtures);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static Case cases[256];
    int n = 0;
    char line[2048];
    bool header = true;
    while (fgets(line, sizeof line, f) && n < 256) {
        line[strcspn(line, "\r\n")] = '\0';
        if (header || !line[0]) {
            header = false;
            continue;
        }
        char *col[9] = {0};
        char *s = line;
        for (int i = 0; i < 9; i++) {
            col[i] = s;
            char *tab = s ? strchr(s, '\t') : NULL;
            if (tab)
                *tab = '\0';
            s = tab ? tab + 1 : NULL;
        }
        if (!col[8])
            continue;
        Case *c = &cases[n++];
        snprintf(c->fixture, sizeof c->fixture, "%s", col[0]);
        snprintf(c->state, sizeof c->state, "%s", col[1]);
        snprintf(c->reason, sizeof c->reason, "%s", col[2]);
        snprintf(c->result, sizeof c->result, "%s", col[3]);
        snprintf(c->error_contains, sizeof c->error_contains, "%s", col[4]);
        c->tin = atoll(col[5]);
        c->tcached = atoll(col[6]);
        c->tout = atoll(col[7]);
        c->treason = atoll(col[8]);
    }
    fclose(f);
    *list = cases;
    return n;
}

/* The fixture name without a "#1" batch suffix. */
static void base_name(const char *fixture, char *name, size_t cap)
{
    snprintf(name, cap, "%s", fixture);
    char *hash = strchr(name, '#');
    if (hash)
        *hash = '\0';
}

/* A provider out of quota or refusing the key is stopped for the rest of a run: those fixtures run
 * on their own. */
static bool is_quota_case(const Case *c)
{
    return strcmp(c->reason, "provider_quota_exhausted") == 0 || strcmp(c->reason, "provider_unauthorized") == 0;
}

static void insert_cases(PGconn *c, const Case *cases, int n, bool quota)
{
    for (int i = 0; i < n; i++) {
        if (is_quota_case(&cases[i]) != quota)
            continue;
        char name[96], sql[1024];
        base_name(cases[i].fixture, name, sizeof name);
        bool batch = strchr(cases[i].fixture, '#') != NULL;
        /* max_attempts 1: a retryable failure ends dead at once instead of waiting for backoff */
        snprintf(sql, sizeof sql,
                 "INSERT INTO tierq.jobs (kind, prompt, run_name, max_attempts) VALUES ('%s', 'case %s [[fixture:%s]]', 'conf', 1)",
                 batch ? "confbatch" : "conf", cases[i].fixture, name);
        testdb_exec(c, sql, NULL, 0);
    }
}

/* For the two jobs of a batched fixture: the one ledger row that served both carries the fixture's
 * usage, and their shares add up to it. */
static bool batch_pair_tokens_wrong(PGconn *c, const Case *k)
{
    if (!strchr(k->fixture, '#'))
        return false;
    char name[96], sql[1024];
    base_name(k->fixture, name, sizeof name);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tierq.calls k WHERE cardinality(k.job_ids) = 2 AND k.tokens_in = %lld AND k.tokens_out = %lld"
             " AND k.tokens_cached_in = %lld AND (SELECT sum(tokens_in) FROM tierq.jobs j WHERE j.id = ANY (k.job_ids)) = %lld"
             " AND EXISTS (SELECT 1 FROM tierq.jobs j WHERE j.id = ANY (k.job_ids) AND j.prompt LIKE '%%[[fixture:%s]]%%')",
             k->tin, k->tout, k->tcached, k->tin, name);
    return q(c, sql) != 1;
}

/* Compare one job with its expected outcome; explain every difference on one line. */
static void check_case(PGconn *c, const Case *k)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT state, coalesce(reason, ''), coalesce(result, ''), coalesce(error, ''), tokens_in, tokens_cached_in,"
             " tokens_out, (SELECT coalesce(sum(k.tokens_reasoning), 0) FROM tierq.calls k WHERE j.id = ANY (k.job_ids)),"
             " (SELECT count(*) FROM tierq.calls k WHERE j.id = ANY (k.job_ids))"
             " FROM tierq.jobs j WHERE prompt LIKE 'case %s [[%%'",
             k->fixture);
    PGresult *r = PQexec(c, sql);
    char why[1200] = "";
    size_t at = 0;
#define WHY(...) (at += (size_t)snprintf(why + at, at < sizeof why ? sizeof why - at : 0, __VA_ARGS__))
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        WHY("no job (%s)", PQresultErrorMessage(r));
    } else {
        const char *state = PQgetvalue(r, 0, 0), *reason = PQgetvalue(r, 0, 1), *result = PQgetvalue(r, 0, 2),
                   *error = PQgetvalue(r, 0, 3);
        /* retryable: back to the queue, and with max_attempts 1, dead; a provider out of quota keeps
         * its jobs queued for later */
        const char *want_state = strcmp(k->state, "queued") == 0 && !is_quota_case(k) ? "dead" : k->state;
        if (strcmp(state, want_state) != 0)
            WHY(" state %s, want %s;", state, want_state);
        if (strcmp(reason, k->reason) != 0)
            WHY(" reason %s, want %s;", reason, k->reason);
        if (strcmp(result, k->result) != 0)
            WHY(" result \"%s\", want \"%s\";", result, k->result);
        if (k->error_contains[0] && !strstr(error, k->error_contains))
            WHY(" error \"%.200s\" lacks \"%s\";", error, k->error_contains);
        if (strcmp(k->state, "done") != 0 && !error[0])
            WHY(" no error message;");
        long long calls = atoll(PQgetvalue(r, 0, 8));
        bool batch = strchr(k->fixture, '#') != NULL;
        if (!batch && calls > 0) {
            /* every call this job made was the same fixture: its tokens, once per call */
            long long tin = atoll(PQgetvalue(r, 0, 4)), tc = atoll(PQgetvalue(r, 0, 5)), tout = atoll(PQgetvalue(r, 0, 6)),
                      tr = atoll(PQgetvalue(r, 0, 7));
            if (tin != k->tin * calls || tc != k->tcached * calls || tout != k->tout * calls || tr != k->treason * calls)
                WHY(" tokens %lld/%lld/%lld/%lld over %lld calls, want %lld/%lld/%lld/%lld each;", tin, tc, tout, tr, calls,
                    k->tin, k->tcached, k->tout, k->treason);
        }
    }
    PQclear(r);
    if (batch_pair_tokens_wrong(c, k))
        WHY(" the batch's ledger row does not carry the fixture's usage;");
    if (why[0])
        printf("not ok - conformance %s:%s\n", k->fixture, why);
    else
        printf("ok - conformance %s\n", k->fixture);
    if (why[0])
        check_failed_total++;
    else
        check_passed_total++;
#undef WHY
}

static int run_cases(const Fixture *f, const char *args)
{
    SimProc as_sim = {0};
    snprintf(as_sim.base_url, sizeof as_sim.base_url, "%s", f->base_url);
    return run_drain(&as_sim, args);
}

static void test_every_fixture(void)
{
    Case *cases = NULL;
    int n = load_cases(&cases);
    CHECKF(n >= 80, "only %d cases in tests/conformance/cases.tsv", n);
    Fixture f;
    if (fixture_start(&f, NULL) != 0) {
        CHECK(0);
        return;
    }
    PGconn *c = testdb_connect();
    insert_cases(c, cases, n, false);
    int st = run_cases(&f, "--run conf --max-tries 1 --kinds conf,confbatch");
    CHECKF(st == 0, "exit %d: %s", st, out);
    testdb_exec(c, "UPDATE tierq.jobs SET run_name = 'conf-done' WHERE run_name = 'conf'", NULL, 0);
    /* a provider out of quota stops being used for the rest of the run: its cases go alone */
    for (int i = 0; i < n; i++) {
        if (!is_quota_case(&cases[i]))
            continue;
        insert_cases(c, &cases[i], 1, true);
        st = run_cases(&f, "--run conf --max-tries 1 --kinds conf,confbatch");
        CHECKF(st == 5, "quota case %s: exit %d (want 5): %s", cases[i].fixture, st, out);
        testdb_exec(c, "UPDATE tierq.jobs SET run_name = 'conf-done' WHERE run_name = 'conf'", NULL, 0);
    }
    for (int i = 0; i < n; i++)
        check_case(c, &cases[i]);
    /* every call cost exactly its tokens at the model's prices, and the jobs carry all of it */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls WHERE model = 'conf-model' AND cost_usd <>"
                   " ((tokens_in - tokens_cached_in) * 1.0 + tokens_cached_in * 0.5 + tokens_out * 2.0) / 1000000"),
              0);
    check_sums(c);
    /* the model's own name went out, not ours */
    CHECK(q(c, "SELECT count(*) FROM tierq.calls WHERE model = 'conf-model'") > 80);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    fixture_stop(&f);
}

/* The recorded requests: each line's target, one header and the body, as C strings. */
static int record_lines(char ***lines)
{
    FILE *f = fopen(record, "r");
    int n = 0, cap = 0;
    char **v = NULL;
    static char buf[1 << 20];
    while (f && fgets(buf, sizeof buf, f)) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        v[n++] = strdup(buf);
    }
    if (f)
        fclose(f);
    *lines = v;
    return n;
}

static void free_lines(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void test_requests_match_the_openai_schema_and_the_gateway(void)
{
    SimProc s;
    CHECK_INT(sim_start(&s, NULL, "--latency-ms 1"), 0);
    unlink(record);
    Fixture f;
    char upstream[160];
    snprintf(upstream, sizeof upstream, "%s", s.base_url);
    if (fixture_start(&f, upstream) != 0) {
        CHECK(0);
        sim_stop(&s);
        return;
    }
    PGconn *c = testdb_connect();
    /* every shipped kind, a few jobs each (classify batches), a kind with a judge, one with a second
     * sample, a translation with its own target language, a job with its own labels and one capped */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT k, 'schema question ' || g || ' for ' || k, 'schema'"
                   " FROM generate_series(1, 3) g,"
                   " unnest(ARRAY['chat', 'classify', 'code', 'reasoning', 'simple', 'summarize', 'translate', 'judged', 'sampled']) k;"
                   " INSERT INTO tierq.jobs (kind, prompt, params, run_name, context) VALUES"
                   " ('translate', 'Bonjour tout le monde', '{\"target_language\": \"German\"}', 'schema', NULL),"
                   " ('classify', 'a bug in the export', '{\"labels\": [\"bug\", \"other\"], \"max_tokens\": 5}', 'schema', NULL),"
                   " ('chat', 'what does it say?', '{\"temperature\": 0.3}', 'schema', 'a long context about packages')",
                NULL, 0);
    SimProc via = {0};
    snprintf(via.base_url, sizeof via.base_url, "%s", f.base_url);
    int st = run_drain(&via, "--run schema");
    CHECKF(st == 0, "exit %d: %s", st, out);
    /* ... and the baseline map */
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) SELECT k, 'baseline question ' || k, 'schema2'"
                   " FROM unnest(ARRAY['chat', 'classify', 'summarize', 'translate']) k",
                NULL, 0);
    st = run_drain(&via, "--run schema2 --model-map baseline");
    CHECKF(st == 0, "exit %d: %s", st, out);
    fixture_stop(&f);
    sim_stop(&s);

    char **lines = NULL;
    int n = record_lines(&lines);
    CHECKF(n >= 40, "only %d requests recorded", n);
    /* the schema: every body, once for each sort of request we know is in there */
    char cmd[1600], res[8192];
    snprintf(cmd, sizeof cmd, "'%s/tierq-schema-check' --schema '%s/chat_request.schema.json' --record-lines"
                              " --allow-extra translation_options --allow-extra enable_thinking '%s' 2>&1",
             getenv("TIERQ_BUILD_DIR") ? getenv("TIERQ_BUILD_DIR") : "build", fixtures, record);
    FILE *p = popen(cmd, "r");
    size_t got = p ? fread(res, 1, sizeof res - 1, p) : 0;
    res[got] = '\0';
    int sc = p ? pclose(p) : -1;
    CHECKF(sc == 0 && strncmp(res, "ok ", 3) == 0, "schema check (status %d): %s", sc, res);
    int batched = 0, judge = 0, sample = 0, mt = 0, german = 0, labels = 0, ua = 0, gw = 0, query = 0, capped = 0;
    for (int i = 0; i < n; i++) {
        const char *l = lines[i];
        batched += strstr(l, "You will receive several items as a JSON object") != NULL;
        judge += strstr(l, "You grade answers.") != NULL;
        sample += strstr(l, "\\\"seed\\\":") != NULL;
        mt += strstr(l, "translation_options") != NULL && strstr(l, "target_lang") != NULL;
        german += strstr(l, "into German") != NULL || strstr(l, "target_lang\\\":\\\"German") != NULL;
        labels += strstr(l, "one of: bug, other.") != NULL;
        ua += strstr(l, "\"user-agent\":\"tierq/") != NULL;
        gw += strstr(l, "\"x-portkey-provider\":\"openai\"") != NULL;
        query += strstr(l, "api-version=2024-10-21&tag=nightly%20run") != NULL;
        capped += strstr(l, "max_completion_tokens\\\":5") != NULL || strstr(l, "max_tokens\\\":5") != NULL;
    }
    CHECKF(batched > 0 && judge > 0 && sample > 0, "batched %d, judge %d, sample %d", batched, judge, sample);
    CHECKF(mt > 0, "no Qwen-MT request carried translation_options");
    int thinking_off = 0;
    for (int i = 0; i < n; i++)
        thinking_off += strstr(lines[i], "qwen3-8b") && strstr(lines[i], "enable_thinking\\\":false");
    CHECKF(thinking_off > 0, "no qwen3-8b request carried enable_thinking: false");
    CHECKF(german >= 1, "the target language German reached no request");
    CHECKF(labels >= 1, "the job's own labels reached no request");
    CHECKF(capped >= 1, "params.max_tokens 5 reached no request");
    CHECKF(ua == n, "%d of %d requests said User-Agent: tierq/", ua, n);
    CHECKF(gw == 0 && query == 0, "the gateway provider was not used here, yet %d/%d requests show it", gw, query);
    free_lines(lines, n);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
}

static void test_gateway_headers_and_query(void)
{
    unlink(record);
    Fixture f;
    if (fixture_start(&f, NULL) != 0) {
        CHECK(0);
        return;
    }
    PGconn *c = testdb_connect();
    testdb_exec(c, "INSERT INTO tierq.jobs (kind, prompt, run_name) VALUES ('conf', 'gateway [[fixture:vllm/ok]]', 'gw'),"
                   " ('conf', 'echo [[fixture:tierq/echo_key]]', 'gw')",
                NULL, 0);
    /* the conf provider's base_url is a gateway's, query string included; point it at the fixture
     * server the way a user would, with the query kept */
    char over[256];
    snprintf(over, sizeof over, "%s?api-version=2024-10-21", f.base_url);
    setenv("TIERQ_BASE_URL", over, 1);
    char text[4096];
    int st = testdb_run("run --drain --quiet --run gw", text, sizeof text);
    unsetenv("TIERQ_BASE_URL");
    CHECKF(st == 0, "exit %d: %s", st, text);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE run_name = 'gw' AND state = 'done' AND result = 'billing'"), 1);
    /* a provider that echoes a configured secret in its error body: stored with the secret scrubbed */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs WHERE prompt LIKE 'echo%' AND state = 'failed'"
                   " AND error LIKE '%Invalid header value [redacted] for x-gateway-key%'"),
              1);
    char **lines = NULL;
    int n = record_lines(&lines);
    CHECKF(n == 2, "%d requests recorded", n);
    const char *l = "";
    for (int i = 0; i < n; i++)
        if (strstr(lines[i], "vllm/ok"))
            l = lines[i];
    CHECKF(strstr(l, "\"target\":\"/v1/chat/completions?api-version=2024-10-21&tag=nightly%20run\"") != NULL,
           "target: %.300s", l);
    CHECKF(strstr(l, "\"x-portkey-provider\":\"openai\"") && strstr(l, "\"x-gateway-key\":\"gw-secret-0c1d2e3f4a5b\""),
           "headers: %.600s", l);
    CHECKF(strstr(l, "\"user-agent\":\"tierq/") != NULL, "user-agent: %.600s", l);
    CHECKF(strstr(l, "served-model") != NULL, "api_model not sent: %.300s", l);
    /* the gateway key is a secret: in no table, no output */
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.calls k WHERE k::text LIKE '%gw-secret%'"), 0);
    CHECK_INT(q(c, "SELECT count(*) FROM tierq.jobs j WHERE j::text LIKE '%gw-secret%'"), 0);
    CHECKF(strstr(text, "gw-secret") == NULL, "key in output: %s", text);
    free_lines(lines, n);
    /* without its variable, the run refuses to start and says which */
    unsetenv("TQ_CONF_GATEWAY_KEY");
    st = testdb_run("run --drain --quiet --run gw", text, sizeof text);
    setenv("TQ_CONF_GATEWAY_KEY", "gw-secret-0c1d2e3f4a5b", 1);
    CHECKF(st == 1 && strstr(text, "header x-gateway-key takes its value from the environment variable TQ_CONF_GATEWAY_KEY"),
           "exit %d: %s", st, text);
    testdb_exec(c, "DELETE FROM tierq.jobs; DELETE FROM tierq.calls", NULL, 0);
    PQfinish(c);
    fixture_stop(&f);
}

int main(void)
{
    setup_files();
    testdb_setup("tq_conf", 1);
    RUN(test_every_fixture);
    RUN(test_requests_match_the_openai_schema_and_the_gateway);
    RUN(test_gateway_headers_and_query);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# cleanup failed\n");
    return check_done();
}
