/* wanctl — the wanserve command line: model tooling and cluster control. */
#include <stdio.h>
#include <string.h>

#include "cli/genopts.h"
#include "cli/golden.h"
#include "cli/wanctl.h"

static const struct {
  const char *cmd, *text;
} usages[] = {
    {"check-golden", "usage: wanctl check-golden [--backend cpu|cuda] [--device N] "
                     "[--tolerance-floor X] [--implemented-only] DIR...\n"
                     "  runs reference cases (a case folder or a folder of cases); "
                     "--tolerance-floor X\n"
                     "  compares with rel-L2 max(case tolerance, X), for a backend in a reduced\n"
                     "  serving precision (WANSERVE_CUDA_PRECISION=bf16: 1e-2)\n"},
    {"make-tiny-model", "usage: wanctl make-tiny-model DIR [--seed N] [--i2v] [--dim N --heads N "
                        "--layers N --ffn N]\n"
                        "  writes a deterministic tiny random Wan2.2 checkpoint\n"},
    {"status", "usage: wanctl status [--etcd ENDPOINTS] [--tls-ca PEM [--tls-cert PEM --tls-key "
               "PEM]]\n"
               "  instances per role (version, address, load), rollouts, pool sizing\n"},
    {"rollout", "usage: wanctl rollout set ROLE --canary V --percent P [--stable V] "
                "[--mode split|shadow] [--force] [--etcd E]\n"
                "       (a stable version no live replica runs is refused without --force)\n"
                "       wanctl rollout clear ROLE [--etcd E]\n"
                "       wanctl rollout status ROLE [--threshold X] [--etcd E]   (exit 3: FAIL)\n"
                "       (with a TLS etcd: --tls-ca PEM [--tls-cert PEM --tls-key PEM])\n"},
};

void wanctl_usage(const char *cmd, FILE *fp) {
  if (cmd && !strcmp(cmd, "generate")) {
    genopts_usage(fp);
    return;
  }
  for (size_t i = 0; cmd && i < sizeof usages / sizeof usages[0]; i++)
    if (!strcmp(usages[i].cmd, cmd)) {
      fputs(usages[i].text, fp);
      return;
    }
  fprintf(fp, "usage: wanctl <command> [args]   (wanctl <command> --help for its flags)\n");
  for (size_t i = 0; i < sizeof usages / sizeof usages[0]; i++)
    fprintf(fp, "  %s\n", usages[i].text + 14); /* without "usage: wanctl " */
  fprintf(fp, "  generate [--local --model DIR | --router ADDR] --prompt TEXT [options]\n");
}

static int wants_help(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    wanctl_usage(NULL, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *cmd = argv[1];
  if (wants_help(argc - 2, argv + 2)) { /* the same for every subcommand: stdout, exit 0 */
    wanctl_usage(cmd, stdout);
    return 0;
  }
  if (!strcmp(cmd, "check-golden")) return golden_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "make-tiny-model")) return tiny_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "generate")) return generate_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "status")) return status_main(argc - 2, argv + 2);
  if (!strcmp(cmd, "rollout")) return rollout_main(argc - 2, argv + 2);
  fprintf(stderr, "wanctl: unknown command '%s'\n", cmd);
  wanctl_usage(NULL, stderr);
  return 2;
}
