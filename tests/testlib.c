#include "tests/testlib.h"

#include <cjson/cJSON.h>
#include <dirent.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failed_checks, test_n_pass, test_n_fail;

int test_summary(void) { return test_n_fail ? 1 : 0; }

const char *test_golden_root(void) {
  const char *g = getenv("WS_GOLDEN_DIR");
  if (g && *g) return g;
  g = getenv("WS_EXTRA_GOLDEN");
  struct stat sb;
  if (g && *g && stat(g, &sb) == 0) return g;
  return stat("../shared/golden", &sb) == 0 ? "../shared/golden" : "tests/golden";
}

const char *test_tmpdir(void) {
  static char dir[512];
  if (!dir[0]) {
    const char *b = getenv("BUILD");
    snprintf(dir, sizeof dir, "%s/tmp/t%d", b ? b : "build", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", dir);
  }
  return dir;
}

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return cJSON_Parse(buf);
}

int test_for_each_case(const char *kind, void (*fn)(const char *, const cJSON *)) {
  DIR *d = opendir(test_golden_root());
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/%s", test_golden_root(), de->d_name);
    snprintf(p, sizeof p, "%s/case.json", dir);
    cJSON *j = read_json(p);
    if (!j) continue;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "kind");
    if (cJSON_IsString(k) && !strcmp(k->valuestring, kind)) {
      fn(dir, j);
      n++;
    }
    cJSON_Delete(j);
  }
  closedir(d);
  return n;
}
