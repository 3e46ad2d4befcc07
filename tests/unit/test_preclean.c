/* The free clean-up of contexts: markup, entities, blanks, repeated long lines; short repeated lines
 * and UTF-8 kept. */
#include "../check.h"
#include "preclean.h"

#include <stdio.h>
#include <string.h>

static void clean(const char *in, char *out, size_t cap)
{
    Buf b;
    buf_init(&b, 0);
    CHECK_INT(preclean_context(in, strlen(in), &b), 0);
    snprintf(out, cap, "%s", b.data ? b.data : "");
    buf_free(&b);
}

static void test_markup_entities_blanks(void)
{
    char out[1024];
    clean("<html><body><p>Fish &amp; chips</p>\r\n<p>cost   &lt;5&gt;\t euros  </p></body></html>", out, sizeof out);
    CHECK_STR(out, "Fish & chips\ncost <5> euros");
    /* a lone '<' or a comparison is not a tag, nor an address in angle brackets */
    clean("if a < b and c > d then 3<4", out, sizeof out);
    CHECK_STR(out, "if a < b and c > d then 3<4");
    clean("Upstream-Contact: Jane Doe <jane@example.org>, see <https://example.org/x>", out, sizeof out);
    CHECK_STR(out, "Upstream-Contact: Jane Doe <jane@example.org>, see <https://example.org/x>");
    clean("<!-- note --><a href=\"x\">link</a><br/>", out, sizeof out);
    CHECK_STR(out, "link");
    clean("\n\n\nfirst\n\n\n\nsecond\n\n", out, sizeof out);
    CHECK_STR(out, "first\n\nsecond");
    clean("Grüße   aus   Köln — ok", out, sizeof out);
    CHECK_STR(out, "Grüße aus Köln — ok");
}

static void test_repeated_lines(void)
{
    char out[2048];
    /* a long repeated line (a page footer) goes; short structural lines stay */
    clean("Files: a/*\nLicense: GPL-2+\n\nCopyright 2020 The Example Project, all rights reserved.\n"
          "Files: b/*\nLicense: GPL-2+\n\nCopyright 2020 The Example Project, all rights reserved.\nend",
          out, sizeof out);
    CHECK_STR(out, "Files: a/*\nLicense: GPL-2+\n\nCopyright 2020 The Example Project, all rights reserved.\n"
                   "Files: b/*\nLicense: GPL-2+\n\nend");
    /* the same line with other spacing is the same line once cleaned */
    clean("This sentence is quite long enough to count as boilerplate.\n"
          "This   sentence is quite long enough to count as boilerplate.   \nx", out, sizeof out);
    CHECK_STR(out, "This sentence is quite long enough to count as boilerplate.\nx");
}

static void test_empty_and_all_markup(void)
{
    char out[64];
    clean("", out, sizeof out);
    CHECK_STR(out, "");
    clean("<br/><hr>  \n \n", out, sizeof out);
    CHECK_STR(out, "");
}

int main(void)
{
    RUN(test_markup_entities_blanks);
    RUN(test_repeated_lines);
    RUN(test_empty_and_all_markup);
    return check_done();
}
