/* wanctl subcommand entry points; each returns the process exit status. */
#ifndef WS_WANCTL_H
#define WS_WANCTL_H

#include <stdio.h>

int tiny_main(int argc, char **argv);
int generate_main(int argc, char **argv);
int status_main(int argc, char **argv);
int rollout_main(int argc, char **argv);

/* The usage of subcommand `cmd` ("rollout", ...; NULL: wanctl's own) on fp. `wanctl CMD --help`
 * prints it on stdout (exit 0); a subcommand's usage error prints it on stderr (exit 2). */
void wanctl_usage(const char *cmd, FILE *fp);

#endif
