/* kindfile.h — rewrite the "tiers" block of a kind file (jobs/<kind>.json) in place of a user's hand,
 * and show the change as a unified diff. Used by `tierq calibrate --write DIR` and `--diff`.
 *
 * Only the value of the top-level "tiers" key changes: every other byte of the file (comments in
 * "description", key order, spacing) stays as the user wrote it. The new array keeps the old one's
 * layout: one tier per line at the first tier's indentation when the old array spanned lines, else
 * one line. A tier is {"model": M, "accept": A} with A printed as calibrate prints bars ("0.70");
 * the last tier has no accept (it is final). */
#ifndef TQ_KINDFILE_H
#define TQ_KINDFILE_H

#include "buf.h"
#include "err.h"

#include <stddef.h>

typedef struct KindFileTier {
    const char *model;
    double accept; /* ignored for the last tier */
    double agree;  /* accept_if_agrees, NAN for none */
} KindFileTier;

/* out = text[0..len) with its top-level "tiers" value replaced by the n tiers (1..8). Returns 0,
 * TQ_EINVAL (err: not a JSON object, or no "tiers" array) or TQ_ENOMEM. The result is checked to
 * parse as JSON before it is returned. */
int kindfile_replace_tiers(const char *text, size_t len, const KindFileTier *tiers, int n, Buf *out, TqErr *err);

/* A bar as a kind file holds it: at least two decimals, at most six, no trailing zeros beyond two
 * ("0.70", "0.85", "1.00", "0.025"). Returns out. */
const char *kindfile_fmt_bar(char *out, size_t cap, double v);

/* Read a kind file whole into out (initialised here, at most max bytes). Returns 0, or TQ_EIO / TQ_ELIMIT
 * with err naming the file; out is freed on failure. */
int kindfile_read(const char *path, unsigned max, Buf *out, TqErr *err);

/* Append to out a unified diff (one hunk, 3 lines of context) turning a into b, with headers
 * "--- path" and "+++ path" (apply with patch -p0: an absolute path under the current directory is
 * written relative to it, since patch -p0 refuses absolute names). Nothing when a and b are equal. Returns 0 or a
 * Buf error. */
int kindfile_unified_diff(const char *path, const char *a, size_t alen, const char *b, size_t blen, Buf *out);

#endif
