/*
 * utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF).
 * Pure function over (buf, len); fuzzed.
 */
#ifndef RINGSIDE_UTF8_H
#define RINGSIDE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid sequence starting at s (1..4), or 0 if s does not start one within n. */
size_t utf8_seq_len(const uint8_t *s, size_t n);

/* 1 if all len bytes are valid UTF-8. */
int utf8_valid(const uint8_t *s, size_t len);

#endif
