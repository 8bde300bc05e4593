/* /metrics (Prometheus text), /health and /ready over libmicrohttpd, when
 * engine.http is set. The server thread never reads the live graph: the main
 * loop copies the counters into a published copy under a mutex every 100 ms
 * (ink_metrics_publish), and the server renders from that copy. */
#ifndef INK_METRICS_H
#define INK_METRICS_H

#include "err.h"

struct ink_graph;

/* Start the server on engine.http.listen (not ready yet). 0 or INK_EIO. */
int ink_metrics_start(struct ink_graph *g, struct ink_err *err);
/* Main loop only. */
void ink_metrics_publish(struct ink_graph *g);
/* Sources are open and any restore is finished: /ready answers 200. */
void ink_metrics_publish_ready(struct ink_graph *g);
/* Stop the server; safe without one. */
void ink_metrics_stop(struct ink_graph *g);

#endif
