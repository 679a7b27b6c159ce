#include "gateway/http_params.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "gateway/http.h"

/* One value being read: from JSON (jv) or from a form field (text, or bin for a file part). */
typedef struct val {
  const char *name;
  const cJSON *jv;
  const char *text;
  const uint8_t *bin;
  size_t binlen;
} val;

static int get_str(const val *v, char **out, ws_err *err) {
  const char *s = v->text;
  if (v->jv) {
    if (!cJSON_IsString(v->jv)) return ws_fail(err, WS_EINVAL, "%s: must be a string", v->name);
    s = v->jv->valuestring;
  }
  if (!s) return ws_fail(err, WS_EINVAL, "%s: must be text", v->name);
  free(*out);
  *out = strdup(s);
  return *out ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
}

/* A number from JSON or from form text. JSON types are strict ("frames": "9" is refused as
 * "prompt": 5 is) except where the OpenAI API itself sends a string: text_ok lets a JSON string
 * holding a number through ("seconds": "4"). */
static int get_num_text(const val *v, int text_ok, double lo, double hi, double *out, ws_err *err) {
  double x;
  if (v->jv && cJSON_IsNumber(v->jv)) {
    x = v->jv->valuedouble;
  } else {
    const char *s =
        v->jv ? (cJSON_IsString(v->jv) && text_ok ? v->jv->valuestring : NULL) : v->text;
    if (!s) return ws_fail(err, WS_EINVAL, "%s: must be a number", v->name);
    char *end;
    errno = 0;
    x = strtod(s, &end);
    while (*end == ' ')
      end++;
    if (end == s || *end || errno)
      return ws_fail(err, WS_EINVAL, "%s: '%.40s' is not a number", v->name, s);
  }
  if (!isfinite(x) || x < lo || x > hi)
    return ws_fail(err, WS_EINVAL, "%s: %g is outside %g..%g", v->name, x, lo, hi);
  *out = x;
  return WS_OK;
}

static int get_num(const val *v, double lo, double hi, double *out, ws_err *err) {
  return get_num_text(v, 0, lo, hi, out, err);
}

static int get_int(const val *v, double lo, double hi, int64_t *out, ws_err *err) {
  double x;
  WS_TRY(get_num(v, lo, hi, &x, err));
  if (x != floor(x)) return ws_fail(err, WS_EINVAL, "%s: %g is not an integer", v->name, x);
  *out = (int64_t)x;
  return WS_OK;
}

static int get_int32(const val *v, int lo, int hi, int *out, ws_err *err) {
  int64_t x = 0; /* set on success; the zero quiets gcc's inlined-path warning */
  WS_TRY(get_int(v, lo, hi, &x, err));
  *out = (int)x;
  return WS_OK;
}

static int get_float(const val *v, double lo, double hi, float *out, ws_err *err) {
  double x;
  WS_TRY(get_num(v, lo, hi, &x, err));
  *out = (float)x;
  return WS_OK;
}

/* denoising_step_list: a JSON array of integers, or (a form field) the integers separated by
 * commas. Each entry is checked like any integer field; the list as a whole (decreasing, its
 * length against steps) by the router, as for gRPC requests. */
static int get_step_list(const val *v, job_params *p, ws_err *err) {
  int cap = (int)(sizeof p->step_list / sizeof *p->step_list);
  p->n_step_list = 0;
  if (v->jv && !cJSON_IsArray(v->jv))
    return ws_fail(err, WS_EINVAL, "%s: must be an array of integers", v->name);
  if (v->jv) {
    const cJSON *e;
    cJSON_ArrayForEach(e, v->jv) {
      if (p->n_step_list == cap)
        return ws_fail(err, WS_EINVAL, "%s: at most %d entries", v->name, cap);
      val ev = {.name = v->name, .jv = e};
      WS_TRY(get_int32(&ev, 1, 1000, &p->step_list[p->n_step_list++], err));
    }
    return WS_OK;
  }
  if (!v->text) return ws_fail(err, WS_EINVAL, "%s: must be text", v->name);
  char *copy = strdup(v->text), *save = NULL;
  if (!copy) return ws_fail(err, WS_ENOMEM, "out of memory");
  int rc = WS_OK;
  for (char *t = strtok_r(copy, ",", &save); t && rc == WS_OK; t = strtok_r(NULL, ",", &save)) {
    val ev = {.name = v->name, .text = t};
    rc = p->n_step_list == cap ? ws_fail(err, WS_EINVAL, "%s: at most %d entries", v->name, cap)
                               : get_int32(&ev, 1, 1000, &p->step_list[p->n_step_list++], err);
  }
  free(copy);
  return rc;
}

int http_base64_decode(const char *s, size_t n, uint8_t **out, size_t *outn, ws_err *err) {
  uint8_t *b = malloc(n / 4 * 3 + 3);
  if (!b) return ws_fail(err, WS_ENOMEM, "out of memory");
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d;
    if (c >= 'A' && c <= 'Z')
      d = c - 'A';
    else if (c >= 'a' && c <= 'z')
      d = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      d = c - '0' + 52;
    else if (c == '+' || c == '-')
      d = 62; /* '-' '_': the URL-safe alphabet too */
    else if (c == '/' || c == '_')
      d = 63;
    else if (c == '=') {
      pad++;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
      continue;
    else {
      free(b);
      return ws_fail(err, WS_EINVAL, "base64: unexpected character at offset %zu", i);
    }
    if (pad) {
      free(b);
      return ws_fail(err, WS_EINVAL, "base64: data after '=' padding");
    }
    acc = (acc << 6) | (uint32_t)d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      b[k++] = (uint8_t)(acc >> bits);
    }
  }
  if (bits >= 6) { /* a lone trailing 6-bit group cannot encode a byte */
    free(b);
    return ws_fail(err, WS_EINVAL, "base64: truncated data");
  }
  *out = b;
  *outn = k;
  return WS_OK;
}

/* image: JSON base64 text (optionally "data:image/png;base64,...") or a form file part. */
static int get_image(const val *v, job_params *p, ws_err *err) {
  free(p->image);
  p->image = NULL;
  p->image_len = 0;
  if (v->bin) {
    if (!v->binlen) return WS_OK; /* an empty file input: no image */
    p->image = malloc(v->binlen);
    if (!p->image) return ws_fail(err, WS_ENOMEM, "out of memory");
    memcpy(p->image, v->bin, v->binlen);
    p->image_len = v->binlen;
    return WS_OK;
  }
  const char *s = v->jv ? (cJSON_IsString(v->jv) ? v->jv->valuestring : NULL) : v->text;
  if (v->jv && cJSON_IsNull(v->jv)) return WS_OK;
  if (!s) return ws_fail(err, WS_EINVAL, "image: must be a base64 string or a data: URL");
  if (!strncmp(s, "data:", 5)) {
    const char *comma = strchr(s, ',');
    if (!comma || !strstr(s, ";base64") || strstr(s, ";base64") > comma)
      return ws_fail(err, WS_EINVAL,
                     "image: a data: URL must be base64 (data:image/png;base64,...)");
    s = comma + 1;
  }
  if (!*s) return WS_OK;
  int rc = http_base64_decode(s, strlen(s), &p->image, &p->image_len, err);
  if (rc < 0) return ws_wrap(err, "image");
  return WS_OK;
}

/* What the request said besides the direct fields, resolved after all fields are read. */
typedef struct extra {
  int has_size, has_wh, has_seconds, has_frames, has_guidance, has_gh, has_gl;
  double seconds;
  float guidance;
  char *task;
} extra;

static int set_field(job_params *p, extra *x, const val *v, ws_err *err) {
  const char *n = v->name;
  if (!strcmp(n, "prompt")) return get_str(v, &p->prompt, err);
  if (!strcmp(n, "negative_prompt")) return get_str(v, &p->negative, err);
  if (!strcmp(n, "model")) return get_str(v, &p->model, err);
  if (!strcmp(n, "task")) return get_str(v, &x->task, err);
  if (!strcmp(n, "image")) return get_image(v, p, err);
  if (!strcmp(n, "size")) {
    char *s = NULL;
    WS_TRY(get_str(v, &s, err));
    int w = 0, h = 0, used = 0;
    int ok = sscanf(s, "%5d%*[xX]%5d%n", &w, &h, &used) == 2 && !s[used] && w > 0 && h > 0;
    if (!ok) ws_fail(err, WS_EINVAL, "size: '%.40s' is not WIDTHxHEIGHT (e.g. 1280x720)", s);
    free(s);
    if (!ok) return WS_EINVAL;
    p->width = w;
    p->height = h;
    x->has_size = 1;
    return WS_OK;
  }
  if (!strcmp(n, "width") || !strcmp(n, "height")) {
    x->has_wh = 1;
    return get_int32(v, 1, 65535, n[0] == 'w' ? &p->width : &p->height, err);
  }
  if (!strcmp(n, "seconds")) {
    x->has_seconds = 1;
    return get_num_text(v, 1, 0.001, 3600, &x->seconds, err);
  }
  if (!strcmp(n, "frames")) {
    x->has_frames = 1;
    return get_int32(v, 1, 1000000, &p->frames, err);
  }
  if (!strcmp(n, "fps")) return get_int32(v, 1, 240, &p->fps, err);
  if (!strcmp(n, "steps")) return get_int32(v, 1, 100000, &p->steps, err);
  if (!strcmp(n, "seed")) return get_int(v, -1, 9007199254740991.0, &p->seed, err);
  if (!strcmp(n, "deadline_ms")) return get_int(v, 0, 9007199254740991.0, &p->deadline_ms, err);
  if (!strcmp(n, "guidance")) {
    x->has_guidance = 1;
    return get_float(v, 0, 1000, &x->guidance, err);
  }
  if (!strcmp(n, "guide_scale_high")) {
    x->has_gh = 1;
    return get_float(v, 0, 1000, &p->guide_high, err);
  }
  if (!strcmp(n, "guide_scale_low")) {
    x->has_gl = 1;
    return get_float(v, 0, 1000, &p->guide_low, err);
  }
  if (!strcmp(n, "shift")) return get_float(v, 0, 1000, &p->shift, err);
  if (!strcmp(n, "boundary")) return get_float(v, 0, 1, &p->boundary, err);
  if (!strcmp(n, "solver")) {
    char *s = NULL;
    WS_TRY(get_str(v, &s, err));
    p->solver = !strcmp(s, "unipc")                          ? 1
                : !strcmp(s, "dpmpp") || !strcmp(s, "dpm++") ? 2
                : !strcmp(s, "euler_distill")                ? 3
                                                             : 0;
    if (!p->solver) ws_fail(err, WS_EINVAL, "solver: '%.40s' (unipc|dpmpp|euler_distill)", s);
    free(s);
    return p->solver ? WS_OK : WS_EINVAL;
  }
  if (!strcmp(n, "denoising_step_list")) return get_step_list(v, p, err);
  if (!strcmp(n, "adapter_high") || !strcmp(n, "adapter_low"))
    return get_str(v, &p->adapter[n[8] == 'l'], err);
  if (!strcmp(n, "adapter_high_strength") || !strcmp(n, "adapter_low_strength"))
    return get_float(v, -100, 100, &p->adapter_s[n[8] == 'l'], err);
  if (!strcmp(n, "boundary_step_index")) return get_int32(v, 1, 1000, &p->boundary_step, err);
  return ws_fail(err, WS_EINVAL,
                 "unknown field '%.60s' (prompt, negative_prompt, image, task, size, seconds, "
                 "frames, fps, steps, seed, guidance, guide_scale_high, guide_scale_low, solver, "
                 "denoising_step_list, boundary_step_index, adapter_high, adapter_low, "
                 "adapter_high_strength, adapter_low_strength, shift, boundary, deadline_ms, "
                 "model)",
                 n);
}

static int finish(job_params *p, extra *x, ws_err *err) {
  int rc = WS_OK;
  if (!p->prompt || !p->prompt[0])
    rc = ws_fail(err, WS_EINVAL, "prompt: required");
  else if (x->has_size && x->has_wh)
    rc = ws_fail(err, WS_EINVAL, "size: give size or width/height, not both");
  else if (x->has_wh && (!p->width || !p->height))
    rc = ws_fail(err, WS_EINVAL, "width/height: give both");
  else if (x->has_seconds && x->has_frames)
    rc = ws_fail(err, WS_EINVAL, "seconds: give seconds or frames, not both");
  if (rc == WS_OK && x->has_seconds) { /* the model wants 4n+1 frames */
    double f = x->seconds * (p->fps ? p->fps : 16);
    p->frames = 4 * (int)llround(f / 4.0) + 1;
  }
  if (rc == WS_OK && x->has_guidance) { /* explicit per-expert scales win */
    if (!x->has_gh) p->guide_high = x->guidance;
    if (!x->has_gl) p->guide_low = x->guidance;
  }
  if (rc == WS_OK) {
    if (!x->task || !x->task[0])
      p->task = p->image ? 2 : 1;
    else if (!strcmp(x->task, "t2v"))
      p->task = 1;
    else if (!strcmp(x->task, "i2v"))
      p->task = 2;
    else
      rc = ws_fail(err, WS_EINVAL, "task: '%.40s' (t2v|i2v)", x->task);
  }
  free(x->task);
  return rc;
}

/* JSON text must be UTF-8 (RFC 8259), and no string may hold NUL: cJSON hands out C strings, so
 * "a red\u0000 fox" would silently become the prompt "a red". */
static int check_json_text(const char *b, size_t n, ws_err *err) {
  size_t bad = 0;
  if (memchr(b, 0, n)) return ws_fail(err, WS_EINVAL, "body: holds a NUL byte");
  if (!utf8_check(b, n, &bad))
    return ws_fail(err, WS_EINVAL, "body: not valid UTF-8 (byte %zu)", bad);
  for (size_t i = 0, in_str = 0; i < n; i++) {
    if (b[i] == '"') {
      in_str = !in_str;
    } else if (in_str && b[i] == '\\' && i + 1 < n) {
      if (b[i + 1] == 'u' && n - i >= 6 && !memcmp(b + i + 2, "0000", 4))
        return ws_fail(err, WS_EINVAL, "body: a string holds \\u0000 (NUL) at byte %zu", i);
      i++; /* the escaped character, so \" does not end the string */
    }
  }
  return WS_OK;
}

int job_params_from_json(const char *body, size_t len, job_params *p, ws_err *err) {
  memset(p, 0, sizeof *p);
  p->seed = -1;
  WS_TRY(check_json_text(body, len, err));
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (!root) {
    size_t off = end && end >= body ? (size_t)(end - body) : 0;
    return ws_fail(err, WS_EINVAL, "body: invalid JSON near byte %zu", off);
  }
  extra x = {0};
  int rc = WS_OK;
  if (!cJSON_IsObject(root)) rc = ws_fail(err, WS_EINVAL, "body: must be a JSON object");
  for (const cJSON *it = root->child; rc == WS_OK && it; it = it->next) {
    val v = {.name = it->string, .jv = it};
    rc = set_field(p, &x, &v, err);
  }
  if (rc == WS_OK)
    rc = finish(p, &x, err);
  else
    free(x.task);
  cJSON_Delete(root);
  return rc;
}

int job_params_from_form(const http_field *f, size_t n, job_params *p, ws_err *err) {
  memset(p, 0, sizeof *p);
  p->seed = -1;
  extra x = {0};
  int rc = WS_OK;
  for (size_t i = 0; i < n && rc == WS_OK; i++) {
    /* an empty text field means "not given" (an HTML form posts every input) */
    if (!f[i].is_file && !f[i].len) continue;
    char *text = NULL;
    if (!f[i].is_file) {
      text = malloc(f[i].len + 1);
      if (!text) {
        rc = ws_fail(err, WS_ENOMEM, "out of memory");
        break;
      }
      memcpy(text, f[i].data, f[i].len);
      text[f[i].len] = 0;
      size_t bad = 0;
      if (strlen(text) != f[i].len)
        rc = ws_fail(err, WS_EINVAL, "%s: contains NUL", f[i].name);
      else if (!utf8_check(text, f[i].len, &bad))
        rc = ws_fail(err, WS_EINVAL, "%s: not valid UTF-8 (byte %zu)", f[i].name, bad);
    }
    val v = {.name = f[i].name, .text = text};
    if (f[i].is_file) {
      v.bin = f[i].data ? f[i].data : (const uint8_t *)"";
      v.binlen = f[i].len;
    }
    if (rc == WS_OK && f[i].is_file && strcmp(f[i].name, "image"))
      rc = ws_fail(err, WS_EINVAL, "%s: only 'image' may be a file", f[i].name);
    if (rc == WS_OK) rc = set_field(p, &x, &v, err);
    free(text);
  }
  if (rc == WS_OK)
    rc = finish(p, &x, err);
  else
    free(x.task);
  return rc;
}

void job_params_free(job_params *p) {
  free(p->prompt);
  free(p->negative);
  free(p->model);
  free(p->image);
  free(p->adapter[0]);
  free(p->adapter[1]);
  memset(p, 0, sizeof *p);
}

/* ---------- the gateway's command-line flags (gateway/http.h) ---------- */

int http_flag(http_opts *o, int argc, char **argv, int i, ws_err *err) {
  const char *f = argv[i];
  if (strncmp(f, "--http-", 7) && strcmp(f, "--results-dir")) return 0;
  if (i + 1 >= argc) return ws_fail(err, WS_EINVAL, "%s needs a value", f);
  const char *v = argv[i + 1];
  struct {
    const char *name;
    char *dst;
    size_t n;
  } strs[] = {{"--http-listen", o->listen, sizeof o->listen},
              {"--http-addr-file", o->addr_file, sizeof o->addr_file},
              {"--http-tls-cert", o->tls_cert, sizeof o->tls_cert},
              {"--http-tls-key", o->tls_key, sizeof o->tls_key},
              {"--results-dir", o->results_dir, sizeof o->results_dir}};
  for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
    if (strcmp(f, strs[k].name)) continue;
    if (strlen(v) >= strs[k].n) return ws_fail(err, WS_EINVAL, "%s: value too long", f);
    snprintf(strs[k].dst, strs[k].n, "%s", v);
    return 2;
  }
  struct {
    const char *name;
    int *dst, lo, hi;
  } ints[] = {{"--http-keep-s", &o->keep_s, 1, 30 * 86400},
              {"--http-keep-mb", &o->keep_mb, 1, 1 << 20},
              {"--http-max-jobs", &o->max_jobs, 1, 100000},
              {"--http-max-body-mb", &o->max_body_mb, 1, 2047},
              {"--http-max-conns-per-ip", &o->max_conns_per_ip, 1, 256},
              {"--http-header-timeout-ms", &o->header_timeout_ms, 100, 3600000},
              {"--http-progress-ms", &o->progress_ms, 100, 3600000}};
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
    if (strcmp(f, ints[k].name)) continue;
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < ints[k].lo || x > ints[k].hi)
      return ws_fail(err, WS_EINVAL, "%s: '%s' is not an integer in %d..%d", f, v, ints[k].lo,
                     ints[k].hi);
    *ints[k].dst = (int)x;
    return 2;
  }
  return 0;
}
