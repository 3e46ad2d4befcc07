/* main.c — the tierq command line: parse the subcommand, load what it needs, map errors to exit
 * codes. Only main exits. */
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "commands:\n"
    "  migrate          create or upgrade the tierq schema, then sync jobs/ into tierq.kinds and tierq.models\n"
    "  config check     validate jobs/ without touching the database\n"
    "  status           jobs by state and kind, oldest queued job, live tierq processes\n"
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
    "  3  configuration error in jobs/ (the message names the file and key)\n";

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
    for (int i = 0; i < cfg->nkinds; i++) {
        const TqKind *k = &cfg->kinds[i];
        printf("  %-12s", k->name);
        for (int t = 0; t < k->ntiers; t++) {
            if (t + 1 < k->ntiers)
                printf(" %s (accept >= %.2f) ->", cfg->models[k->tiers[t].model].name, k->tiers[t].accept);
            else
                printf(" %s (final)", cfg->models[k->tiers[t].model].name);
        }
        printf("   baseline %s\n", cfg->models[k->baseline_model].name);
    }
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
            fprintf(stderr, "tierq: unknown option %s\n%s", argv[i], USAGE);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    if (strcmp(cmd, "migrate") == 0 && i + 1 == argc)
        return cmd_migrate(dir);
    if (strcmp(cmd, "config") == 0 && i + 2 == argc && strcmp(argv[i + 1], "check") == 0)
        return cmd_config_check(dir);
    if (strcmp(cmd, "status") == 0 && i + 1 == argc)
        return cmd_status();
    if (strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    fprintf(stderr, "tierq: unknown command '%s' (see tierq --help)\n", cmd);
    return EXIT_USAGE;
}
