#include "core/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Headers larger than this are refused before any allocation (real checkpoints use < 2 MB). */
#define ST_MAX_HEADER (100u << 20)

struct st_file {
  char *path;
  uint8_t *map; /* whole file, read-only */
  size_t map_len;
  const uint8_t *data; /* start of the data region */
  uint64_t data_len;
  st_info *infos;
  int n;
  cJSON *meta; /* copy of "__metadata__" (NULL when absent or not an object) */
};

const char *st_path(const st_file *f) { return f->path; }
int st_count(const st_file *f) { return f->n; }
const st_info *st_info_at(const st_file *f, int i) {
  return i >= 0 && i < f->n ? &f->infos[i] : NULL;
}

static int cmp_by_begin(const void *a, const void *b) {
  const st_info *x = *(const st_info *const *)a, *y = *(const st_info *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static int parse_u64(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (d < 0 || d > 9007199254740992.0 || d != (double)(uint64_t)d) return -1;
  *out = (uint64_t)d;
  return 0;
}

/* Fills info from one header entry; every failure names the tensor. */
static int parse_entry(const st_file *f, const cJSON *e, st_info *info, ws_err *err) {
  const char *name = e->string;
  if (!cJSON_IsObject(e))
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' entry is not an object", f->path, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' lacks dtype/shape/data_offsets", f->path,
                   name);
  int d = ws_dtype_parse(dt->valuestring);
  if (d < 0)
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' has unsupported dtype '%s'", f->path, name,
                   dt->valuestring);
  info->dtype = (ws_dtype)d;
  int nd = cJSON_GetArraySize(sh);
  if (nd > WS_MAX_DIMS)
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' has rank %d > %d", f->path, name, nd,
                   WS_MAX_DIMS);
  info->ndim = nd;
  for (int i = 0; i < nd; i++) {
    uint64_t v;
    if (parse_u64(cJSON_GetArrayItem(sh, i), &v) || v > (uint64_t)INT64_MAX)
      return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' has a bad shape entry", f->path, name);
    info->shape[i] = (int64_t)v;
  }
  if (cJSON_GetArraySize(off) != 2 || parse_u64(cJSON_GetArrayItem(off, 0), &info->begin) ||
      parse_u64(cJSON_GetArrayItem(off, 1), &info->end) || info->end < info->begin)
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' has bad data_offsets", f->path, name);
  ws_err e2;
  if (ws_shape_check(info->shape, nd, info->dtype, &e2) < 0)
    return ws_fail(err, WS_EFORMAT, "%s: tensor '%s': %s", f->path, name, e2.msg);
  uint64_t want = (uint64_t)ws_shape_numel(info->shape, nd) * ws_dtype_size(info->dtype);
  if (info->end - info->begin != want) {
    char sb[96];
    return ws_fail(
        err, WS_EFORMAT, "%s: tensor '%s' shape %s %s needs %llu bytes but data_offsets span %llu",
        f->path, name, ws_shape_str(info->shape, nd, sb, sizeof sb), ws_dtype_name(info->dtype),
        (unsigned long long)want, (unsigned long long)(info->end - info->begin));
  }
  if (info->end > f->data_len)
    return ws_fail(err, WS_EFORMAT,
                   "%s: tensor '%s' data_offsets [%llu, %llu) exceed the data region (%llu bytes)",
                   f->path, name, (unsigned long long)info->begin, (unsigned long long)info->end,
                   (unsigned long long)f->data_len);
  info->name = strdup(name);
  return info->name ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
}

static int parse_header(st_file *f, const char *json, size_t len, ws_err *err) {
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root) return ws_fail(err, WS_EFORMAT, "%s: header is not valid JSON", f->path);
  int rc = WS_OK;
  if (!cJSON_IsObject(root)) {
    rc = ws_fail(err, WS_EFORMAT, "%s: header is not a JSON object", f->path);
    goto out;
  }
  int total = cJSON_GetArraySize(root);
  f->infos = calloc((size_t)(total ? total : 1), sizeof *f->infos);
  if (!f->infos) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto out;
  }
  const cJSON *e;
  cJSON_ArrayForEach(e, root) {
    if (!strcmp(e->string, "__metadata__")) {
      if (cJSON_IsObject(e) && !f->meta) f->meta = cJSON_Duplicate(e, 1);
      continue;
    }
    for (int i = 0; i < f->n; i++)
      if (!strcmp(f->infos[i].name, e->string)) {
        rc = ws_fail(err, WS_EFORMAT, "%s: tensor '%s' appears twice", f->path, e->string);
        goto out;
      }
    rc = parse_entry(f, e, &f->infos[f->n], err);
    if (rc < 0) goto out;
    f->n++;
  }
  /* Overlap check over tensors sorted by start offset (empty tensors never overlap). */
  const st_info **order = malloc(sizeof *order * (size_t)(f->n ? f->n : 1));
  if (!order) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto out;
  }
  int m = 0;
  for (int i = 0; i < f->n; i++)
    if (f->infos[i].end > f->infos[i].begin) order[m++] = &f->infos[i];
  qsort(order, (size_t)m, sizeof *order, cmp_by_begin);
  for (int i = 1; i < m; i++)
    if (order[i]->begin < order[i - 1]->end) {
      rc = ws_fail(err, WS_EFORMAT, "%s: tensors '%s' and '%s' overlap", f->path,
                   order[i - 1]->name, order[i]->name);
      break;
    }
  free(order);
out:
  cJSON_Delete(root);
  return rc;
}

int st_open(const char *path, st_file **out, ws_err *err) {
  *out = NULL;
  st_file *f = calloc(1, sizeof *f);
  if (!f) return ws_fail(err, WS_ENOMEM, "out of memory");
  int rc = WS_OK, fd = -1;
  f->path = strdup(path);
  if (!f->path) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto fail;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = ws_fail(err, errno == ENOENT ? WS_ENOTFOUND : WS_EIO, "%s: cannot open: %s", path,
                 strerror(errno));
    goto fail;
  }
  struct stat stt;
  if (fstat(fd, &stt) < 0 || !S_ISREG(stt.st_mode)) {
    rc = ws_fail(err, WS_EIO, "%s: not a regular file", path);
    goto fail;
  }
  f->map_len = (size_t)stt.st_size;
  if (f->map_len < 8) {
    rc = ws_fail(err, WS_EFORMAT, "%s: file of %zu bytes is too short for a safetensors header",
                 path, f->map_len);
    goto fail;
  }
  f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
  if (f->map == MAP_FAILED) {
    f->map = NULL;
    rc = ws_fail(err, WS_EIO, "%s: mmap failed: %s", path, strerror(errno));
    goto fail;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | f->map[i];
  if (hlen > f->map_len - 8 || hlen > ST_MAX_HEADER) {
    rc = ws_fail(err, WS_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes)", path,
                 (unsigned long long)hlen, f->map_len);
    goto fail;
  }
  f->data = f->map + 8 + hlen;
  f->data_len = f->map_len - 8 - hlen;
  rc = parse_header(f, (const char *)f->map + 8, (size_t)hlen, err);
  if (rc < 0) goto fail;
  close(fd);
  *out = f;
  return WS_OK;
fail:
  if (fd >= 0) close(fd);
  st_close(f);
  return rc;
}

void st_close(st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  for (int i = 0; i < f->n; i++)
    free(f->infos[i].name);
  free(f->infos);
  cJSON_Delete(f->meta);
  free(f->path);
  free(f);
}

const char *st_metadata(const st_file *f, const char *key) {
  const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

const st_info *st_find(const st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->infos[i].name, name)) return &f->infos[i];
  return NULL;
}

int st_get(const st_file *f, const char *name, ws_tensor *view, ws_err *err) {
  const st_info *in = st_find(f, name);
  if (!in) return ws_fail(err, WS_ENOTFOUND, "%s: no tensor '%s'", f->path, name);
  ws_tensor_view(view, in->dtype, in->shape, in->ndim, (void *)(f->data + in->begin));
  return WS_OK;
}

int st_get_f32(const st_file *f, const char *name, ws_tensor *out, ws_err *err) {
  ws_tensor v;
  WS_TRY(st_get(f, name, &v, err));
  return ws_tensor_to_f32(out, &v, err);
}

/* ---- writer ---- */

int st_write(const char *path, int n, const char *const *names, const ws_tensor *const *tensors,
             ws_err *err) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return ws_fail(err, WS_ENOMEM, "out of memory");
  uint64_t off = 0;
  int rc = WS_OK;
  char *json = NULL;
  FILE *fp = NULL;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  for (int i = 0; i < n; i++) {
    const ws_tensor *t = tensors[i];
    cJSON *e = cJSON_AddObjectToObject(root, names[i]);
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddStringToObject(e, "dtype", ws_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
    uint64_t nb = ws_tensor_nbytes(t);
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nb)));
    off += nb;
  }
  json = cJSON_PrintUnformatted(root);
  if (!json) {
    rc = ws_fail(err, WS_ENOMEM, "out of memory");
    goto out;
  }
  size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7; /* 8-byte aligned data region */
  fp = fopen(tmp, "wb");
  if (!fp) {
    rc = ws_fail(err, WS_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    goto out;
  }
  uint8_t hl[8];
  for (int i = 0; i < 8; i++)
    hl[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  int ok = fwrite(hl, 1, 8, fp) == 8 && fwrite(json, 1, jl, fp) == jl;
  for (size_t i = jl; ok && i < padded; i++)
    ok = fputc(' ', fp) != EOF;
  for (int i = 0; ok && i < n; i++) {
    size_t nb = ws_tensor_nbytes(tensors[i]);
    ok = !nb || fwrite(tensors[i]->data, 1, nb, fp) == nb;
  }
  if (fclose(fp) != 0) ok = 0;
  fp = NULL;
  if (!ok || rename(tmp, path) != 0) {
    rc = ws_fail(err, WS_EIO, "%s: write failed: %s", path, strerror(errno));
    unlink(tmp);
  }
out:
  free(json);
  cJSON_Delete(root);
  return rc;
}

/* ---- sharded sets ---- */

struct st_set {
  st_file **files;
  int nfiles;
  /* flat list of (file, info) in file order, for iteration and lookup */
  const st_info **infos;
  int *owner;
  int n;
};

static int set_add_file(st_set *s, const char *path, ws_err *err) {
  for (int i = 0; i < s->nfiles; i++)
    if (!strcmp(st_path(s->files[i]), path)) return i;
  st_file **nf = realloc(s->files, sizeof *nf * (size_t)(s->nfiles + 1));
  if (!nf) return ws_fail(err, WS_ENOMEM, "out of memory");
  s->files = nf;
  WS_TRY(st_open(path, &s->files[s->nfiles], err));
  return s->nfiles++;
}

static int set_index(st_set *s, ws_err *err) {
  int total = 0;
  for (int i = 0; i < s->nfiles; i++)
    total += st_count(s->files[i]);
  s->infos = calloc((size_t)(total ? total : 1), sizeof *s->infos);
  s->owner = calloc((size_t)(total ? total : 1), sizeof *s->owner);
  if (!s->infos || !s->owner) return ws_fail(err, WS_ENOMEM, "out of memory");
  for (int i = 0; i < s->nfiles; i++)
    for (int j = 0; j < st_count(s->files[i]); j++) {
      s->infos[s->n] = st_info_at(s->files[i], j);
      s->owner[s->n++] = i;
    }
  return WS_OK;
}

static int read_small_file(const char *path, char **out, ws_err *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 65536 + 1 > cap) {
      cap = cap ? cap * 2 : 131072;
      if (cap > (256u << 20)) {
        free(buf);
        fclose(fp);
        return ws_fail(err, WS_EFORMAT, "%s: file too large", path);
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(fp);
        return ws_fail(err, WS_ENOMEM, "out of memory");
      }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, 65536, fp);
    len += r;
    if (r < 65536) break;
  }
  fclose(fp);
  buf[len] = 0;
  *out = buf;
  return WS_OK;
}

static int open_index(st_set *s, const char *index_path, ws_err *err) {
  char *text = NULL;
  WS_TRY(read_small_file(index_path, &text, err));
  cJSON *root = cJSON_Parse(text);
  free(text);
  if (!root) return ws_fail(err, WS_EFORMAT, "%s: not valid JSON", index_path);
  int rc = WS_OK;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(wm)) {
    rc = ws_fail(err, WS_EFORMAT, "%s: no \"weight_map\" object", index_path);
    goto out;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", index_path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[1] = 0;
  else
    dir[0] = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, wm) {
    if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || !e->valuestring[0]) {
      rc = ws_fail(err, WS_EFORMAT, "%s: bad shard name for '%s'", index_path, e->string);
      goto out;
    }
    char p[4096 + 256];
    snprintf(p, sizeof p, "%s%s", dir, e->valuestring);
    int fi = set_add_file(s, p, err);
    if (fi < 0) {
      rc = fi;
      goto out;
    }
    if (!st_find(s->files[fi], e->string)) {
      rc = ws_fail(err, WS_EFORMAT, "%s: index maps '%s' to %s, which lacks it", index_path,
                   e->string, e->valuestring);
      goto out;
    }
  }
out:
  cJSON_Delete(root);
  return rc;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

int st_set_open(const char *path, st_set **out, ws_err *err) {
  *out = NULL;
  st_set *s = calloc(1, sizeof *s);
  if (!s) return ws_fail(err, WS_ENOMEM, "out of memory");
  int rc = ends_with(path, ".index.json") ? open_index(s, path, err) : set_add_file(s, path, err);
  if (rc >= 0) rc = set_index(s, err);
  if (rc < 0) {
    st_set_close(s);
    return rc;
  }
  *out = s;
  return WS_OK;
}

int st_set_open_dir(const char *dir, st_set **out, ws_err *err) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open directory: %s", dir, strerror(errno));
  char index[4096] = "", single[4096] = "";
  int nsingle = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (ends_with(de->d_name, ".safetensors.index.json"))
      snprintf(index, sizeof index, "%s/%s", dir, de->d_name);
    else if (ends_with(de->d_name, ".safetensors") && nsingle++ == 0)
      snprintf(single, sizeof single, "%s/%s", dir, de->d_name);
  }
  closedir(d);
  if (index[0]) return st_set_open(index, out, err);
  if (nsingle == 1) return st_set_open(single, out, err);
  if (nsingle == 0)
    return ws_fail(err, WS_ENOTFOUND, "%s: no *.safetensors or *.safetensors.index.json", dir);
  return ws_fail(err, WS_EFORMAT, "%s: %d *.safetensors files but no index.json to say which", dir,
                 nsingle);
}

void st_set_close(st_set *s) {
  if (!s) return;
  for (int i = 0; i < s->nfiles; i++)
    st_close(s->files[i]);
  free(s->files);
  free(s->infos);
  free(s->owner);
  free(s);
}

static int set_lookup(const st_set *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->infos[i]->name, name)) return i;
  return -1;
}

const st_info *st_set_find(const st_set *s, const char *name) {
  int i = set_lookup(s, name);
  return i < 0 ? NULL : s->infos[i];
}

int st_set_get(const st_set *s, const char *name, ws_tensor *view, ws_err *err) {
  int i = set_lookup(s, name);
  if (i < 0)
    return ws_fail(err, WS_ENOTFOUND, "no tensor '%s' in %s%s", name,
                   s->nfiles ? st_path(s->files[0]) : "(empty set)",
                   s->nfiles > 1 ? " and its sibling shards" : "");
  return st_get(s->files[s->owner[i]], name, view, err);
}

int st_set_get_f32(const st_set *s, const char *name, ws_tensor *out, ws_err *err) {
  ws_tensor v;
  WS_TRY(st_set_get(s, name, &v, err));
  return ws_tensor_to_f32(out, &v, err);
}

const char *st_set_metadata(const st_set *s, const char *key) {
  for (int i = 0; i < s->nfiles; i++) {
    const char *v = st_metadata(s->files[i], key);
    if (v) return v;
  }
  return NULL;
}

int st_set_count(const st_set *s) { return s->n; }
const st_info *st_set_info_at(const st_set *s, int i) {
  return i >= 0 && i < s->n ? s->infos[i] : NULL;
}
