/* Empty: bcc's helpers.h includes <asm/page.h> for PAGE_SIZE, used only by its perf ring
 * buffer macros, which the program does not use; a use would fail to compile, loudly. */
