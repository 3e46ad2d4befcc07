/* routes.h — maps a request to its endpoint handler.
 *
 * Every endpoint is one function of this shape, in the file named after it (chat.c for
 * /v1/chat/completions; small endpoints in routes.c). A handler fills rep (status, body, delay,
 * action) and returns 0; a non-zero return means it could not build a reply (out of memory) and
 * the server answers 500. Handlers never block. */
#ifndef SIM_ROUTES_H
#define SIM_ROUTES_H

#include "http.h"
#include "reply.h"
#include "sim.h"

typedef int (*RouteFn)(Sim *sim, const HttpReq *req, SimReply *rep);

/* Find the endpoint, check the API key where required, and run the handler. */
int routes_dispatch(Sim *sim, const HttpReq *req, SimReply *rep);

#endif
