/* preclean.h — the free clean-up of a long context before anyone pays to compress it (issue 10).
 *
 * Deterministic and cheap: markup tags removed (an HTML/XML tag: '<' then a letter, '/', '!' or '?',
 * up to the next '>' within 512 bytes on no '<'), the common entities decoded (&amp; &lt; &gt;
 * &quot; &#39; &apos; &nbsp;), runs of spaces and tabs collapsed to one space, spaces at line ends
 * cut, carriage returns dropped, more than one blank line in a row collapsed to one, and a line of
 * at least PRECLEAN_REPEAT_MIN characters that already appeared earlier dropped (a header, footer
 * or boilerplate paragraph repeated on every page). Short lines are kept even when repeated: in a
 * structured text ("License: GPL-2+" under each of several stanzas) they carry meaning by where they
 * stand. Valid UTF-8 stays valid: only ASCII bytes are removed or rewritten. */
#ifndef TQ_PRECLEAN_H
#define TQ_PRECLEAN_H

#include "buf.h"

#include <stddef.h>

#define PRECLEAN_REPEAT_MIN 40

/* Append the cleaned text of in[0..len) to out. Returns 0 or a Buf error (out restored). */
int preclean_context(const char *in, size_t len, Buf *out);

#endif
