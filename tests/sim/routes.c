#include "routes.h"

#include "chat.h"
#include "json.h"
#include "tune.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int models_handle(Sim *sim, const HttpReq *req, SimReply *rep)
{
    (void)req;
    Buf *b = &rep->body;
    int rc = buf_puts(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; rc == 0 && i < sim->catalog.n; i++) {
        rc = buf_puts(b, i ? ",{\"id\":" : "{\"id\":");
        if (!rc)
            rc = json_put_cstr(b, sim->catalog.models[i].name);
        if (!rc)
            rc = buf_puts(b, ",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"tierq-sim\"}");
    }
    if (!rc)
        rc = buf_puts(b, "]}");
    return rc;
}

static int stats_handle(Sim *sim, const HttpReq *req, SimReply *rep)
{
    (void)req;
    rep->meta = true;
    return stats_to_json(&sim->stats, &sim->catalog, sim->now_ms, &rep->body);
}

static int reset_handle(Sim *sim, const HttpReq *req, SimReply *rep)
{
    (void)req;
    rep->meta = true;
    sim_reset(sim);
    return buf_puts(&rep->body, "{\"reset\":true}");
}

static int health_handle(Sim *sim, const HttpReq *req, SimReply *rep)
{
    (void)sim;
    (void)req;
    rep->meta = true;
    return buf_puts(&rep->body, "{\"ok\":true}");
}

typedef struct Route {
    const char *method;
    const char *path;
    RouteFn fn;
    bool auth;   /* subject to --require-key */
    bool prefix; /* path is a prefix: the rest names something (a model) */
} Route;

/* A handful of fixed routes: a linear match costs less than hashing the path. */
static const Route routes[] = {
    {"POST", "/v1/chat/completions", chat_handle, true, false},
    {"POST", "/chat/completions", chat_handle, true, false},
    {"GET", "/v1/models", models_handle, true, false},
    {"GET", "/models", models_handle, true, false},
    {"GET", "/sim/stats", stats_handle, false, false},
    {"POST", "/sim/reset", reset_handle, false, false},
    {"GET", "/sim/health", health_handle, false, false},
    {"GET", TUNE_PATH, tune_get, false, true},
    {"POST", TUNE_PATH, tune_post, false, true},
};

static bool path_matches(const HttpReq *req, const Route *r)
{
    if (!r->prefix)
        return http_path_is(req, r->path);
    size_t n = strlen(r->path);
    return req->path_len > n && memcmp(req->path, r->path, n) == 0;
}

/* Constant-time comparison, so the key cannot be guessed byte by byte from response times. */
static bool key_matches(const HttpReq *req, const char *key)
{
    static const char bearer[] = "Bearer ";
    size_t bl = sizeof bearer - 1, kl = strlen(key);
    if (!req->auth || req->auth_len != bl + kl || strncasecmp(req->auth, bearer, bl) != 0)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(req->auth[bl + i] ^ key[i]);
    return diff == 0;
}

int routes_dispatch(Sim *sim, const HttpReq *req, SimReply *rep)
{
    bool path_found = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const Route *r = &routes[i];
        if (!path_matches(req, r))
            continue;
        path_found = true;
        if (!http_method_is(req, r->method))
            continue;
        if (r->auth && sim->cfg->require_key && !key_matches(req, sim->cfg->require_key))
            return reply_error(rep, 401, "Incorrect API key provided.", "invalid_request_error", NULL,
                               "invalid_api_key");
        return r->fn(sim, req, rep);
    }
    char msg[256];
    snprintf(msg, sizeof msg, "Unknown request URL: %.*s %.*s.", (int)(req->method_len > 16 ? 16 : req->method_len),
             req->method, (int)(req->path_len > 128 ? 128 : req->path_len), req->path);
    if (path_found) {
        int rc = reply_error(rep, 405, msg, "invalid_request_error", NULL, "method_not_allowed");
        return rc;
    }
    return reply_error(rep, 404, msg, "invalid_request_error", NULL, "unknown_url");
}
