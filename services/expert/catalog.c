#include "services/expert/catalog.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "models/lora.h"

#define CATALOG_MAX 256

typedef struct entry {
  char name[64];
  dit_adapter *ad;
} entry;

struct expert_catalog {
  entry *e;
  int n;
};

static int name_ok(const char *s, size_t n) {
  if (n < 1 || n > 63) return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", s[i]))
      return 0;
  return 1;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

/* One file: its pairs as an unmerged adapter; keys the model lacks are logged. */
static int load_one(const char *path, dit_model *m, dit_adapter **out, ws_err *err) {
  lora_set *s = NULL;
  WS_TRY(lora_set_create(&s, err));
  int rc = lora_set_add(s, path, 1.0f, err);
  if (rc == WS_OK) rc = dit_adapter_create(m, s, out, err);
  if (rc == WS_OK) {
    char buf[400];
    int k = lora_unused_report(s, buf, sizeof buf, 3);
    if (k)
      WS_WARN("%s: %d key(s) not applied per request (no such block linear): %s", path, k, buf);
  }
  if (rc < 0) ws_wrap(err, "--lora-catalog");
  lora_set_free(s);
  return rc;
}

int expert_catalog_load(const char *dir, dit_model *m, expert_catalog **out, ws_err *err) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return ws_fail(err, WS_ENOTFOUND, "--lora-catalog %s: not a readable directory", dir);
  expert_catalog *c = calloc(1, sizeof *c);
  if (c) c->e = calloc(CATALOG_MAX, sizeof *c->e);
  int rc = c && c->e ? WS_OK : ws_fail(err, WS_ENOMEM, "out of memory");
  struct dirent *de;
  while (rc == WS_OK && (de = readdir(d))) {
    size_t len = strlen(de->d_name), ext = strlen(".safetensors");
    if (len <= ext || strcmp(de->d_name + len - ext, ".safetensors")) continue;
    if (!name_ok(de->d_name, len - ext)) {
      rc = ws_fail(err, WS_EINVAL, "--lora-catalog: '%s' is not a name of 1..63 [A-Za-z0-9._-]",
                   de->d_name);
      break;
    }
    if (c->n == CATALOG_MAX) {
      rc = ws_fail(err, WS_EINVAL, "--lora-catalog: more than %d adapters", CATALOG_MAX);
      break;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    entry *e = &c->e[c->n];
    snprintf(e->name, sizeof e->name, "%.*s", (int)(len - ext), de->d_name);
    rc = load_one(path, m, &e->ad, err);
    if (rc == WS_OK) c->n++;
  }
  closedir(d);
  if (rc < 0) {
    expert_catalog_free(c);
    return rc;
  }
  qsort(c->e, (size_t)c->n, sizeof *c->e, cmp_entry); /* a stable order for logs and Info */
  *out = c;
  return WS_OK;
}

void expert_catalog_free(expert_catalog *c) {
  if (!c) return;
  for (int i = 0; c->e && i < c->n; i++)
    dit_adapter_free(c->e[i].ad);
  free(c->e);
  free(c);
}

const dit_adapter *expert_catalog_find(const expert_catalog *c, const char *name) {
  for (int i = 0; c && i < c->n; i++)
    if (!strcmp(c->e[i].name, name)) return c->e[i].ad;
  return NULL;
}

int expert_catalog_count(const expert_catalog *c) { return c ? c->n : 0; }

const char *expert_catalog_names(const expert_catalog *c, char *buf, size_t n) {
  size_t len = 0;
  if (n) buf[0] = 0;
  for (int i = 0; c && i < c->n && len < n; i++) {
    int w = snprintf(buf + len, n - len, "%s%s", i ? "," : "", c->e[i].name);
    if (w > 0) len += (size_t)w;
  }
  return buf;
}
