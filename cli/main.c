/* main.c — the tierq command line: parse the subcommand, load what it needs, map errors to exit
 * codes. Only main exits. */
#include "bakeoff.h"
#include "cacheadmin.h"
#include "schedule.h"
#include "calibrate.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "prune.h"
#include "report.h"
#include "reprocess.h"
#include "run.h"
#include "status.h"

#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUNTIME = 1, /* database unreachable, statement failed, I/O error */
    EXIT_USAGE = 2,           /* bad command line */
    EXIT_CONFIG = 3,          /* jobs/ is invalid */
};

static const char *const USAGE =
    "usage: tierq [--jobs DIR] COMMAND [OPTIONS]\n"
    "\n"
    "Runs LLM prompts queued in PostgreSQL at the lowest cost that passes a quality bar.\n"
    "\n"
    "commands (tierq COMMAND --help shows each one's options):\n"
    "  migrate          create or upgrade the tierq schema, then sync jobs/ into tierq.kinds and tierq.models\n"
    "  config check     validate jobs/ without touching the database\n"
    "  status           jobs by state and kind, oldest queued job, live tierq processes\n"
    "  run [OPTIONS]    claim queued jobs and run them (a daemon until SIGTERM, or --drain)\n"
    "  report [OPTIONS] cost per model, latency and pass rate per kind, savings against the baseline\n"
    "  cache stats|purge\n"
    "                   what the response cache holds and saved; delete entries\n"
    "  schedule add|list|show|enable|disable|remove|fire-now\n"
    "                   cron schedules that enqueue jobs from your tables, fired by the running daemons\n"
    "  prune --older-than D [OPTIONS]\n"
    "                   delete finished jobs older than D and their ledger rows (totals kept per day)\n"
    "  calibrate --run NAME [OPTIONS]\n"
    "                   choose every kind's tiers and accept bars for a target from a labelled all-tiers run\n"
    "  reprocess --from-run A --run B [OPTIONS]\n"
    "                   enqueue the jobs of run A again, into run B (a dataset pass after a change)\n"
    "  bakeoff --from-run A --kind K --models M1,M2[,...] [OPTIONS]\n"
    "                   the same jobs answered by each model alone, compared side by side\n"
    "  help [COMMAND]   this help, or one command's\n"
    "\n"
    "options:\n"
    "  --jobs DIR       configuration directory (default: $TIERQ_JOBS_DIR or ./jobs)\n"
    "  -h, --help       this help\n"
    "  --version        print the version\n"
    "\n"
    "environment:\n"
    "  TIERQ_DATABASE_URL  libpq conninfo or postgres:// URL; unset: libpq's PG* variables\n"
    "  TIERQ_BASE_URL      send every provider's requests to this base URL (e.g. the simulator)\n"
    "  TIERQ_LOG           debug | info | warn | error (default info)\n"
    "  API keys            only from the variables named by api_key_env in jobs/models.json\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  runtime error (database unreachable, statement failed, I/O)\n"
    "  2  usage error (unknown command or option)\n"
    "  3  configuration error in jobs/ (the message names the file and key)\n"
    "  4  run: the --budget-usd ceiling was reached; unclaimed jobs stay queued\n"
    "  5  run: a provider refused the account (insufficient_quota, or the API key: 401); its jobs\n"
    "     were left queued without spending an attempt\n"
    "  6  run: jobs were attempted and none succeeded (the summary names the reasons)\n"
    "  7  run --fail-on-drift: a kind's shadow agreement ended below its bar, or a tier's fell against\n"
    "     its own past\n";

static const char *const USAGE_MIGRATE =
    "usage: tierq [--jobs DIR] migrate\n"
    "\n"
    "Creates or upgrades the tierq schema (the migrations are embedded in the binary; idempotent; safe\n"
    "when several processes run it at once), then syncs jobs/ into tierq.kinds and tierq.models.\n"
    "\n"
    "options:\n"
    "  -h, --help       this help\n";

static const char *const USAGE_CONFIG =
    "usage: tierq [--jobs DIR] config check\n"
    "\n"
    "Validates jobs/ (models.json and one file per kind) without touching the database and prints\n"
    "each kind's tiers; an error names the file and the key path (exit status 3).\n"
    "\n"
    "options:\n"
    "  -h, --help       this help\n";

static const char *const USAGE_STATUS =
    "usage: tierq status\n"
    "\n"
    "Jobs by state and kind, the age of the oldest queued job, live tierq processes with their\n"
    "heartbeats and batch sizes.\n"
    "\n"
    "options:\n"
    "  -h, --help       this help\n";

static const char *const USAGE_RUN =
    "usage: tierq [--jobs DIR] run [OPTIONS]\n"
    "\n"
    "Claims queued jobs and runs them: a daemon until SIGTERM, or until nothing is left with --drain.\n"
    "\n"
    "options:\n"
    "  --drain                 exit once nothing is queued or running (what a nightly cron calls)\n"
    "  --max-in-flight N       HTTP requests in flight for this process (default 256)\n"
    "  --threads N             worker threads, each with one curl multi handle (default: one per core)\n"
    "  --run NAME              only claim jobs whose run_name is NAME\n"
    "  --kinds K1,K2           only claim these kinds\n"
    "  --lease-s N             lease length in seconds (default 60)\n"
    "  --claim-batch N         jobs per claim statement (default 500)\n"
    "  --max-held-mb N         input text (prompt, context, system prompt) held at once; claims wait\n"
    "                          below it, and a larger job runs alone (default 64)\n"
    "  --poll-ms N             claim at least this often without a NOTIFY (default 1000)\n"
    "  --poll-only             do not LISTEN (for PgBouncer in transaction mode)\n"
    "  --grace-s N             on SIGTERM, time for in-flight work before handing back (default 30)\n"
    "  --spill-dir DIR         results that cannot be written at shutdown (the database is away) are\n"
    "                          kept here and written back by the next run on this machine (default\n"
    "                          $TIERQ_SPILL_DIR, else ~/.local/state/tierq/spill)\n"
    "  --max-response-bytes N  larger responses fail the job (default 8 MiB)\n"
    "  --max-tries N           HTTP attempts per call before the job goes back to the queue (default 4)\n"
    "  --requeue-s N           then its first wait in the queue; x4 for each later attempt, at most\n"
    "                          30 min (default 30), so an outage does not use up every attempt at once\n"
    "  --progress / --quiet    live progress line on stderr (default: when stderr is a terminal)\n"
    "  --budget-usd X          stop claiming once this run has spent X dollars (exit status 4)\n"
    "  --all-tiers             every tier answers every job (a labelled run for tierq calibrate)\n"
    "  --fail-on-drift         exit 7 when a kind's shadow agreement ends below its shadow.min_agreement,\n"
    "                          or a tier's agreement fell far below its own past (tierq report, shadow)\n"
    "  --model-map baseline    answer every kind with its baseline model only (the comparison run)\n"
    "  --no-cache              neither read nor write the response cache (an evaluation or bake-off\n"
    "                          measures models, not the cache; --all-tiers implies it)\n"
    "  --cache-only-read       answer from the cache where it can, add nothing to it\n"
    "  --no-schedules          fire no schedules (tierq schedule); by default every run fires due ones\n"
    "                          (a --drain run with --run or --kinds never does; per-fire budgets hold regardless)\n"
    "                          (checked each second; a --drain run also at start, before it counts)\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 done, 1 runtime error, 2 usage, 3 configuration, 4 budget reached,\n"
    "5 a provider refused the account (quota or key), 6 jobs were attempted and none succeeded,\n"
    "7 with --fail-on-drift, a kind's or a tier's answers drifted from its baseline model's\n";

static const char *const USAGE_REPORT =
    "usage: tierq report [--format text|json] [--run NAME] [--since DURATION]\n"
    "\n"
    "Cost per model, latency and pass rate per kind, accuracy per tier where jobs have expected\n"
    "answers, batching savings, savings against the all-baseline cost, and per kind the response\n"
    "cache's hit rate and the dollars its hits saved (part of those savings). Cache hits cost $0 and\n"
    "count in cost, savings and accuracy; latency and the tier tables leave them out.\n"
    "\n"
    "Context compression, per kind and overall: contexts sent compressed (reused: from a stored\n"
    "compression), cleaned and failed; context tokens before and after; what the compression calls\n"
    "cost (their ledger rows, for the share of their jobs in the selection; part of cost_usd); the\n"
    "input tokens and dollars the shorter contexts saved, and the net. The text lists kinds that\n"
    "compressed; JSON has a \"compression\" object in \"totals\" and in every kind:\n"
    "  jobs_compressed (compression 'compressed' or 'reused'), jobs_reused, jobs_cleaned, jobs_failed,\n"
    "  context_tokens_before, context_tokens_after (over jobs_compressed), compression_ratio\n"
    "  (before/after; null when nothing was compressed), cost_usd, tokens_saved, saved_usd,\n"
    "  net_saved_usd (saved_usd - cost_usd); zeros for a kind without compression\n"
    "\n"
    "options:\n"
    "  --format text|json  output format (default text); --json is short for --format json\n"
    "  --run NAME          only jobs of this run_name\n"
    "  --since DURATION    only jobs finished (unfinished: created) since then (90s, 15m, 24h, 7d)\n"
    "  -h, --help          this help\n";

static const char *const USAGE_CACHE =
    "usage: tierq cache stats [--format text|json] [--run NAME] [--since DURATION]\n"
    "       tierq cache purge [--kind K] [--older-than DURATION] [--expired] [--all]\n"
    "\n"
    "The response cache (tierq.cache): answers that passed their bar, kept zstd-compressed and served\n"
    "at $0 to later identical jobs.\n"
    "\n"
    "stats: the entries as they are now (count, expired ones upkeep has not deleted yet, raw and\n"
    "compressed bytes and their ratio, hits served by the entries still stored) and, over done jobs\n"
    "(--run and --since select them as in tierq report), the cache hits, the hit rate and the dollars\n"
    "saved (what the cached answers cost when they were produced); overall and per kind.\n"
    "  --format text|json  output format (default text); --json is short for --format json\n"
    "  --run NAME          only jobs of this run_name\n"
    "  --since DURATION    only jobs finished this long ago or later (90s, 15m, 24h, 7d, 1h30m)\n"
    "  JSON: {\"filters\": {\"run\", \"since_s\"}, \"totals\": {FIGURES}, \"kinds\": [{\"kind\", FIGURES}]}\n"
    "  with FIGURES: entries, expired, raw_bytes, compressed_bytes, compression_ratio (raw/compressed),\n"
    "  hits (sum of tierq.cache.hits), done_jobs, hit_jobs, hit_rate (hit_jobs/done_jobs, 0..1),\n"
    "  saved_usd; null where there is nothing to divide by\n"
    "\n"
    "purge: deletes the entries matching every filter given, 5000 per statement, and prints how many\n"
    "entries and bytes went. Without a filter it refuses (exit 2) unless --all is given.\n"
    "  --kind K            entries of this kind (a kind name; one with no entries deletes nothing)\n"
    "  --older-than D      entries created more than D ago (90s, 15m, 24h, 7d, 1h30m)\n"
    "  --expired           entries past their expires_at that upkeep has not deleted yet\n"
    "  --all               every entry (alone: not with a filter)\n"
    "\n"
    "options:\n"
    "  -h, --help          this help\n";

static const char *const USAGE_PRUNE =
    "usage: tierq prune --older-than D [--states S1,S2] [--batch N] [--dry-run] [--format text|json]\n"
    "\n"
    "Deletes finished jobs whose finished_at (created_at for a job cancelled without one) is more than\n"
    "D ago, in the given states, and the ledger rows (tierq.calls) that serve no job left: a batched\n"
    "call that also served a kept job stays until that job goes too. Queued and running jobs are never\n"
    "touched. Runs in batches of N jobs, each its own short transaction that skips rows the queue holds\n"
    "(it never waits on a running tierq), until a batch finds nothing left.\n"
    "\n"
    "The jobs' and calls' counts, tokens and dollars are added per UTC day to tierq.daily_totals and\n"
    "tierq.daily_call_totals in the same transaction, and tierq report adds them to its totals, per\n"
    "kind and per model. Latencies, accuracy, tiers, failure reasons, shadow comparisons and the\n"
    "answers themselves go with the rows. The response cache is not touched (tierq cache purge).\n"
    "\n"
    "options:\n"
    "  --older-than D      finished more than D ago (90s, 15m, 24h, 7d, 1h30m; required)\n"
    "  --states S1,S2      some of done,failed,dead,cancelled (default: all four)\n"
    "  --batch N           jobs per batch, 1 to 100000 (default 5000)\n"
    "  --dry-run           print what would be deleted now; delete nothing\n"
    "  --format text|json  output format (default text); --json is short for --format json\n"
    "  -h, --help          this help\n"
    "  JSON: {\"dry_run\", \"older_than_s\", \"states\": [...], \"batch_size\", \"jobs\", \"calls\",\n"
    "  \"batches\"} (a dry run: \"cost_usd\" of the jobs instead of \"batches\")\n"
    "\n"
    "From SQL: SELECT * FROM tierq.prune_batch('90 days', '{done,cancelled}', 5000) deletes one batch;\n"
    "CALL tierq.prune('90 days') all of them, committing after each (outside a transaction block).\n"
    "\n"
    "exit status: 0 done (also when nothing was old enough), 1 database error (the batches before it\n"
    "stay deleted), 2 usage\n";

static const char *const USAGE_CALIBRATE =
    "usage: tierq [--jobs DIR] calibrate --run NAME [OPTIONS]\n"
    "\n"
    "Chooses, per kind, the cheapest tiers and accept bars whose accuracy reaches the target, from an\n"
    "all-tiers run (tierq run --all-tiers --run NAME) of jobs with expected answers. A tier that would\n"
    "accept nothing is dropped; no plan costs more than the last tier alone. The promised accuracy and\n"
    "cost are held-out figures (k-fold cross-validation) with a 95% interval.\n"
    "\n"
    "options:\n"
    "  --run NAME          the labelled all-tiers run (required)\n"
    "  --kinds A,B         these kinds (default: every kind with 2 or more tiers and labelled jobs in the run)\n"
    "  --kind K            one kind, reported alone (its JSON object as before)\n"
    "  --target R          accuracy to reach, as a ratio of the last tier's (default 0.98)\n"
    "  --target-accuracy A accuracy to reach against expected, absolute (0..1), instead of --target\n"
    "  --folds K           cross-validation folds (default 5, 2..20)\n"
    "  --step S            grid step of the accept bars (default 0.05)\n"
    "  --write DIR         write the recommended tiers into DIR/<kind>.json (only the tiers block changes)\n"
    "  --diff              print, instead of the report, a unified diff of each kind file (patch -p0)\n"
    "  --thresholds-only   do not measure the agreement rule (accept_if_agrees) against plain bars\n"
    "  --format text|json  output format (default text); --json is short for --format json\n"
    "  -h, --help          this help\n";

static const char *const USAGE_REPROCESS =
    "usage: tierq [--jobs DIR] reprocess --from-run A --run B [OPTIONS]\n"
    "\n"
    "Enqueues the jobs of run A again, into run B, in one transaction: every job of A except cancelled\n"
    "ones, with its kind, prompt, system prompt, context, params, expected answer, priority, max_attempts\n"
    "and budget; none of A's outcome. It does not answer them: tierq run does (tierq run --drain --run B).\n"
    "\n"
    "options:\n"
    "  --from-run A        the run to copy (required)\n"
    "  --run B             the new run (required; refused when it has jobs, unless --append)\n"
    "  --kinds A,B         only these kinds\n"
    "  --model-map M       tiered: answered as jobs/<kind>.json says (any params.model removed);\n"
    "                      baseline: each job by its kind's baseline model alone; MODEL: by that model\n"
    "                      alone (params.model; no escalation, no cache). Default: params as in A\n"
    "  --append            B may already have jobs\n"
    "  --dry-run           print what would be enqueued, enqueue nothing\n"
    "  -h, --help          this help\n";

static const char *const USAGE_BAKEOFF =
    "usage: tierq [--jobs DIR] bakeoff --from-run A --kind K --models M1,M2[,...] [OPTIONS]\n"
    "\n"
    "Copies the jobs of kind K in run A once per model into runs PREFIX-MODEL, each pinned to its model\n"
    "(params.model: that model alone, no escalation, no cache), answers them in this process, then\n"
    "prints side by side from the database: jobs done and failed, cost (the ledger) in total and per\n"
    "1,000 jobs, answer latency p50/p95, accuracy against expected (or, without expected answers, the\n"
    "share whose score passes the kind's first bar), and the jobs/K.json change it recommends: the\n"
    "cheapest model within --margin of the best as the first tier.\n"
    "\n"
    "options:\n"
    "  --from-run A        the run whose jobs are compared (required)\n"
    "  --kind K            the kind (required)\n"
    "  --models M1,M2      two or more models of jobs/models.json (\"baseline\": the kind's)\n"
    "  --sample N          N jobs of A (the same N on every rerun), not all\n"
    "  --run-prefix P      runs are named P-MODEL (default bakeoff-A-K)\n"
    "  --margin POINTS     accuracy points within which models tie (default 1)\n"
    "  --no-run            enqueue only; tierq run daemons answer them; --report-only prints the table\n"
    "  --report-only       print the table of runs made earlier (nothing enqueued, nothing run)\n"
    "  --format text|json  output format (default text)\n"
    "  -h, --help          this help\n";

/* Each subcommand answers -h/--help anywhere among its arguments with its own usage and exit 0,
 * before it parses anything else, so `--help` works even next to an otherwise bad option. */
static bool asks_for_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    return false;
}

/* An option that takes a value came last, without one: say so (rather than "unknown option"). */
static bool missing_value(const char *cmd, const char *opt, const char *value, const char *const *takes_value)
{
    if (value)
        return false;
    for (; *takes_value; takes_value++)
        if (strcmp(opt, *takes_value) == 0) {
            fprintf(stderr, "tierq %s: %s needs a value (see tierq %s --help)\n", cmd, opt, cmd);
            return true;
        }
    return false;
}

/* An option the subcommand does not know: name it, point to the subcommand's help. */
static int unknown_option(const char *cmd, const char *opt)
{
    fprintf(stderr, "tierq %s: unknown option %s (see tierq %s --help)\n", cmd, opt, cmd);
    return EXIT_USAGE;
}

static int load_config(const char *dir, TqConfig **cfg)
{
    TqErr err = {0};
    if (config_load(dir, cfg, &err)) {
        fprintf(stderr, "tierq: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    return EXIT_OK;
}

static int connect_db(PGconn **c)
{
    TqErr err = {0};
    if (db_connect(NULL, c, &err)) {
        fprintf(stderr, "tierq: %s\n", err.msg);
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

static int cmd_config_check(const char *dir)
{
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    printf("%s: ok (%d providers, %d models, %d kinds)\n", dir, cfg->nproviders, cfg->nmodels, cfg->nkinds);
    for (int i = 0; i < cfg->nwarnings; i++)
        fprintf(stderr, "tierq: warning: %s\n", cfg->warnings[i]);
    for (int i = 0; i < cfg->nkinds; i++) {
        const TqKind *k = &cfg->kinds[i];
        printf("  %-12s", k->name);
        for (int t = 0; t < k->ntiers; t++) {
            const TqTier *tr = &k->tiers[t];
            char fb[300] = "";
            for (int f = 0, n = 0; f < tr->nfallback && n < (int)sizeof fb; f++)
                n += snprintf(fb + n, sizeof fb - (size_t)n, "%s%s%s", f ? ", " : " [fallback ",
                              cfg->models[tr->fallback[f]].name, f + 1 == tr->nfallback ? "]" : "");
            if (fb[0])
                printf(" %s%s", cfg->models[tr->model].name, fb);
            else
                printf(" %s", cfg->models[tr->model].name);
            if (t + 1 < k->ntiers && !isnan(k->tiers[t].accept_if_agrees))
                printf(" (accept >= %.2f, or >= %.2f if it agrees) ->", k->tiers[t].accept, k->tiers[t].accept_if_agrees);
            else if (t + 1 < k->ntiers)
                printf(" (accept >= %.2f) ->", k->tiers[t].accept);
            else
                printf(" (final)");
        }
        printf("   baseline %s", cfg->models[k->baseline_model].name);
        if (k->on_outage != TQ_OUTAGE_WAIT)
            printf("   on_outage %s", k->on_outage == TQ_OUTAGE_DEGRADE ? "degrade" : "fail");
        if (k->shadow.rate > 0)
            printf("   shadow %g (min_agreement %g, window %d, boost %g)", k->shadow.rate, k->shadow.min_agreement,
                   k->shadow.window, k->shadow.boost);
        if (!k->cache.enabled)
            printf("   cache off");
        else if (!(k->temperature == 0) && !k->cache.nondeterministic)
            printf("   cache only for jobs with params.temperature 0 (the kind's temperature is %g: set"
                   " cache.nondeterministic to cache sampled answers)", k->temperature);
        else
            printf("   cache ttl %ds, max %d entries%s", k->cache.ttl_s, k->cache.max_entries,
                   k->cache.nondeterministic ? ", nondeterministic" : "");
        printf("\n");
    }
    for (int i = 0; i < cfg->nmodels; i++) {
        const TqModel *m = &cfg->models[i];
        if (m->rpm || m->tpm)
            printf("  model %-20s rpm %d, tpm %d (0: none; the account's, each live process takes its share)\n",
                   m->name, m->rpm, m->tpm);
    }
    for (int i = 0; i < cfg->nproviders; i++) {
        const TqProvider *pr = &cfg->providers[i];
        printf("  provider %-10s max_in_flight %d", pr->name, pr->max_in_flight);
        if (pr->rpm || pr->tpm)
            printf(", shared limits rpm %d tpm %d", pr->rpm, pr->tpm);
        printf(", breaker: %d failures (>= %d%%) in %ds, or %d in a row, open it, probe after %ds doubling to %ds\n",
               pr->breaker_failures, pr->breaker_failure_pct, pr->breaker_window_s, pr->breaker_failures,
               pr->breaker_cooldown_s, pr->breaker_cooldown_max_s);
    }
    printf("  cache: at most %lld MB of compressed answers, zstd level %d\n",
           (long long)(cfg->cache_store.max_bytes >> 20), cfg->cache_store.zstd_level);
    config_free(cfg);
    return EXIT_OK;
}

static int cmd_migrate(const char *dir)
{
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    PGconn *c = NULL;
    if ((rc = connect_db(&c))) {
        config_free(cfg);
        return rc;
    }
    TqErr err = {0};
    int applied = 0;
    if (migrate_apply(c, &applied, &err) || migrate_sync_config(c, cfg, &err)) {
        fprintf(stderr, "tierq: migrate: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    } else {
        printf("migrate: %d migration(s) applied, schema version %d, %d kinds and %d models synced\n", applied,
               migrate_current_version(c, &err), cfg->nkinds, cfg->nmodels);
    }
    PQfinish(c);
    config_free(cfg);
    return rc;
}

static int cmd_status(void)
{
    PGconn *c = NULL;
    int rc = connect_db(&c);
    if (rc)
        return rc;
    TqErr err = {0};
    if (status_print(c, stdout, &err)) {
        fprintf(stderr, "tierq: status: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    return rc;
}

/* Before running: the schema must be the one this binary expects, and the kinds and models in the
 * database must be jobs/ as loaded (not when --model-map replaced it for this run). */
static int run_preflight(const TqConfig *cfg, bool sync)
{
    PGconn *c = NULL;
    int rc = connect_db(&c);
    if (rc)
        return rc;
    TqErr err = {0};
    int version = migrate_current_version(c, &err);
    int latest = migrate_latest_version();
    if (version < latest) {
        fprintf(stderr, "tierq: run: the database schema is at version %d, this tierq needs %d: run `tierq migrate`\n",
                version < 0 ? 0 : version, latest);
        rc = EXIT_FAILURE_RUNTIME;
    } else if (sync && migrate_sync_config(c, cfg, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    return rc;
}

static bool parse_int_arg(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static const char *const RUN_VALUE_OPTIONS[] = {"--model-map", "--run", "--kinds", "--max-response-bytes", "--spill-dir",
                                                 "--budget-usd", NULL};
static const char *const REPORT_VALUE_OPTIONS[] = {"--format", "--run", "--since", NULL};
static const char *const PURGE_VALUE_OPTIONS[] = {"--kind", "--older-than", NULL};
static const char *const REPROCESS_VALUE_OPTIONS[] = {"--from-run", "--run", "--kinds", "--model-map", NULL};
static const char *const BAKEOFF_VALUE_OPTIONS[] = {"--from-run", "--kind",   "--models", "--sample",
                                                     "--run-prefix", "--margin", "--format", NULL};
static const char *const PRUNE_VALUE_OPTIONS[] = {"--older-than", "--states", "--batch", "--format", NULL};
static const char *const CALIBRATE_VALUE_OPTIONS[] = {"--kind",  "--kinds", "--run",   "--target", "--target-accuracy",
                                                       "--folds", "--step",  "--write", "--format", NULL};

static int cmd_run(const char *dir, int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_RUN, stdout);
        return EXIT_OK;
    }
    RunOptions o;
    run_default_options(&o);
    bool baseline_map = false;
    int requeue_s = (int)(o.pool.requeue_base_ms / 1000);
    int held_mb = (int)(o.max_held_bytes >> 20);
    o.progress = isatty(STDERR_FILENO);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n = 0;
#define INT_OPT(name, lo, hi, field)                                                                   \
    if (strcmp(a, name) == 0) {                                                                        \
        if (!v || !parse_int_arg(v, lo, hi, &n)) {                                                     \
            fprintf(stderr, "tierq run: %s needs a whole number from %ld to %ld\n", name, (long)(lo), \
                    (long)(hi));                                                                       \
            return EXIT_USAGE;                                                                         \
        }                                                                                              \
        field = (int)n;                                                                                \
        i++;                                                                                           \
        continue;                                                                                      \
    }
        INT_OPT("--max-in-flight", 1, 100000, o.pool.max_in_flight)
        INT_OPT("--threads", 1, 256, o.pool.threads)
        INT_OPT("--lease-s", 1, 86400, o.lease_s)
        INT_OPT("--claim-batch", 1, 100000, o.claim_batch)
        INT_OPT("--poll-ms", 10, 600000, o.poll_ms)
        INT_OPT("--grace-s", 0, 86400, o.grace_s)
        INT_OPT("--max-tries", 1, 100, o.pool.max_tries)
        INT_OPT("--requeue-s", 1, 3600, requeue_s)
        INT_OPT("--max-held-mb", 1, 65536, held_mb)
#undef INT_OPT
        if (strcmp(a, "--max-response-bytes") == 0) {
            if (!v || !parse_int_arg(v, 1024, 1L << 30, &n)) {
                fprintf(stderr, "tierq: run: --max-response-bytes needs a whole number from 1024 to 1073741824\n");
                return EXIT_USAGE;
            }
            o.pool.max_response_bytes = (size_t)n;
            i++;
        } else if (strcmp(a, "--budget-usd") == 0) {
            char *end = NULL;
            double usd = v ? strtod(v, &end) : -1;
            if (!v || *end != '\0' || !(usd > 0) || usd > 1e6) {
                fprintf(stderr, "tierq run: --budget-usd needs a positive amount of dollars, at most 1000000\n");
                return EXIT_USAGE;
            }
            o.budget_micro = (int64_t)(usd * 1e6 + 0.5);
            i++;
        } else if (strcmp(a, "--all-tiers") == 0) {
            o.all_tiers = true;
        } else if (strcmp(a, "--fail-on-drift") == 0) {
            o.fail_on_drift = true;
        } else if (strcmp(a, "--no-cache") == 0) {
            o.no_cache = true;
        } else if (strcmp(a, "--no-schedules") == 0) {
            o.no_schedules = true;
        } else if (strcmp(a, "--cache-only-read") == 0) {
            o.cache_read_only = true;
        } else if (missing_value("run", a, v, RUN_VALUE_OPTIONS)) {
            return EXIT_USAGE;
        } else if (strcmp(a, "--model-map") == 0) {
            if (strcmp(v, "baseline") != 0 && strcmp(v, "tiered") != 0) {
                fprintf(stderr, "tierq: run: --model-map takes tiered (jobs/ as written) or baseline\n");
                return EXIT_USAGE;
            }
            baseline_map = strcmp(v, "baseline") == 0;
            i++;
        } else if (strcmp(a, "--drain") == 0) {
            o.drain = true;
        } else if (strcmp(a, "--poll-only") == 0) {
            o.poll_only = true;
        } else if (strcmp(a, "--progress") == 0) {
            o.progress = true;
        } else if (strcmp(a, "--quiet") == 0) {
            o.progress = false;
        } else if (strcmp(a, "--spill-dir") == 0) {
            if (!*v) {
                fprintf(stderr, "tierq: run: --spill-dir needs a directory\n");
                return EXIT_USAGE;
            }
            o.spill_dir = v;
            i++;
        } else if (strcmp(a, "--run") == 0) {
            o.run_name = v;
            i++;
        } else if (strcmp(a, "--kinds") == 0) {
            o.kinds_csv = v;
            i++;
        } else {
            return unknown_option("run", a);
        }
    }
    o.pool.requeue_base_ms = (int64_t)requeue_s * 1000;
    o.max_held_bytes = (int64_t)held_mb << 20;
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    TqErr err = {0};
    if (baseline_map && config_use_baseline_map(cfg, &err)) {
        fprintf(stderr, "tierq: run: %s\n", err.msg);
        config_free(cfg);
        return EXIT_FAILURE_RUNTIME;
    }
    if (o.all_tiers && baseline_map) {
        fprintf(stderr, "tierq: run: --all-tiers and --model-map baseline do not go together\n");
        config_free(cfg);
        return EXIT_USAGE;
    }
    if (o.no_cache && o.cache_read_only) {
        fprintf(stderr, "tierq: run: --no-cache and --cache-only-read do not go together (one reads the cache)\n");
        config_free(cfg);
        return EXIT_USAGE;
    }
    if (o.all_tiers && o.fail_on_drift) {
        fprintf(stderr, "tierq: run: --fail-on-drift cannot fire in an --all-tiers run (it makes no shadow calls)\n");
        config_free(cfg);
        return EXIT_USAGE;
    }
    /* every name in --kinds must be a kind: a typo would silently leave that kind's jobs queued */
    const TqKind *listed[64];
    int nlisted = 0;
    char bad[256];
    if (config_kind_list(cfg, o.kinds_csv, listed, 64, &nlisted, bad, sizeof bad)) {
        fprintf(stderr, "tierq: run: --kinds: unknown kind %s (no %s/%s.json)\n", bad, dir, bad);
        config_free(cfg);
        return EXIT_USAGE;
    }
    rc = run_preflight(cfg, !baseline_map);
    if (rc == EXIT_OK)
        rc = run_main(cfg, &o);
    config_free(cfg);
    return rc;
}

/* The job selection of tierq report and tierq cache stats (--format, --json, --run, --since) into o;
 * cmd names the command in messages. Returns EXIT_OK or EXIT_USAGE (said on stderr). */
static int parse_selection(const char *cmd, int argc, char **argv, ReportOptions *o)
{
    *o = (ReportOptions){.format = REPORT_TEXT, .run_name = NULL, .since_s = 0};
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (missing_value(cmd, argv[i], v, REPORT_VALUE_OPTIONS))
            return EXIT_USAGE;
        if ((strcmp(argv[i], "--format") == 0 && v) || strcmp(argv[i], "--json") == 0) {
            if (strcmp(argv[i], "--json") == 0 || strcmp(v, "json") == 0)
                o->format = REPORT_JSON;
            else if (strcmp(v, "text") != 0) {
                fprintf(stderr, "tierq: %s: --format takes text or json\n", cmd);
                return EXIT_USAGE;
            }
            if (strcmp(argv[i], "--format") == 0)
                i++;
        } else if (strcmp(argv[i], "--run") == 0 && v) {
            o->run_name = v;
            i++;
        } else if (strcmp(argv[i], "--since") == 0 && v) {
            if (report_parse_duration(v, &o->since_s)) {
                fprintf(stderr, "tierq: %s: bad --since duration \"%s\" (e.g. 90s, 15m, 24h, 7d, 1h30m)\n", cmd, v);
                return EXIT_USAGE;
            }
            i++;
        } else {
            return unknown_option(cmd, argv[i]);
        }
    }
    return EXIT_OK;
}

static int cmd_report(int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_REPORT, stdout);
        return EXIT_OK;
    }
    ReportOptions o;
    int rc = parse_selection("report", argc, argv, &o);
    if (rc)
        return rc;
    PGconn *c = NULL;
    if ((rc = connect_db(&c)))
        return rc;
    TqErr err = {0};
    if (report_run(c, &o, stdout, &err)) {
        fprintf(stderr, "tierq: report: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    return rc;
}

static int cmd_cache_stats(int argc, char **argv)
{
    ReportOptions o;
    int rc = parse_selection("cache stats", argc, argv, &o);
    if (rc)
        return rc;
    PGconn *c = NULL;
    if ((rc = connect_db(&c)))
        return rc;
    TqErr err = {0};
    if (cacheadmin_stats(c, &o, stdout, &err)) {
        fprintf(stderr, "tierq: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    return rc;
}

/* Every mistake on the purge command line is refused before the database is touched. */
static int cmd_cache_purge(int argc, char **argv)
{
    CachePurgeFilter f = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (missing_value("cache purge", a, v, PURGE_VALUE_OPTIONS))
            return EXIT_USAGE;
        if (strcmp(a, "--kind") == 0) {
            if (f.kind) { /* the last one would win silently: two kinds are two purges */
                fprintf(stderr, "tierq: cache purge: --kind is given twice; purge one kind at a time\n");
                return EXIT_USAGE;
            }
            f.kind = v;
            i++;
        } else if (strcmp(a, "--older-than") == 0) {
            if (report_parse_duration(v, &f.older_than_s)) {
                fprintf(stderr, "tierq: cache purge: bad --older-than duration \"%s\" (e.g. 90s, 15m, 24h, 7d, "
                                "1h30m)\n", v);
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--expired") == 0) {
            f.expired = true;
        } else if (strcmp(a, "--all") == 0) {
            f.all = true;
        } else {
            return unknown_option("cache purge", a);
        }
    }
    TqErr err = {0};
    if (cacheadmin_purge_check(&f, &err)) {
        fprintf(stderr, "tierq: %s\n", err.msg);
        return EXIT_USAGE;
    }
    PGconn *c = NULL;
    int rc = connect_db(&c);
    if (rc)
        return rc;
    CachePurgeResult res;
    if (cacheadmin_purge(c, &f, CACHEADMIN_PURGE_BATCH, &res, &err)) {
        fprintf(stderr, "tierq: %s (%lld entries were deleted before it)\n", err.msg, (long long)res.entries);
        rc = EXIT_FAILURE_RUNTIME;
    } else {
        printf("cache purge: deleted %lld entries, %lld bytes compressed (%lld raw)\n", (long long)res.entries,
               (long long)res.bytes, (long long)res.raw_bytes);
    }
    PQfinish(c);
    return rc;
}

static int cmd_cache(int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_CACHE, stdout);
        return EXIT_OK;
    }
    if (argc >= 1 && strcmp(argv[0], "stats") == 0)
        return cmd_cache_stats(argc - 1, argv + 1);
    if (argc >= 1 && strcmp(argv[0], "purge") == 0)
        return cmd_cache_purge(argc - 1, argv + 1);
    if (argc == 0)
        fprintf(stderr, "tierq cache: missing subcommand: stats or purge (see tierq cache --help)\n");
    else
        fprintf(stderr, "tierq cache: unknown subcommand '%s': stats or purge (see tierq cache --help)\n", argv[0]);
    return EXIT_USAGE;
}

/* Every mistake on the prune command line is refused before the database is touched. */
static int cmd_prune(int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_PRUNE, stdout);
        return EXIT_OK;
    }
    PruneOptions o = {.spec = {.older_than_s = 0, .states = RETENTION_ALL, .batch = RETENTION_DEFAULT_BATCH},
                      .dry_run = false, .format = REPORT_TEXT, .older_than_text = NULL};
    TqErr err = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (missing_value("prune", a, v, PRUNE_VALUE_OPTIONS))
            return EXIT_USAGE;
        if (strcmp(a, "--older-than") == 0) {
            o.older_than_text = v;
            if (report_parse_duration(v, &o.spec.older_than_s)) {
                fprintf(stderr, "tierq: prune: bad --older-than duration \"%s\" (a positive duration: 90s, 15m, 24h, "
                                "7d, 1h30m)\n", v);
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--states") == 0) {
            if (retention_parse_states(v, &o.spec.states, &err)) {
                fprintf(stderr, "tierq: prune: %s\n", err.msg);
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--batch") == 0) {
            long n = strtol(v, &end, 10);
            if (*end != '\0' || end == v || n < 1 || n > RETENTION_MAX_BATCH) {
                fprintf(stderr, "tierq: prune: --batch takes a whole number from 1 to %d\n", RETENTION_MAX_BATCH);
                return EXIT_USAGE;
            }
            o.spec.batch = (int)n;
            i++;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = true;
        } else if (strcmp(a, "--format") == 0 || strcmp(a, "--json") == 0) {
            if (strcmp(a, "--json") == 0 || strcmp(v, "json") == 0)
                o.format = REPORT_JSON;
            else if (strcmp(v, "text") != 0) {
                fprintf(stderr, "tierq: prune: --format takes text or json\n");
                return EXIT_USAGE;
            }
            if (strcmp(a, "--format") == 0)
                i++;
        } else {
            return unknown_option("prune", a);
        }
    }
    if (o.spec.older_than_s == 0) {
        fprintf(stderr, "tierq: prune: --older-than is required (see tierq prune --help)\n");
        return EXIT_USAGE;
    }
    if (retention_check(&o.spec, &err)) {
        fprintf(stderr, "tierq: prune: %s\n", err.msg);
        return EXIT_USAGE;
    }
    PGconn *c = NULL;
    int rc = connect_db(&c);
    if (rc)
        return rc;
    if (prune_run(c, &o, stdout, &err)) {
        fprintf(stderr, "tierq: prune: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    return rc;
}

static int cmd_calibrate(const char *dir, int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_CALIBRATE, stdout);
        return EXIT_OK;
    }
    CalibrateOptions o;
    calibrate_default_options(&o);
    bool target_given = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (missing_value("calibrate", a, v, CALIBRATE_VALUE_OPTIONS))
            return EXIT_USAGE;
        if (strcmp(a, "--kind") == 0 && v) {
            o.kind = v;
            i++;
        } else if (strcmp(a, "--run") == 0 && v) {
            o.run_name = v;
            i++;
        } else if (strcmp(a, "--target") == 0 && v) {
            target_given = true;
            o.target_ratio = strtod(v, &end);
            if (*end != '\0' || !(o.target_ratio > 0 && o.target_ratio <= 2)) {
                fprintf(stderr, "tierq: calibrate: --target takes a ratio above 0 and at most 2 (e.g. 0.98)\n");
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--kinds") == 0 && v) {
            o.kinds = v;
            i++;
        } else if (strcmp(a, "--target-accuracy") == 0 && v) {
            o.target_accuracy = strtod(v, &end);
            if (*end != '\0' || !(o.target_accuracy > 0 && o.target_accuracy <= 1)) {
                fprintf(stderr, "tierq: calibrate: --target-accuracy takes an accuracy above 0 and at most 1 (e.g. 0.9)\n");
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--folds") == 0 && v) {
            long k = strtol(v, &end, 10);
            if (*end != '\0' || k < 2 || k > CALIBRATE_MAX_FOLDS) {
                fprintf(stderr, "tierq: calibrate: --folds takes a whole number from 2 to %d\n", CALIBRATE_MAX_FOLDS);
                return EXIT_USAGE;
            }
            o.folds = (int)k;
            i++;
        } else if (strcmp(a, "--write") == 0 && v) {
            o.write_dir = v;
            i++;
        } else if (strcmp(a, "--diff") == 0) {
            o.diff = true;
        } else if (strcmp(a, "--thresholds-only") == 0) {
            o.thresholds_only = true;
        } else if (strcmp(a, "--step") == 0 && v) {
            o.step = strtod(v, &end);
            if (*end != '\0' || !(o.step >= CALIBRATE_MIN_STEP && o.step <= 0.5)) {
                fprintf(stderr, "tierq: calibrate: --step takes a number from %.3f to 0.5 (e.g. 0.05)\n",
                        CALIBRATE_MIN_STEP);
                return EXIT_USAGE;
            }
            i++;
        } else if (strcmp(a, "--format") == 0 && v) {
            if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                fprintf(stderr, "tierq: calibrate: --format takes text or json\n");
                return EXIT_USAGE;
            }
            o.json = strcmp(v, "json") == 0;
            i++;
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else {
            return unknown_option("calibrate", a);
        }
    }
    if (!o.run_name) {
        fprintf(stderr, "tierq: calibrate: --run is required (see tierq calibrate --help)\n");
        return EXIT_USAGE;
    }
    if (o.kind && o.kinds) {
        fprintf(stderr, "tierq: calibrate: --kind and --kinds do not go together\n");
        return EXIT_USAGE;
    }
    if (target_given && o.target_accuracy > 0) {
        fprintf(stderr, "tierq: calibrate: --target (a ratio of the last tier's accuracy) and --target-accuracy "
                        "(absolute) do not go together\n");
        return EXIT_USAGE;
    }
    if (o.diff && o.json) {
        fprintf(stderr, "tierq: calibrate: --diff prints a diff, not a report: leave out --format json\n");
        return EXIT_USAGE;
    }
    if (o.write_dir && o.diff) {
        fprintf(stderr, "tierq: calibrate: --write and --diff do not go together (--diff shows what --write would do)\n");
        return EXIT_USAGE;
    }
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    const TqKind *listed[64];
    int nlisted = 0;
    char bad[256];
    if (config_kind_list(cfg, o.kind ? o.kind : o.kinds, listed, 64, &nlisted, bad, sizeof bad)) {
        fprintf(stderr, "tierq: calibrate: unknown kind %s (no %s/%s.json)\n", bad, dir, bad);
        config_free(cfg);
        return EXIT_USAGE;
    }
    for (int i = 0; i < nlisted; i++)
        if (listed[i]->ntiers < 2) {
            fprintf(stderr, "tierq: calibrate: kind %s has a single tier; there is no accept bar to choose\n",
                    listed[i]->name);
            config_free(cfg);
            return EXIT_USAGE;
        }
    PGconn *c = NULL;
    if ((rc = connect_db(&c))) {
        config_free(cfg);
        return rc;
    }
    TqErr err = {0};
    if (calibrate_run(c, cfg, &o, stdout, &err)) {
        fprintf(stderr, "tierq: calibrate: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    }
    PQfinish(c);
    config_free(cfg);
    return rc;
}

static int cmd_reprocess(const char *dir, int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_REPROCESS, stdout);
        return EXIT_OK;
    }
    ReprocessOptions o = {0};
    ReprocessTarget t = {.map = REPROCESS_MAP_KEEP};
    const char *kinds_csv = NULL, *map = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (missing_value("reprocess", a, v, REPROCESS_VALUE_OPTIONS))
            return EXIT_USAGE;
        if (strcmp(a, "--from-run") == 0) {
            o.from_run = argv[++i];
        } else if (strcmp(a, "--run") == 0) {
            t.run = argv[++i];
        } else if (strcmp(a, "--kinds") == 0) {
            kinds_csv = argv[++i];
        } else if (strcmp(a, "--model-map") == 0) {
            map = argv[++i];
        } else if (strcmp(a, "--append") == 0) {
            o.append = true;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = true;
        } else {
            return unknown_option("reprocess", a);
        }
    }
    if (!o.from_run || !t.run || !*o.from_run || !*t.run) {
        fprintf(stderr, "tierq reprocess: --from-run and --run are required (see tierq reprocess --help)\n");
        return EXIT_USAGE;
    }
    if (strlen(t.run) > 200) {
        fprintf(stderr, "tierq reprocess: --run: a run name is at most 200 characters\n");
        return EXIT_USAGE;
    }
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    const TqKind *listed[64];
    const char *names[64];
    int nlisted = 0;
    char bad[256];
    if (config_kind_list(cfg, kinds_csv, listed, 64, &nlisted, bad, sizeof bad)) {
        fprintf(stderr, "tierq reprocess: --kinds: unknown kind %s (no %s/%s.json)\n", bad, dir, bad);
        config_free(cfg);
        return EXIT_USAGE;
    }
    for (int i = 0; i < nlisted; i++)
        names[i] = listed[i]->name;
    o.kinds = names;
    o.nkinds = nlisted;
    if (map && strcmp(map, "tiered") == 0) {
        t.map = REPROCESS_MAP_TIERED;
    } else if (map) {
        t.map = REPROCESS_MAP_MODEL;
        t.model = map;
        if (strcmp(map, "baseline") != 0 && config_model_index(cfg, map) < 0) {
            fprintf(stderr, "tierq reprocess: --model-map takes tiered, baseline or a model of %s/models.json; "
                            "%s is none of them\n", dir, map);
            config_free(cfg);
            return EXIT_USAGE;
        }
    }
    PGconn *c = NULL;
    if ((rc = connect_db(&c))) {
        config_free(cfg);
        return rc;
    }
    TqErr err = {0};
    ReprocessCount *counts = NULL;
    int n = 0;
    if (reprocess_enqueue(c, cfg, &o, &t, 1, &counts, &n, &err)) {
        fprintf(stderr, "tierq reprocess: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    } else {
        long total = 0;
        for (int i = 0; i < n; i++) {
            printf("%s %ld jobs of kind %s from run %s into run %s\n", o.dry_run ? "would enqueue" : "enqueued",
                   counts[i].jobs, counts[i].kind, o.from_run, t.run);
            total += counts[i].jobs;
        }
        if (o.dry_run)
            printf("dry run: %ld jobs would be enqueued into run %s; nothing was\n", total, t.run);
        else
            printf("reprocess: %ld jobs queued; answer them with tierq run --drain --run %s (or running daemons)\n",
                   total, t.run);
        free(counts);
    }
    PQfinish(c);
    config_free(cfg);
    return rc;
}

static int cmd_bakeoff(const char *dir, int argc, char **argv)
{
    if (asks_for_help(argc, argv)) {
        fputs(USAGE_BAKEOFF, stdout);
        return EXIT_OK;
    }
    BakeoffOptions o = {.margin = BAKEOFF_DEFAULT_MARGIN};
    bool no_run = false, report_only = false;
    static char models_copy[4096];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (missing_value("bakeoff", a, v, BAKEOFF_VALUE_OPTIONS))
            return EXIT_USAGE;
        if (strcmp(a, "--from-run") == 0) {
            o.from_run = argv[++i];
        } else if (strcmp(a, "--kind") == 0) {
            o.kind = argv[++i];
        } else if (strcmp(a, "--models") == 0) {
            snprintf(models_copy, sizeof models_copy, "%s", v);
            o.nmodels = 0;
            for (char *save = NULL, *tok = strtok_r(models_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (o.nmodels == BAKEOFF_MAX_MODELS) {
                    fprintf(stderr, "tierq bakeoff: --models: at most %d models\n", BAKEOFF_MAX_MODELS);
                    return EXIT_USAGE;
                }
                o.models[o.nmodels++] = tok;
            }
            i++;
        } else if (strcmp(a, "--sample") == 0) {
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 1 || n > 100000000) {
                fprintf(stderr, "tierq bakeoff: --sample takes a whole number of jobs from 1 to 100000000\n");
                return EXIT_USAGE;
            }
            o.sample = n;
            i++;
        } else if (strcmp(a, "--run-prefix") == 0) {
            o.run_prefix = argv[++i];
            if (!*o.run_prefix) {
                fprintf(stderr, "tierq bakeoff: --run-prefix needs a name\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--margin") == 0) {
            double pts = strtod(v, &end);
            if (*end != '\0' || !(pts >= 0 && pts <= 100)) {
                fprintf(stderr, "tierq bakeoff: --margin takes accuracy points from 0 to 100 (e.g. 1)\n");
                return EXIT_USAGE;
            }
            o.margin = pts / 100.0;
            i++;
        } else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "json") != 0 && strcmp(v, "text") != 0) {
                fprintf(stderr, "tierq bakeoff: --format takes text or json\n");
                return EXIT_USAGE;
            }
            o.json = strcmp(v, "json") == 0;
            i++;
        } else if (strcmp(a, "--no-run") == 0) {
            no_run = true;
        } else if (strcmp(a, "--report-only") == 0) {
            report_only = true;
        } else {
            return unknown_option("bakeoff", a);
        }
    }
    if (!o.from_run || !*o.from_run || !o.kind || o.nmodels == 0) {
        fprintf(stderr, "tierq bakeoff: --from-run, --kind and --models are required (see tierq bakeoff --help)\n");
        return EXIT_USAGE;
    }
    if (no_run && report_only) {
        fprintf(stderr, "tierq bakeoff: --no-run and --report-only do not go together (one enqueues, the other "
                        "only reads)\n");
        return EXIT_USAGE;
    }
    TqConfig *cfg = NULL;
    int rc = load_config(dir, &cfg);
    if (rc)
        return rc;
    TqErr err = {0};
    Bakeoff b;
    if (bakeoff_resolve(cfg, &o, &b, &err)) {
        fprintf(stderr, "tierq bakeoff: %s\n", err.msg);
        config_free(cfg);
        return EXIT_USAGE;
    }
    if (!report_only && (rc = run_preflight(cfg, true))) {
        config_free(cfg);
        return rc;
    }
    PGconn *c = NULL;
    if ((rc = connect_db(&c))) {
        config_free(cfg);
        return rc;
    }
    if (!report_only && bakeoff_enqueue(c, cfg, &o, &b, stdout, &err)) {
        fprintf(stderr, "tierq bakeoff: %s\n", err.msg);
        rc = EXIT_FAILURE_RUNTIME;
    } else if (no_run) {
        if (!o.json)
            printf("bakeoff: enqueued only; once tierq run has answered them, print the table with --report-only\n");
    } else {
        int run_rc = report_only ? RUN_EXIT_OK : bakeoff_process(cfg, &b);
        if (bakeoff_report(c, cfg, &o, &b, stdout, &err)) {
            fprintf(stderr, "tierq bakeoff: %s\n", err.msg);
            rc = EXIT_FAILURE_RUNTIME;
        } else {
            rc = run_rc;
        }
    }
    PQfinish(c);
    config_free(cfg);
    return rc;
}

/* tierq help [COMMAND]: the overview, or one command's usage. */
static int cmd_help(int argc, char **argv)
{
    if (argc == 0 || asks_for_help(argc, argv)) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    static const char *const SCHEDULE_USAGE_PTR = SCHEDULE_USAGE;
    static const struct {
        const char *name;
        const char *const *usage;
    } helps[] = {{"migrate", &USAGE_MIGRATE}, {"config", &USAGE_CONFIG}, {"status", &USAGE_STATUS},
                 {"run", &USAGE_RUN},         {"report", &USAGE_REPORT}, {"calibrate", &USAGE_CALIBRATE},
                 {"cache", &USAGE_CACHE},     {"reprocess", &USAGE_REPROCESS}, {"bakeoff", &USAGE_BAKEOFF},
                 {"schedule", &SCHEDULE_USAGE_PTR}, {"prune", &USAGE_PRUNE}};
    for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++)
        if (strcmp(argv[0], helps[k].name) == 0) {
            fputs(*helps[k].usage, stdout);
            return EXIT_OK;
        }
    fprintf(stderr, "tierq help: unknown command '%s' (see tierq --help)\n", argv[0]);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    log_set_level(log_level_from_env());
    const char *dir = config_default_dir();
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("tierq %s\n", TQ_VERSION);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "tierq: unknown option %s (see tierq --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    int cargc = argc - i - 1;
    char **cargv = argv + i + 1;
    if (strcmp(cmd, "run") == 0)
        return cmd_run(dir, cargc, cargv);
    if (strcmp(cmd, "report") == 0)
        return cmd_report(cargc, cargv);
    if (strcmp(cmd, "calibrate") == 0)
        return cmd_calibrate(dir, cargc, cargv);
    if (strcmp(cmd, "schedule") == 0)
        return schedule_main(cargc, cargv);
    if (strcmp(cmd, "cache") == 0)
        return cmd_cache(cargc, cargv);
    if (strcmp(cmd, "reprocess") == 0)
        return cmd_reprocess(dir, cargc, cargv);
    if (strcmp(cmd, "bakeoff") == 0)
        return cmd_bakeoff(dir, cargc, cargv);
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(cargc, cargv);
    if (strcmp(cmd, "help") == 0)
        return cmd_help(cargc, cargv);
    /* migrate, config check and status take no options but help. */
    const char *usage = strcmp(cmd, "migrate") == 0  ? USAGE_MIGRATE
                        : strcmp(cmd, "config") == 0 ? USAGE_CONFIG
                        : strcmp(cmd, "status") == 0 ? USAGE_STATUS
                                                     : NULL;
    if (!usage) {
        fprintf(stderr, "tierq: unknown command '%s' (see tierq --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (asks_for_help(cargc, cargv)) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "config") == 0) {
        if (cargc == 1 && strcmp(cargv[0], "check") == 0)
            return cmd_config_check(dir);
        fprintf(stderr, "tierq config: %s (see tierq config --help)\n",
                cargc == 0 ? "missing subcommand: check" : "the only subcommand is check");
        return EXIT_USAGE;
    }
    if (cargc > 0)
        return unknown_option(cmd, cargv[0]);
    return strcmp(cmd, "migrate") == 0 ? cmd_migrate(dir) : cmd_status();
}
