/*
 * pub_line.h — the line protocol of `ringside-pub --stdin`, as pure functions (no I/O, no
 * allocation): one command a line, in words.
 *
 * Words are separated by spaces or tabs.  A word may contain "double-quoted" parts, in which
 * \n \r \t \e \\ \" and \xHH (two hex digits) are decoded, and 'single-quoted' parts taken
 * literally.  A quoted word is never an option.  Blank lines and lines whose first word starts
 * with # are skipped.  Commands are those of ringside-pub's argv, except that term takes the
 * bytes to write as a word (term TASK [--stderr] TEXT) instead of reading stdin.
 */
#ifndef RINGSIDE_PUB_LINE_H
#define RINGSIDE_PUB_LINE_H

#include <stddef.h>

#include "tools_args.h"

/* Longest accepted line, in bytes, without its newline. */
#define PUB_LINE_MAX 65536u
/* Most words on one line (term TASK --stderr TEXT is 4; progress with message 5). */
#define PUB_LINE_WORDS 8

/* Splits line (NUL-terminated; a trailing "\n" or "\r\n" is ignored) into at most max words,
 * decoding quotes in place.  words[i] point into line and are NUL-terminated; lens[i] is the
 * decoded length (a \x00 escape may put a NUL inside); quoted[i] is 1 when any part was quoted.
 * Returns the number of words (0 for a blank or comment line), or -1 with a one-line message
 * in err. */
int pub_line_split(char *line, const char **words, size_t *lens, int *quoted, int max, char *err,
                   size_t errlen);

/* Parses one line into *out, with out->common copied from *common.  Returns TOOLS_PARSE_OK (out->cmd
 * is PUB_CMD_NONE for a blank or comment line) or TOOLS_PARSE_USAGE with a one-line message.
 * Results point into line. */
tools_parse_result pub_line_parse(char *line, const tools_common *common, pub_args *out, char *err,
                                  size_t errlen);

#endif /* RINGSIDE_PUB_LINE_H */
