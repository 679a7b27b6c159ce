/* wanctl — the wanserve command line: model tooling and cluster control. */
#include <stdio.h>
#include <string.h>

#include "cli/golden.h"
#include "cli/wanctl.h"

static void usage(FILE *fp) {
  fprintf(fp, "usage: wanctl <command> [args]\n"
              "  check-golden [--backend cpu|cuda] [--implemented-only] DIR...\n"
              "                     run reference cases (a case folder or a folder of cases)\n"
              "  make-tiny-model DIR [--seed N] [--i2v]\n"
              "                     write a deterministic tiny random Wan2.2 checkpoint\n"
              "  generate [--local --model DIR | --router ADDR] --prompt TEXT [options]\n"
              "                     generate a video (see wanctl generate --help)\n"
              "  status [--etcd ENDPOINTS] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]\n"
              "                     instances per role (version, address, load)\n"
              "  rollout set ROLE --canary V --percent P [--stable V] [--mode split|shadow]\n"
              "  rollout clear ROLE         roll back to stable\n"
              "  rollout status ROLE [--threshold X]  shadow differences and a verdict\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "check-golden")) return golden_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "make-tiny-model")) return tiny_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "generate")) return generate_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "status")) return status_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "rollout")) return rollout_main(argc - 2, argv + 2);
  fprintf(stderr, "wanctl: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
