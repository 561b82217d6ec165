/* The kernel's own linux/types.h, reduced to what bcc's helpers.h uses: the UAPI types plus the
 * kernel's short names for them (u8 ... s64, size_t, uintptr_t). As in a kernel tree, <linux/types.h> finds this
 * file before include/uapi/linux/types.h. */
#ifndef L2ANNOUNCER_LINUX_TYPES_H
#define L2ANNOUNCER_LINUX_TYPES_H
#include <uapi/linux/types.h>
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __kernel_size_t size_t;
typedef unsigned long uintptr_t;
#endif
