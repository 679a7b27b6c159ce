/* echo_expert — a stand-in expert for tests: Expert.Info says role expert-high, version
 * ECHO_EXPERT_VERSION, no model digest; Expert.Denoise validates the request's tensor and
 * answers prediction = x_t. Served by rpc-testsrv and by the router's shadow test. */
#ifndef WS_TESTS_ECHO_EXPERT_H
#define WS_TESTS_ECHO_EXPERT_H

#include "rpc/server.h"

#define ECHO_EXPERT_VERSION "test-v1"

/* Adds both methods to s (before it starts); replica_id goes into every Denoise answer. */
int echo_expert_add(rpc_server *s, const char *replica_id, ws_err *err);

#endif
