/* http_guard — a deadline on the request-header phase of the HTTP gateway's connections
 * (issue 19, item 5).
 *
 * libmicrohttpd's connection timeout is an idle timeout: every byte restarts it, so a client
 * that dribbles one header byte every few seconds (slow loris) keeps its connection, and with
 * enough of them every slot of the gateway, forever. The guard bounds the whole phase instead:
 * a connection must have sent complete request headers within `deadline_ms` of being accepted
 * (or, on a keep-alive connection, of its previous request finishing), else it is shut down.
 *
 * How: the guard registers every connection as libmicrohttpd accepts it
 * (MHD_CONNECTION_NOTIFY_STARTED) and forgets it as it closes (MHD_CONNECTION_NOTIFY_CLOSED,
 * which libmicrohttpd 0.9.x calls before it closes the socket). One
 * watchdog thread scans the open connections four times a second and shutdown(2)s the socket
 * of each one past its deadline whose headers are not in: the connection's thread then reads
 * EOF and libmicrohttpd closes it the ordinary way. The socket is only touched under the guard's
 * lock, between open and close, so it can never be a descriptor already reused elsewhere.
 *
 * Not here: the per-address connection cap and the idle timeout (libmicrohttpd options set in
 * gateway/http.c), body and response deadlines (a request may take its time once its headers
 * are in).
 */
#ifndef WS_GATEWAY_HTTP_GUARD_H
#define WS_GATEWAY_HTTP_GUARD_H

#include <microhttpd.h>

#include "core/error.h"

typedef struct hguard hguard;

/* Starts the watchdog. deadline_ms > 0. *out owned by the caller (hguard_free). */
int hguard_create(int deadline_ms, hguard **out, ws_err *err);
/* Stops the watchdog and frees the guard; every connection must have been closed (the daemon
 * stopped) first. NULL is a no-op. */
void hguard_free(hguard *g);

/* MHD_OPTION_NOTIFY_CONNECTION callback, cls = the guard: STARTED starts the connection's header
 * deadline (its entry is the connection's socket context), CLOSED forgets it. A connection
 * whose entry cannot be allocated goes without a deadline (logged). */
void hguard_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code);
/* c's request headers are complete (the first call of the access handler): no deadline until
 * hguard_request_done. */
void hguard_headers_in(hguard *g, struct MHD_Connection *c);
/* c's request is finished (MHD_OPTION_NOTIFY_COMPLETED): the next request on this keep-alive
 * connection must have its headers in within the deadline from now. */
void hguard_request_done(hguard *g, struct MHD_Connection *c);

/* Connections cut at their deadline since the guard started (for logs and tests). */
long hguard_cut_count(hguard *g);

#endif
