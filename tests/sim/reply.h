/* reply.h — what an endpoint handler hands back to the server: status, headers, body, and how and
 * when to deliver it. One SimReply is reused for every request (its buffers keep their memory). */
#ifndef SIM_REPLY_H
#define SIM_REPLY_H

#include "buf.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    REPLY_SEND = 0, /* send status, headers and body */
    REPLY_DROP,     /* close the connection without answering */
    REPLY_TRUNCATE, /* send the head (full Content-Length) and half the body, then close */
} ReplyAction;

typedef struct SimReply {
    int status;
    const char *content_type; /* static string */
    Buf headers;              /* extra header lines, each ending in CRLF */
    Buf body;
    uint32_t delay_ms;        /* deliver this long after the request arrived; 0 = at once */
    ReplyAction action;
    bool close;               /* close the connection after delivery */
    bool meta;                /* an observer endpoint (/sim/...): not counted in the stats */
} SimReply;

void reply_init(SimReply *r);
void reply_reset(SimReply *r); /* back to 200 application/json, empty, immediate */
void reply_free(SimReply *r);
/* Append one header line (value printf-formatted). Returns 0 or TQ_ENOMEM / TQ_ELIMIT. */
int reply_header(SimReply *r, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Replace the body by an OpenAI-style error {"error":{"message","type","param","code"}}.
 * param and code may be NULL (written as null). Returns 0 or a TQ_E* code. */
int reply_error(SimReply *r, int status, const char *message, const char *type, const char *param,
                const char *code);

#endif
