/* main.c — tierq-sim: command line, startup and shutdown of the simulated provider. */
#include "log.h"
#include "server.h"
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fputs("usage: tierq-sim [options]\n"
          "  --port N               listen on 127.0.0.1:N (0 = any free port; default 0)\n"
          "  --port-file F          also write the port number to F\n"
          "  --models F             model catalog (default tests/sim/models.json)\n"
          "  --answers F            answer key TSV: kind<TAB>prompt<TAB>expected (optional context column), COPY text escaping\n"
          "  --seed N               seed of every deterministic draw (default 1)\n"
          "  --latency-ms N         every model answers after exactly N ms (0 = at once)\n"
          "  --slow-ms N            delay of the \"slow\" fault (default 30000)\n"
          "  --cache-min-tokens N   shortest system prompt reported as cached (default 256)\n"
          "  --fault-rate NAME=P    inject fault NAME into a fraction P of requests (repeatable);\n"
          "                         batch_garble=P: one random batch fault in a fraction P of batches\n"
          "  --require-key KEY      demand Authorization: Bearer KEY on /v1 endpoints\n"
          "  --require-key-env VAR  the same, with the key read from environment variable VAR\n"
          "  --max-body BYTES       larger request bodies get 413 (default 8388608)\n"
          "  --oversized-mb N       content size of the \"oversized\" fault (default 20)\n"
          "  --outage MODEL:START_S:DURATION_S[:503|drop]\n"
          "                         MODEL (or provider:NAME) is down during that window after the start\n"
          "                         (repeatable; default 503)\n"
          "faults: 429 429quota 500 503 400 401 slow drop truncated invalid oversized nousage intcode\n"
          "batch faults (markers only): batch_missing batch_dup batch_swap batch_unknown batch_malformed\n"
          "                             batch_merge batch_truncated batch_invalid\n",
          f);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_fault_rate(const char *arg, SimConfig *cfg)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return -1;
    char *end;
    errno = 0;
    double p = strtod(eq + 1, &end);
    if (errno || end == eq + 1 || *end || !(p >= 0 && p <= 1))
        return -1;
    static const char garble[] = "batch_garble";
    if ((size_t)(eq - arg) == sizeof garble - 1 && memcmp(arg, garble, sizeof garble - 1) == 0) {
        cfg->batch_garble = p; /* its own draw per batch request, outside the sum below */
        return 0;
    }
    Fault f = fault_from_name(arg, (size_t)(eq - arg));
    if (f == FAULT_NONE || fault_is_batch(f))
        return -1;
    cfg->fault_rate[f] = p;
    double total = 0;
    for (int i = 1; i < FAULT_COUNT; i++)
        total += cfg->fault_rate[i];
    return total <= 1.0 + 1e-9 ? 0 : -1;
}

/* Fill cfg from argv. Returns 0, 1 for --help, or -1 after printing why. */
static int parse_args(int argc, char **argv, SimConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->models_path = "tests/sim/models.json";
    cfg->seed = 1;
    cfg->latency_ms = -1;
    cfg->slow_ms = 30000;
    cfg->cache_min_tokens = 256;
    cfg->pcache_slots = (size_t)1 << 18;
    cfg->max_body = (size_t)8 << 20;
    cfg->max_head = (size_t)64 << 10;
    cfg->oversized_bytes = (size_t)20 << 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (i + 1 >= argc) {
            fprintf(stderr, "tierq-sim: %s needs a value (or is unknown)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        uint64_t u = 0;
        int bad = 0;
        if (strcmp(a, "--port") == 0)
            bad = parse_u64(v, 65535, &u), cfg->port = (int)u;
        else if (strcmp(a, "--port-file") == 0)
            cfg->port_file = v;
        else if (strcmp(a, "--models") == 0)
            cfg->models_path = v;
        else if (strcmp(a, "--answers") == 0)
            cfg->answers_path = v;
        else if (strcmp(a, "--seed") == 0)
            bad = parse_u64(v, UINT64_MAX, &cfg->seed);
        else if (strcmp(a, "--latency-ms") == 0)
            bad = parse_u64(v, 3600000, &u), cfg->latency_ms = (int)u;
        else if (strcmp(a, "--slow-ms") == 0)
            bad = parse_u64(v, 3600000, &u), cfg->slow_ms = (uint32_t)u;
        else if (strcmp(a, "--cache-min-tokens") == 0)
            bad = parse_u64(v, INT64_MAX, &u), cfg->cache_min_tokens = (int64_t)u;
        else if (strcmp(a, "--fault-rate") == 0)
            bad = parse_fault_rate(v, cfg);
        else if (strcmp(a, "--require-key") == 0)
            cfg->require_key = v;
        else if (strcmp(a, "--require-key-env") == 0) {
            cfg->require_key = getenv(v);
            if (!cfg->require_key || !cfg->require_key[0]) {
                fprintf(stderr, "tierq-sim: environment variable %s is not set\n", v);
                return -1;
            }
        } else if (strcmp(a, "--max-body") == 0)
            bad = parse_u64(v, (uint64_t)1 << 30, &u), cfg->max_body = (size_t)u;
        else if (strcmp(a, "--outage") == 0) {
            bad = cfg->noutages >= SIM_MAX_OUTAGES; /* checked against the catalog by sim_open */
            if (!bad)
                cfg->outage[cfg->noutages++] = v;
        } else if (strcmp(a, "--oversized-mb") == 0)
            bad = parse_u64(v, 512, &u) || u == 0, cfg->oversized_bytes = (size_t)u << 20;
        else {
            fprintf(stderr, "tierq-sim: unknown option %s\n", a);
            return -1;
        }
        if (bad) {
            /* The value is not echoed: it may be a key passed to the wrong flag. */
            fprintf(stderr, "tierq-sim: bad value for %s\n", a);
            return -1;
        }
    }
    return 0;
}

/* Many thousands of client connections need as many descriptors as the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            log_msg(LOG_WARN, "sim", "cannot raise the descriptor limit: %s", strerror(errno));
    }
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    log_set_level(log_level_from_env());
    SimConfig cfg;
    int a = parse_args(argc, argv, &cfg);
    if (a) {
        usage(a > 0 ? stdout : stderr);
        return a > 0 ? 0 : 2;
    }
    if (cfg.require_key)
        log_add_secret(cfg.require_key);
    raise_nofile();

    Sim sim;
    Server *srv = NULL;
    TqErr err = {0};
    int rc = sim_open(&sim, &cfg, &err);
    if (rc) {
        log_msg(LOG_ERROR, "sim", "cannot start: %s", err.msg);
        return 1;
    }
    rc = server_open(&srv, &sim, cfg.port, &err);
    if (rc) {
        log_msg(LOG_ERROR, "sim", "cannot listen: %s", err.msg);
        sim_close(&sim);
        return 1;
    }
    int port = server_port(srv);
    if (cfg.port_file && write_port_file(cfg.port_file, port)) {
        log_msg(LOG_ERROR, "sim", "cannot write port file %s: %s", cfg.port_file, strerror(errno));
        server_close(srv);
        sim_close(&sim);
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    log_msg(LOG_INFO, "sim", "started port=%d models=%zu answer_rows=%zu seed=%llu latency=%s auth=%s", port,
            sim.catalog.n, answer_key_rows(sim.answers), (unsigned long long)cfg.seed,
            cfg.latency_ms >= 0 ? "fixed" : "per-model", cfg.require_key ? "on" : "off");

    rc = server_run(srv, &err);
    if (rc)
        log_msg(LOG_ERROR, "sim", "event loop failed: %s", err.msg);
    log_msg(LOG_INFO, "sim", "stopped requests=%llu connections_peak=%lld in_flight_peak=%lld",
            (unsigned long long)sim.stats.http_requests, (long long)sim.stats.conns_peak,
            (long long)sim.stats.inflight_peak);
    server_close(srv);
    sim_close(&sim);
    return rc ? 1 : 0;
}
