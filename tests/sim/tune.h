/* tune.h — GET and POST /sim/models/<name>: read and change one model's settings while the
 * simulator runs, so a test can make a model drift (its skill drops mid-run) and watch the client
 * notice.
 *
 * GET returns the model's current settings as a JSON object of every catalog key
 * (catalog_model_json). POST takes a JSON object of catalog keys, checked like the catalog file
 * (catalog_update: unknown key or value out of range -> 400 naming it, and nothing changes);
 * keys given replace the current values, the others stay; the reply is the settings after the
 * change. The change applies to requests that arrive afterwards: replies already computed and
 * waiting out their latency keep the answers they were given. An unknown model is 404
 * (model_not_found). Like every /sim/ endpoint: no API key, not counted in the stats.
 *
 * <name> is the rest of the path (it may contain '/'), %XX escapes decoded. Handlers run on the
 * event loop between requests (routes.h), so a request sees a model's settings whole. */
#ifndef SIM_TUNE_H
#define SIM_TUNE_H

#include "http.h"
#include "reply.h"
#include "sim.h"

#define TUNE_PATH "/sim/models/"

int tune_get(Sim *sim, const HttpReq *req, SimReply *rep);
int tune_post(Sim *sim, const HttpReq *req, SimReply *rep);

#endif
