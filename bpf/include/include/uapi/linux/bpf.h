/* Empty: bcc compiles every program with its own copy of the UAPI linux/bpf.h (the one its
 * front end and loader are built for), included first under the same include guard the kernel
 * source uses, so this file is never read. It exists so that #include <uapi/linux/bpf.h>
 * resolves. */
