#include "tests/testlib.h"

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
