/* server.h — the simulator's event loop: one thread, epoll, non-blocking sockets on 127.0.0.1.
 *
 * Requests are parsed as they arrive and handed to routes_dispatch; a reply with a delay waits in
 * a min-heap of due times instead of blocking anything, so thousands of slow answers can be in
 * flight at once. One request per connection is answered at a time (later pipelined requests wait
 * in the buffer), so replies keep their order. */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include "err.h"
#include "sim.h"

typedef struct Server Server;

/* Listen on 127.0.0.1:port (0 = any free port). Blocks SIGINT and SIGTERM for the process and
 * receives them through the loop instead. Returns 0 or TQ_EIO / TQ_ENOMEM with err filled. */
int server_open(Server **out, Sim *sim, int port, TqErr *err);
int server_port(const Server *s);
/* Serve until SIGINT or SIGTERM. Returns 0 on a signal, TQ_EIO if epoll fails. */
int server_run(Server *s, TqErr *err);
/* Close every connection and the listener; pending replies are discarded. NULL does nothing. */
void server_close(Server *s);

#endif
