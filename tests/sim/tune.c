#include "tune.h"

#include "log.h"
#include "utf8.h"

#include <stdio.h>
#include <string.h>

#define TUNE_MAX_NAME 512

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The model the path names, or NULL after writing the 404 into rep (*rc set when even that
 * failed). */
static const SimModel *model_of(Sim *sim, const HttpReq *req, SimReply *rep, int *rc)
{
    const char *s = req->path + strlen(TUNE_PATH);
    size_t n = req->path_len - strlen(TUNE_PATH), len = 0;
    char name[TUNE_MAX_NAME];
    for (size_t i = 0; i < n && len < sizeof name; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            name[len++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            name[len++] = s[i];
        }
    }
    const SimModel *m = len < sizeof name ? catalog_find(&sim->catalog, name, len) : NULL;
    if (!m) {
        char shown[80], msg[160];
        utf8_copy_cut(shown, sizeof shown, name, len < sizeof name ? len : sizeof name);
        utf8_one_line(shown);
        snprintf(msg, sizeof msg, "The model `%s` does not exist", shown);
        *rc = reply_error(rep, 404, msg, "invalid_request_error", "model", "model_not_found");
    }
    return m;
}

int tune_get(Sim *sim, const HttpReq *req, SimReply *rep)
{
    rep->meta = true;
    int rc = 0;
    const SimModel *m = model_of(sim, req, rep, &rc);
    return m ? catalog_model_json(m, &rep->body) : rc;
}

int tune_post(Sim *sim, const HttpReq *req, SimReply *rep)
{
    rep->meta = true;
    int rc = 0;
    const SimModel *m = model_of(sim, req, rep, &rc);
    if (!m)
        return rc;
    TqErr err = {0};
    rc = catalog_update(&sim->catalog, m->index, req->body ? req->body : "", req->body_len, &err);
    if (rc == TQ_ENOMEM)
        return rc;
    if (rc)
        return reply_error(rep, 400, err.msg, "invalid_request_error", NULL, "invalid_value");
    /* One line per change, so a drift test's log shows when the model moved. */
    char name[80];
    utf8_copy_cut(name, sizeof name, m->name, strlen(m->name));
    utf8_one_line(name);
    log_msg(LOG_INFO, "sim", "model settings changed model=%s skill=%g", name, m->skill);
    return catalog_model_json(m, &rep->body);
}
