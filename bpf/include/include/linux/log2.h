/* Empty: bcc's helpers.h includes <linux/log2.h> but uses nothing from it (it defines its own
 * bpf_log2), and neither does the program. */
