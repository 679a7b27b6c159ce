/* wanctl subcommand entry points; each returns the process exit status. */
#ifndef WS_WANCTL_H
#define WS_WANCTL_H

int tiny_main(int argc, char **argv);
int generate_main(int argc, char **argv);
int status_main(int argc, char **argv);
int rollout_main(int argc, char **argv);

#endif
