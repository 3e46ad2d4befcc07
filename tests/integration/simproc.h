/* simproc.h — start and stop the simulated provider (tierq-sim, from TIERQ_SIM_BIN) for a test,
 * on a free loopback port. */
#ifndef TQ_SIMPROC_H
#define TQ_SIMPROC_H

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

static void sim_stop(SimProc *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

#endif
