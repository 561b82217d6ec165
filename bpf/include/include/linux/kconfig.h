/* Stands in for the kernel's include/linux/kconfig.h, which bcc force-includes (and whose
 * presence tells bcc this directory is a usable kernel tree). The kernel's version pulls in the
 * build's generated/autoconf.h; the only option bcc's helpers.h checks is CONFIG_BPF_SYSCALL,
 * true on every kernel that can load the program at all. */
#ifndef L2ANNOUNCER_KCONFIG_H
#define L2ANNOUNCER_KCONFIG_H
#define CONFIG_BPF_SYSCALL 1
#endif
