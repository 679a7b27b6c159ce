#include "core/weights.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fp8.h"
#include "core/pth.h"

struct wt_source {
  char *path;
  st_set *st;    /* safetensors (single, sharded or directory) */
  pth_file *pth; /* PyTorch zip checkpoint (.pth); exactly one of st/pth is set */
  int n_fp8;     /* FP8 weights (dequantized by wt_get_f32) */
};

static int src_count(const void *s) { return wt_count(s); }
static const st_info *src_info_at(const void *s, int i) { return wt_info_at(s, i); }
static const st_info *src_find(const void *s, const char *name) { return wt_find(s, name); }

/* The stored values widened to F32, no checkpoint scale applied. */
static int get_raw(const void *src, const char *name, ws_tensor *out, ws_err *err) {
  const wt_source *w = src;
  if (w->pth) return pth_get_f32(w->pth, name, out, err);
  return st_set_get_f32(w->st, name, out, err);
}

static fp8_reader reader_of(const wt_source *w) {
  return (fp8_reader){.src = w,
                      .path = w->path,
                      .count = src_count,
                      .info_at = src_info_at,
                      .find = src_find,
                      .get_raw = get_raw,
                      .quant_meta =
                          w->st ? st_set_metadata(w->st, "_quantization_metadata") : NULL};
}

/* .pth branch (core/pth.h): a path ending in ".pth", or a directory holding no safetensors and
 * exactly one *.pth file. Returns 1 and fills *pth_path when the .pth reader applies. */
static int wt_pth_path(const char *path, int is_dir, char *pth_path, size_t n) {
  size_t len = strlen(path);
  if (!is_dir) {
    if (len < 4 || strcmp(path + len - 4, ".pth")) return 0;
    snprintf(pth_path, n, "%s", path);
    return 1;
  }
  DIR *d = opendir(path);
  if (!d) return 0;
  int npth = 0, nst = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 12 && strstr(de->d_name, ".safetensors")) nst++;
    if (l > 4 && !strcmp(de->d_name + l - 4, ".pth") && npth++ == 0)
      snprintf(pth_path, n, "%s/%s", path, de->d_name);
  }
  closedir(d);
  return nst == 0 && npth == 1;
}

int wt_open(const char *path, wt_source **out, ws_err *err) {
  *out = NULL;
  struct stat sb;
  if (stat(path, &sb) < 0) return ws_fail(err, WS_ENOTFOUND, "%s: no such file or directory", path);
  wt_source *w = calloc(1, sizeof *w);
  if (!w) return ws_fail(err, WS_ENOMEM, "out of memory");
  w->path = strdup(path);
  char pth_path[4096];
  int rc;
  if (wt_pth_path(path, S_ISDIR(sb.st_mode), pth_path, sizeof pth_path))
    rc = pth_open(pth_path, &w->pth, err);
  else
    rc = S_ISDIR(sb.st_mode) ? st_set_open_dir(path, &w->st, err) : st_set_open(path, &w->st, err);
  /* FP8 layouts are checked once here, so a malformed scale fails the open, not a later get. */
  if (rc >= 0) {
    fp8_reader r = reader_of(w);
    rc = fp8_check(&r, &w->n_fp8, err);
  }
  if (rc < 0) {
    wt_close(w);
    return rc;
  }
  *out = w;
  return WS_OK;
}

void wt_close(wt_source *w) {
  if (!w) return;
  st_set_close(w->st);
  pth_close(w->pth);
  free(w->path);
  free(w);
}

const char *wt_path(const wt_source *w) { return w->path; }

const st_info *wt_find(const wt_source *w, const char *name) {
  return w->pth ? pth_find(w->pth, name) : st_set_find(w->st, name);
}

int wt_get_f32(const wt_source *w, const char *name, ws_tensor *out, ws_err *err) {
  WS_TRY(get_raw(w, name, out, err));
  const st_info *in = wt_find(w, name);
  if (!in || (!fp8_is_fp8(in->dtype) && in->dtype != WS_U8)) return WS_OK;
  fp8_reader r = reader_of(w);
  int rc = fp8_dequant(&r, in, out, err);
  if (rc < 0) ws_tensor_free(out);
  return rc;
}

int wt_fp8_count(const wt_source *w) { return w->n_fp8; }

int wt_get_f32_shape(const wt_source *w, const char *name, const int64_t *shape, int ndim,
                     ws_tensor *out, ws_err *err) {
  const st_info *in = wt_find(w, name);
  if (!in) return ws_fail(err, WS_ENOTFOUND, "%s: missing weight '%s'", w->path, name);
  if (in->ndim != ndim || memcmp(in->shape, shape, sizeof(int64_t) * (size_t)ndim)) {
    char a[96], b[96];
    return ws_fail(err, WS_EFORMAT, "%s: weight '%s' has shape %s, expected %s", w->path, name,
                   ws_shape_str(in->shape, in->ndim, a, sizeof a),
                   ws_shape_str(shape, ndim, b, sizeof b));
  }
  return wt_get_f32(w, name, out, err);
}

int wt_count(const wt_source *w) { return w->pth ? pth_count(w->pth) : st_set_count(w->st); }
const st_info *wt_info_at(const wt_source *w, int i) {
  return w->pth ? pth_info_at(w->pth, i) : st_set_info_at(w->st, i);
}
