/* simproc.h — start and stop the simulated provider (tierq-sim, from TIERQ_SIM_BIN) for a test,
 * on a free loopback port. */
#ifndef TQ_SIMPROC_H
#define TQ_SIMPROC_H

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct SimProc {
    pid_t pid;
    int port;
    char base_url[128];
} SimProc;

/* extra: further command-line arguments, split on spaces (no quoting). Returns 0 when listening. */
static int sim_start(SimProc *s, const char *answers, const char *extra)
{
    const char *bin = getenv("TIERQ_SIM_BIN");
    const char *root = getenv("TIERQ_ROOT");
    if (!bin || !root) {
        printf("# TIERQ_SIM_BIN and TIERQ_ROOT must be set\n");
        return -1;
    }
    char portfile[256], models[512];
    snprintf(portfile, sizeof portfile, "/tmp/tq_sim_port.%d", (int)getpid());
    snprintf(models, sizeof models, "%s/tests/sim/models.json", root);
    unlink(portfile);
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bin;
    argv[argc++] = (char *)"--port";
    argv[argc++] = (char *)"0";
    argv[argc++] = (char *)"--port-file";
    argv[argc++] = portfile;
    argv[argc++] = (char *)"--models";
    argv[argc++] = models;
    if (answers) {
        argv[argc++] = (char *)"--answers";
        argv[argc++] = (char *)answers;
    }
    char extra_copy[1024] = "";
    if (extra) {
        snprintf(extra_copy, sizeof extra_copy, "%s", extra);
        for (char *tok = strtok(extra_copy, " "); tok && argc < 62; tok = strtok(NULL, " "))
            argv[argc++] = tok;
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        execv(bin, argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port) == 1 && port > 0;
            fclose(f);
            if (ok) {
                s->port = port;
                snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d/v1", port);
                unlink(portfile);
                return 0;
            }
        }
        usleep(25000);
    }
    printf("# the simulator did not start\n");
    kill(pid, SIGKILL);
    return -1;
}

static inline size_t sim_collect(char *ptr, size_t size, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = size * n;
    if (have + add >= 65536)
        add = 65535 - have;
    memcpy(buf + have, ptr, add);
    buf[have + add] = '\0';
    return size * n;
}

/* The body of GET /sim/stats (a static buffer, overwritten by the next call), or NULL when the
 * simulator cannot be asked. */
static inline const char *sim_stats_body(const SimProc *s)
{
    static char body[65536];
    body[0] = '\0';
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sim/stats", s->port);
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sim_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    return rc == CURLE_OK ? body : NULL;
}

/* A top-level integer counter of GET /sim/stats ("requests": chat completion requests received), or
 * -1 when the simulator cannot be asked. */
static inline long long sim_stat(const SimProc *s, const char *name)
{
    const char *body = sim_stats_body(s);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *at = body ? strstr(body, key) : NULL;
    return at ? atoll(at + strlen(key)) : -1;
}

/* POST /sim/models/<model> with the JSON body (change a model's settings while the simulator runs);
 * the HTTP status, or -1 when the simulator cannot be asked. */
static inline long sim_tune(const SimProc *s, const char *model, const char *body)
{
    static char reply[65536];
    reply[0] = '\0';
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sim/models/%s", s->port, model);
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sim_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)reply);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    long status = -1;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    return status;
}

static void sim_stop(SimProc *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

#endif
