/* wanctl subcommand entry points; each returns the process exit status. */
#ifndef WS_WANCTL_H
#define WS_WANCTL_H

int tiny_main(int argc, char **argv);

#endif
