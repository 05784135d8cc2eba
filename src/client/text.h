/* Text helpers of the client that touch no terminal and no socket: making received text safe to
 * print. Kept apart so they can be unit-tested alone. */
#ifndef PARLEY_CLIENT_TEXT_H
#define PARLEY_CLIENT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Copies `len` bytes at `s` into `out` (capacity `cap`, at least 1), NUL-terminated, so that the
 * copy is safe to write to a terminal: printable ASCII and well-formed UTF-8 without control
 * characters are kept, every other byte (C0 and C1 controls, ESC, DEL, broken UTF-8) becomes
 * '?', and so does each invisible format character that could reorder or hide text
 * (bidirectional controls U+202A-U+202E and U+2066-U+2069, U+200B-U+200F and their kin; see
 * is_format_char()). The copy is never longer than the input; it is cut at `cap - 1` bytes on
 * a character boundary. Returns the length of the copy. */
size_t text_sanitize(const char *s, size_t len, char *out, size_t cap);

/* Returns true when the `n` bytes at `a` and `b` are equal, in time independent of where they
 * differ (for secrets). */
bool text_secret_eq(const char *a, const char *b, size_t n);

/* Returns true when `s` is a P2P session secret: exactly 32 hexadecimal digits. */
bool text_is_secret(const char *s, size_t len);

#endif
