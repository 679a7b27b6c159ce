/* results — the result store of the HTTP video jobs (issue 18): a directory (--results-dir; a
 * PVC or NFS share in k8s) shared by the routers, holding <id>.mp4 (a completed job's video)
 * and <id>.image (an I2V job's input, so another router can run the job again).
 *
 * Writes are atomic: a temporary file in the same directory, fsync'ed, renamed over the name, so
 * a reader on any router sees either no file or the whole one, even if the writer dies midway.
 * Eviction (time and size budget) is decided from the job records (gateway/jobstore.h), which
 * then remove the files here. A dir of NULL or "" means "no store": every call is WS_ENOTFOUND.
 */
#ifndef WS_GATEWAY_RESULTS_H
#define WS_GATEWAY_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Creates the directory when missing (one level) and checks it is writable. */
int results_init(const char *dir, ws_err *err);
/* Writes dir/<id>.<ext> atomically. */
int results_put(const char *dir, const char *id, const char *ext, const void *data, size_t len,
                ws_err *err);
/* Opens dir/<id>.<ext> for reading: *fd (close it) and its size. */
int results_open(const char *dir, const char *id, const char *ext, int *fd, size_t *len,
                 ws_err *err);
/* The whole file into a new buffer (free()). */
int results_read(const char *dir, const char *id, const char *ext, uint8_t **data, size_t *len,
                 ws_err *err);
/* Removes the job's files (missing ones are not an error). */
void results_remove(const char *dir, const char *id);

#endif
