/* http_params — the body of POST /v1/videos turned into the fields of a Router.Generate request.
 *
 * Accepted as JSON (application/json) or as form fields (multipart/form-data or
 * x-www-form-urlencoded, where every value is text and the image is a file part):
 *   prompt (required), negative_prompt, image (JSON: base64 or a data: URL; form: the file),
 *   task ("t2v" | "i2v"; default: i2v when an image is given), size ("WxH") or width + height,
 *   seconds (with fps, default 16: frames = 4*round(seconds*fps/4)+1) or frames, fps, steps,
 *   seed (-1 or absent = random), guidance (both experts) or guide_scale_high /
 *   guide_scale_low, adapter_high / adapter_low (names in the experts' --lora-catalog) with
 *   adapter_high_strength / adapter_low_strength, solver ("unipc" | "dpmpp" | "euler_distill"),
 *   denoising_step_list (JSON: an
 *   array of integers; form: "1000,750,500,250"), boundary_step_index, shift, boundary,
 *   deadline_ms, model (echoed, not used: the cluster serves what its experts load).
 * Checked here: JSON syntax, field names (an unknown field is an error: typos do not pass
 * silently), types and formats. Value ranges (sizes, frames 4n+1, step limits ...) are the
 * router's (models/genparams.h via Router.Generate), so both APIs answer with the same messages.
 * Every problem is WS_EINVAL naming the field.
 * The .c also holds http_flag (gateway/http.h), the gateway's command-line flags.
 */
#ifndef WS_GATEWAY_HTTP_PARAMS_H
#define WS_GATEWAY_HTTP_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct job_params {
  char *prompt, *negative, *model; /* owned; negative/model may be NULL */
  uint8_t *image;                  /* owned decoded bytes (PNG/JPEG), NULL for T2V */
  size_t image_len;
  int task;                                      /* 1 t2v, 2 i2v (never 0 after parsing) */
  int width, height, frames, fps, steps, solver; /* 0 = router default; solver 1 unipc 2 dpmpp,
                                                    3 euler_distill */
  int step_list[64], n_step_list; /* euler_distill's denoising_step_list (0 entries = default) */
  int boundary_step;              /* euler_distill's boundary_step_index, 0 = default */
  char *adapter[2];               /* adapter_high / adapter_low (owned, may be NULL) */
  float adapter_s[2];             /* their strengths, 0 = 1 */
  int64_t seed;                   /* -1 = random */
  float guide_high, guide_low, shift, boundary; /* 0 = default */
  int64_t deadline_ms;
} job_params;

/* A form field: name and raw value (file parts carry bytes, not NUL-terminated text). */
typedef struct http_field {
  char *name;
  uint8_t *data;
  size_t len;
  int is_file;
} http_field;

/* JSON body (len bytes, need not be NUL-terminated) -> *p (zeroed first; free with
 * job_params_free even on failure). */
int job_params_from_json(const char *body, size_t len, job_params *p, ws_err *err);
/* Form fields -> *p; same names and rules, values parsed from text. */
int job_params_from_form(const http_field *f, size_t n, job_params *p, ws_err *err);
void job_params_free(job_params *p);

/* Standard base64 (RFC 4648, padding optional, whitespace skipped) -> new buffer *out (free()).
 * WS_EINVAL for any other character. */
int http_base64_decode(const char *s, size_t n, uint8_t **out, size_t *outn, ws_err *err);

#endif
