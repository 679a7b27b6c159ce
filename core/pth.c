/* pth — PyTorch zip checkpoint reader. See pth.h for the format and the contract. */
#include "core/pth.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "core/pickle.h"

int pth_check_pickle(const void *buf, size_t n, int *n_tensors, ws_err *err) {
  pk_machine m;
  int rc = pk_exec(&m, buf, n, err);
  if (rc == 0 && n_tensors) *n_tensors = (int)(m.result->n / 2);
  pk_free(&m);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Zip access. libzip reads the archive from our mapping through a function source; the source
 * records where reads land, which is how the data offset of a STORED entry is found (libzip has
 * no public call for it).
 */
typedef struct zsrc {
  const uint8_t *base;
  uint64_t size, pos;
  int track;
  uint64_t first_read;
  zip_error_t error;
} zsrc;

static zip_int64_t zsrc_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd) {
  zsrc *s = ud;
  switch (cmd) {
  case ZIP_SOURCE_OPEN: s->pos = 0; return 0;
  case ZIP_SOURCE_READ: {
    uint64_t n = s->pos < s->size ? s->size - s->pos : 0;
    if (len < n) n = len;
    if (s->track && s->first_read == UINT64_MAX) s->first_read = s->pos;
    if (n) memcpy(data, s->base + s->pos, n);
    s->pos += n;
    return (zip_int64_t)n;
  }
  case ZIP_SOURCE_CLOSE: return 0;
  case ZIP_SOURCE_STAT: {
    zip_stat_t *st = data;
    if (len < sizeof *st) return -1;
    zip_stat_init(st);
    st->size = s->size;
    st->valid |= ZIP_STAT_SIZE;
    return sizeof *st;
  }
  case ZIP_SOURCE_ERROR: return zip_error_to_data(&s->error, data, len);
  case ZIP_SOURCE_FREE: return 0;
  case ZIP_SOURCE_SEEK: {
    zip_int64_t np = zip_source_seek_compute_offset(s->pos, s->size, data, len, &s->error);
    if (np < 0) return -1;
    s->pos = (uint64_t)np;
    return 0;
  }
  case ZIP_SOURCE_TELL: return (zip_int64_t)s->pos;
  case ZIP_SOURCE_SUPPORTS:
    return zip_source_make_command_bitmap(
        ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR,
        ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL, ZIP_SOURCE_SUPPORTS, -1);
  default: zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0); return -1;
  }
}

typedef struct pth_tensor {
  st_info info;
  const uint8_t *data; /* first byte of the tensor */
} pth_tensor;

struct pth_file {
  char *path;
  uint8_t *map;
  size_t map_size;
  pth_tensor *t;
  int n;
  void **owned; /* inflated storages */
  int n_owned;
};

void pth_close(pth_file *f) {
  if (!f) return;
  for (int i = 0; i < f->n; i++)
    free(f->t[i].info.name);
  free(f->t);
  for (int i = 0; i < f->n_owned; i++)
    free(f->owned[i]);
  free(f->owned);
  if (f->map) munmap(f->map, f->map_size);
  free(f->path);
  free(f);
}

/* Reads a whole entry into an owned buffer (libzip inflates and checks its CRC). */
static int zip_read_all(zip_t *za, zip_uint64_t idx, uint64_t size, uint8_t **out, const char *path,
                        const char *name, ws_err *err) {
  *out = NULL;
  if (size > ((uint64_t)1 << 40))
    return ws_fail(err, WS_EFORMAT, "%s: entry '%s' claims %llu bytes", path, name,
                   (unsigned long long)size);
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return ws_fail(err, WS_ENOMEM, "%s: out of memory for '%s'", path, name);
  zip_file_t *zf = zip_fopen_index(za, idx, 0);
  if (!zf) {
    free(buf);
    return ws_fail(err, WS_EFORMAT, "%s: cannot open entry '%s': %s", path, name, zip_strerror(za));
  }
  uint64_t got = 0;
  while (got < size) {
    zip_int64_t r = zip_fread(zf, buf + got, size - got);
    if (r <= 0) {
      int rc = ws_fail(err, WS_EFORMAT,
                       "%s: reading entry '%s' failed after %llu of %llu bytes: %s", path, name,
                       (unsigned long long)got, (unsigned long long)size, zip_file_strerror(zf));
      zip_fclose(zf);
      free(buf);
      return rc;
    }
    got += (uint64_t)r;
  }
  zip_fclose(zf);
  *out = buf;
  return 0;
}

/* Finds where a STORED entry's bytes lie in the mapping. */
static int zip_stored_offset(zip_t *za, zsrc *src, zip_uint64_t idx, uint64_t size, uint64_t *off,
                             const char *path, const char *name, ws_err *err) {
  uint8_t probe[16];
  size_t k = size < sizeof probe ? (size_t)size : sizeof probe;
  *off = 0;
  if (!k) return 0;
  zip_file_t *zf = zip_fopen_index(za, idx, ZIP_FL_COMPRESSED);
  if (!zf)
    return ws_fail(err, WS_EFORMAT, "%s: cannot open entry '%s': %s", path, name, zip_strerror(za));
  src->track = 1;
  src->first_read = UINT64_MAX;
  zip_int64_t r = zip_fread(zf, probe, k);
  src->track = 0;
  zip_fclose(zf);
  uint64_t o = src->first_read;
  if (r != (zip_int64_t)k || o == UINT64_MAX || o > src->size || size > src->size - o ||
      memcmp(src->base + o, probe, k))
    return ws_fail(err, WS_EFORMAT, "%s: entry '%s' (%llu bytes) does not lie inside the file",
                   path, name, (unsigned long long)size);
  *off = o;
  return 0;
}

/* Resolves every storage referenced by the root dict to its bytes. */
static int pth_resolve(pth_file *f, zip_t *za, zsrc *src, const pk_machine *m, const char *prefix,
                       ws_err *err) {
  const pv *root = m->result;
  size_t nt = root->n / 2;
  f->t = calloc(nt ? nt : 1, sizeof *f->t);
  f->owned = calloc(nt ? nt : 1, sizeof *f->owned);
  if (!f->t || !f->owned) return ws_fail(err, WS_ENOMEM, "%s: out of memory", f->path);
  char ename[1024];
  for (size_t i = 0; i < nt; i++) {
    const char *tname = root->items[2 * i]->s;
    pv *t = root->items[2 * i + 1];
    pv *st = t->storage;
    size_t es = ws_dtype_size(st->dt);
    if (!st->data && st->i > 0) {
      snprintf(ename, sizeof ename, "%s/data/%s", prefix, st->s);
      zip_int64_t idx = zip_name_locate(za, ename, ZIP_FL_ENC_RAW);
      if (idx < 0)
        return ws_fail(err, WS_EFORMAT, "%s: tensor '%s': storage entry '%s' is missing", f->path,
                       tname, ename);
      zip_stat_t zs;
      if (zip_stat_index(za, (zip_uint64_t)idx, 0, &zs) < 0 || !(zs.valid & ZIP_STAT_SIZE) ||
          !(zs.valid & ZIP_STAT_COMP_METHOD))
        return ws_fail(err, WS_EFORMAT, "%s: cannot stat '%s': %s", f->path, ename,
                       zip_strerror(za));
      if ((uint64_t)st->i > zs.size / es)
        return ws_fail(err, WS_EFORMAT,
                       "%s: tensor '%s': storage '%s' holds %llu bytes, the "
                       "pickle claims %lld elements of %zu bytes",
                       f->path, tname, ename, (unsigned long long)zs.size, (long long)st->i, es);
      if (zs.comp_method == ZIP_CM_STORE) {
        uint64_t off;
        WS_TRY(zip_stored_offset(za, src, (zip_uint64_t)idx, zs.size, &off, f->path, ename, err));
        st->data = src->base + off;
      } else {
        uint8_t *buf;
        WS_TRY(zip_read_all(za, (zip_uint64_t)idx, zs.size, &buf, f->path, ename, err));
        f->owned[f->n_owned++] = buf;
        st->data = buf;
      }
      st->nbytes = zs.size;
    }
    pth_tensor *pt = &f->t[f->n];
    pt->info.name = strdup(tname);
    if (!pt->info.name) return ws_fail(err, WS_ENOMEM, "%s: out of memory", f->path);
    f->n++;
    pt->info.dtype = t->dt;
    pt->info.ndim = t->ndim;
    memcpy(pt->info.shape, t->shape, sizeof t->shape);
    uint64_t nbytes = (uint64_t)ws_shape_numel(t->shape, t->ndim) * es;
    pt->info.begin = (uint64_t)t->offset * es;
    pt->info.end = pt->info.begin + nbytes;
    if (nbytes && pt->info.end > st->nbytes) /* pk_reduce checked numel; this checks the entry */
      return ws_fail(err, WS_EFORMAT, "%s: tensor '%s' reaches past its storage", f->path, tname);
    pt->data = st->data ? st->data + pt->info.begin : NULL;
  }
  return 0;
}

/* Maps the whole file read-only at f->map (the descriptor is not kept). */
static int map_file(pth_file *f, const char *path, ws_err *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ws_fail(err, WS_ENOTFOUND, "%s: cannot open", path);
  struct stat sb;
  int rc = WS_OK;
  if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
    rc = ws_fail(err, WS_EIO, "%s: not a regular file", path);
  } else if (sb.st_size < 22) {
    rc = ws_fail(err, WS_EFORMAT, "%s: %lld bytes is too short for a zip archive", path,
                 (long long)sb.st_size);
  } else {
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
      f->map = NULL;
      rc = ws_fail(err, WS_EIO, "%s: mmap failed", path);
    }
  }
  close(fd);
  return rc;
}

/* Opens the zip over the mapping; *za owns the source from then on. */
static int open_zip(zsrc *src, const char *path, zip_t **za, ws_err *err) {
  zip_error_t zerr;
  zip_error_init(&zerr);
  int rc = WS_OK;
  zip_source_t *zs = zip_source_function_create(zsrc_cb, src, &zerr);
  if (!zs) {
    rc = ws_fail(err, WS_ENOMEM, "%s: libzip source: %s", path, zip_error_strerror(&zerr));
  } else if (!(*za = zip_open_from_source(zs, ZIP_RDONLY | ZIP_CHECKCONS, &zerr))) {
    zip_source_free(zs);
    rc = ws_fail(err, WS_EFORMAT, "%s: not a valid zip archive: %s", path,
                 zip_error_strerror(&zerr));
  }
  zip_error_fini(&zerr);
  return rc;
}

/* The one <prefix>/data.pkl entry: its index, and the top folder's name in prefix. */
static int find_pickle(zip_t *za, const char *path, char *prefix, size_t cap, zip_int64_t *idx,
                       ws_err *err) {
  zip_int64_t ne = zip_get_num_entries(za, 0);
  *idx = -1;
  for (zip_int64_t i = 0; i < ne; i++) {
    const char *nm = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
    if (!nm) continue;
    const char *slash = strchr(nm, '/');
    if (!slash || strcmp(slash, "/data.pkl")) continue;
    if (*idx >= 0)
      return ws_fail(err, WS_EFORMAT, "%s: more than one data.pkl in the archive", path);
    size_t pl = (size_t)(slash - nm);
    if (pl >= cap) return ws_fail(err, WS_EFORMAT, "%s: top folder name too long", path);
    memcpy(prefix, nm, pl);
    prefix[pl] = 0;
    *idx = i;
  }
  if (*idx < 0)
    return ws_fail(err, WS_EFORMAT, "%s: no <folder>/data.pkl entry: not a PyTorch checkpoint",
                   path);
  return WS_OK;
}

/* <prefix>/byteorder, when present, must say "little" (the tensors are read as they lie). */
static int check_byteorder(zip_t *za, const char *prefix, const char *path, ws_err *err) {
  char bo_name[600];
  snprintf(bo_name, sizeof bo_name, "%s/byteorder", prefix);
  zip_int64_t bo = zip_name_locate(za, bo_name, ZIP_FL_ENC_RAW);
  if (bo < 0) return WS_OK;
  zip_stat_t bst;
  uint8_t *bbuf = NULL;
  if (zip_stat_index(za, (zip_uint64_t)bo, 0, &bst) < 0 || bst.size > 16)
    return ws_fail(err, WS_EFORMAT, "%s: bad byteorder entry", path);
  WS_TRY(zip_read_all(za, (zip_uint64_t)bo, bst.size, &bbuf, path, bo_name, err));
  int little = bst.size == 6 && !memcmp(bbuf, "little", 6);
  free(bbuf);
  if (!little) return ws_fail(err, WS_EUNSUPPORTED, "%s: byteorder is not 'little'", path);
  return WS_OK;
}

/* Reads data.pkl into *pkl (caller frees) and runs it on m. */
static int run_pickle(zip_t *za, zip_int64_t idx, const char *path, pk_machine *m, uint8_t **pkl,
                      ws_err *err) {
  zip_stat_t pst;
  if (zip_stat_index(za, (zip_uint64_t)idx, 0, &pst) < 0 || !(pst.valid & ZIP_STAT_SIZE))
    return ws_fail(err, WS_EFORMAT, "%s: cannot stat data.pkl", path);
  WS_TRY(zip_read_all(za, (zip_uint64_t)idx, pst.size, pkl, path, "data.pkl", err));
  int rc = pk_exec(m, *pkl, pst.size, err);
  if (rc < 0) ws_wrap(err, "%s: data.pkl", path);
  return rc;
}

int pth_open(const char *path, pth_file **out, ws_err *err) {
  *out = NULL;
  zip_t *za = NULL;
  uint8_t *pkl = NULL;
  pk_machine m;
  memset(&m, 0, sizeof m);
  zsrc src;
  memset(&src, 0, sizeof src);
  zip_error_init(&src.error);
  pth_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return ws_fail(err, WS_ENOMEM, "out of memory");
  }
  char prefix[512] = "";
  zip_int64_t pkl_idx = -1;
  int rc = map_file(f, path, err);
  if (rc == WS_OK) {
    src.base = f->map;
    src.size = f->map_size;
    rc = open_zip(&src, path, &za, err);
  }
  if (rc == WS_OK) rc = find_pickle(za, path, prefix, sizeof prefix, &pkl_idx, err);
  if (rc == WS_OK) rc = check_byteorder(za, prefix, path, err);
  if (rc == WS_OK) rc = run_pickle(za, pkl_idx, path, &m, &pkl, err);
  if (rc == WS_OK) rc = pth_resolve(f, za, &src, &m, prefix, err);
  pk_free(&m);
  free(pkl);
  if (za) zip_discard(za); /* also frees the source */
  zip_error_fini(&src.error);
  if (rc < 0) {
    pth_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

int pth_count(const pth_file *f) { return f->n; }
const char *pth_path(const pth_file *f) { return f->path; }

const st_info *pth_info_at(const pth_file *f, int i) {
  return i >= 0 && i < f->n ? &f->t[i].info : NULL;
}

static const pth_tensor *pth_lookup(const pth_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->t[i].info.name, name)) return &f->t[i];
  return NULL;
}

const st_info *pth_find(const pth_file *f, const char *name) {
  const pth_tensor *t = pth_lookup(f, name);
  return t ? &t->info : NULL;
}

int pth_get(const pth_file *f, const char *name, ws_tensor *view, ws_err *err) {
  const pth_tensor *t = pth_lookup(f, name);
  if (!t) return ws_fail(err, WS_ENOTFOUND, "%s: no tensor '%s'", f->path, name);
  ws_tensor_view(view, t->info.dtype, t->info.shape, t->info.ndim, (void *)t->data);
  return 0;
}

int pth_get_f32(const pth_file *f, const char *name, ws_tensor *out, ws_err *err) {
  ws_tensor v;
  WS_TRY(pth_get(f, name, &v, err));
  return ws_tensor_to_f32(out, &v, err);
}
