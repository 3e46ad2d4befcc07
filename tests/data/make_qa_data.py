#!/usr/bin/env python3
"""Build the question-answering workload (tests/data/qa.tsv) from Debian copyright files.

Provenance
----------
Every document is a whole /usr/share/doc/PACKAGE/copyright file of the machine that ran
this script (Debian 12 "bookworm", amd64) written in the machine-readable format
(DEP-5, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"):
stanzas with Upstream-Name, Source, Files, Copyright and License fields.  Debian
requires every package to ship this file and redistributes it in every source and
binary package, so the texts are freely redistributable with the packages.

Every question names its package and has a short answer (<= 80 characters) copied
verbatim from the document, found there at most MAX_OCCURRENCES times, so a
shortened document either still holds the answer or visibly lost it.

The output is committed, so the data set does not depend on this machine.  On the
same inputs the output is byte-for-byte identical: inputs are read in sorted order and
every random choice comes from random.Random(SEED).

Output (written next to this script unless --out-dir is given)
------
  qa.tsv      header `kind<TAB>prompt<TAB>context<TAB>expected`, then one question per
              line, fields escaped in PostgreSQL COPY text format (as demo.tsv); kind is
              `qa`, prompt the question, context the whole copyright file, expected the
              answer
  README.md   its section "Question answering: qa.tsv" (from that heading to the end) is
              rewritten; the part before it belongs to make_demo_data.py

Usage: python3 tests/data/make_qa_data.py [--doc-dir DIR] [--out-dir DIR]
Python 3 standard library only.
"""

import argparse
import hashlib
import os
import random
import sys

from make_demo_data import clean, copy_escape, parse_stanzas, table

SEED = 20240611
FORMAT_URL = "copyright-format/1.0"
MIN_CHARS = 6000           # ~1,500 tokens at 4 characters a token
MAX_CHARS = 32000          # ~8,000 tokens
MAX_DOCS = 72
MAX_TSV_BYTES = 2900000    # the whole file stays under ~3 MB
MAX_ANSWER = 80
MIN_ANSWER = 3
MAX_OCCURRENCES = 2        # an answer found more often than this is not asked
MAX_FILES_PATTERN = 60     # a Files value longer than this is not named in a question
QUESTIONS_SMALL = 5        # questions for a document under 9,000 characters
QUESTIONS_LARGE = 3        # and for one over 14,000 (4 between)
MAX_LARGE_DOCS = 10        # documents over 16,000 characters: they cost the most bytes per question

HERE = os.path.dirname(os.path.abspath(__file__))
README_HEADING = "## Question answering: qa.tsv"


def first_line(value):
    """The first non-empty line of a field value, stripped (with a comment's leading * or #)."""
    for line in value.split("\n"):
        line = line.strip().lstrip("*#").strip()
        if line:
            return line
    return ""


def files_pattern(value):
    """The Files value as one line (patterns joined by a space)."""
    return " ".join(value.split())


def read_documents(doc_dir):
    """Distinct machine-readable copyright files within the size bounds: a list of
    (package, text), the package being the first (by name) that ships that text."""
    seen = {}
    for name in sorted(os.listdir(doc_dir)):
        path = os.path.join(doc_dir, name, "copyright")
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            continue
        try:
            text = clean(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        if not text.startswith("Format:") or FORMAT_URL not in text.split("\n", 1)[0]:
            continue
        if not MIN_CHARS <= len(text) <= MAX_CHARS:
            continue
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        seen.setdefault(digest, (name, text))
    return sorted(seen.values())


def candidates(package, text):
    """Every question the document answers unambiguously: (type, prompt, answer)."""
    stanzas = parse_stanzas(text)
    lead = "In the Debian copyright file of package %s, " % package
    out = []
    header = stanzas[0] if stanzas else {}
    if header.get("Upstream-Name"):
        out.append(("upstream_name", lead + "what is the Upstream-Name?", first_line(header["Upstream-Name"])))
    if header.get("Source"):
        out.append(("source", lead + "what is the Source given for the upstream code?", first_line(header["Source"])))
    if header.get("Upstream-Contact"):
        out.append(("contact", lead + "who is the Upstream-Contact?", first_line(header["Upstream-Contact"])))
    files = [s for s in stanzas if "Files" in s]
    patterns = [files_pattern(s["Files"]) for s in files]
    for s, pattern in zip(files, patterns):
        if len(pattern) > MAX_FILES_PATTERN or patterns.count(pattern) != 1:
            continue
        if s.get("License"):
            out.append(("files_license", lead + "which license covers the files %s?" % pattern,
                        first_line(s["License"])))
        if s.get("Copyright"):
            out.append(("files_copyright", lead + "who holds the copyright of the files %s? "
                        "Give the first copyright line." % pattern, first_line(s["Copyright"])))
    # an answer inside its own question would be "received" even by a model sent no document
    return [(t, p, a) for t, p, a in out
            if MIN_ANSWER <= len(a) <= MAX_ANSWER and 1 <= text.count(a) <= MAX_OCCURRENCES and a not in p]


def choose(package, text, rng):
    """3..5 questions for one document, one per answer, spread over the question types."""
    cands = candidates(package, text)
    want = QUESTIONS_SMALL if len(text) < 9000 else QUESTIONS_LARGE if len(text) > 14000 else 4
    by_type = {}
    for c in cands:
        by_type.setdefault(c[0], []).append(c)
    for v in by_type.values():
        rng.shuffle(v)
    picked, answers = [], set()
    while len(picked) < want and any(by_type.values()):
        for t in sorted(by_type):  # round robin over types, so no type dominates a document
            if by_type[t] and len(picked) < want:
                c = by_type[t].pop()
                if c[2] not in answers:
                    answers.add(c[2])
                    picked.append(c)
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--doc-dir", default="/usr/share/doc")
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()

    rng = random.Random(SEED)
    docs = read_documents(args.doc_dir)
    n_found = len(docs)
    rng.shuffle(docs)
    rows, kept, size, n_large = [], [], len("kind\tprompt\tcontext\texpected\n"), 0
    for package, text in docs:
        qs = choose(package, text, rng)
        if len(qs) < 3 or len(kept) >= MAX_DOCS:
            continue
        if len(text) > 16000:
            if n_large >= MAX_LARGE_DOCS:
                continue
            n_large += 1
        cost = sum(len(copy_escape(text).encode("utf-8")) + len(p) + len(a) + 8 for _, p, a in qs)
        if size + cost > MAX_TSV_BYTES:
            continue
        size += cost
        kept.append((package, text, qs))
        rows.extend(("qa", p, text, a) for _, p, a in qs)
    rows.sort()
    prompts = [r[1] for r in rows]
    assert len(set(prompts)) == len(prompts), "duplicate question"
    for _, p, ctx, a in rows:
        assert a in ctx and 1 <= ctx.count(a) <= MAX_OCCURRENCES and len(a) <= MAX_ANSWER and a not in p, (p, a)

    tsv = os.path.join(args.out_dir, "qa.tsv")
    with open(tsv, "w", encoding="utf-8", newline="\n") as f:
        f.write("kind\tprompt\tcontext\texpected\n")
        for r in rows:
            f.write("\t".join(copy_escape(x) for x in r) + "\n")

    tokens = sorted((len(t.encode("utf-8")) + 3) // 4 for _, t, _ in kept)
    types = {}
    for _, _, qs in kept:
        for t, _, _ in qs:
            types[t] = types.get(t, 0) + 1
    once = sum(1 for r in rows if r[2].count(r[3]) == 1)
    report = "\n\n".join([
        "%d documents (of %d distinct machine-readable copyright files of %d..%d characters on the "
        "machine), %d questions; %d answers occur once in their document, %d twice."
        % (len(kept), n_found, MIN_CHARS, MAX_CHARS, len(rows), once, len(rows) - once),
        "Document size in tokens (bytes / 4, rounded up): min %d, median %d, max %d."
        % (tokens[0], tokens[len(tokens) // 2], tokens[-1]),
        "Questions per type:\n\n" + table(sorted(types.items()), ("type", "questions")),
        "qa.tsv: %d bytes, %d lines including the header." % (os.path.getsize(tsv), len(rows) + 1),
    ])
    print(report)
    write_readme(os.path.join(args.out_dir, "README.md"), README.format(report=report, seed=SEED))


def write_readme(path, section):
    """Replace the QA section of README.md (from its heading to the end), keeping the rest."""
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    at = old.find(README_HEADING)
    head = (old[:at] if at >= 0 else old).rstrip("\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write((head + "\n\n" if head else "") + section)


README = README_HEADING + """

`qa.tsv` holds question-answering jobs over long documents, the workload of context
compression (issue 10): each job's `context` is a whole document and its `prompt` a
question whose answer is a short string copied from that document. It is written by
`make_qa_data.py`; do not edit it by hand.

### Provenance

The documents are the machine-readable Debian copyright files
(`/usr/share/doc/PACKAGE/copyright`, format
<https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/>) of the same
Debian 12 "bookworm" (amd64) machine. Identical files shipped by several binary
packages are kept once, under the first package name; only UTF-8 files of 6,000 to
32,000 characters (~1,500 to ~8,000 tokens) are used, cleaned like demo.tsv (tabs
became spaces, other control characters dropped, trailing spaces removed).

License: Debian requires every package to carry this file and redistributes it in every
source and binary package of the archive; the files are the packagers' statements of
the upstream copyright and licenses and are redistributable with the packages. The
license texts quoted inside them are the upstream licenses themselves.

### Columns

`kind<TAB>prompt<TAB>context<TAB>expected`, PostgreSQL COPY text format with a header,
escaped as demo.tsv. Load it with

    \\copy staging(kind,prompt,context,expected) FROM 'qa.tsv' WITH (FORMAT text, HEADER true)

- `kind`: `qa`.
- `prompt`: the question; it names the package, so no two rows share a prompt.
- `context`: the whole copyright file (the same text for every question of a document).
- `expected`: the answer, at most 80 characters, found verbatim in the context once or
  twice (a question whose answer occurs more often is not asked) and never in the
  question itself.

| question | expected |
|----------|----------|
| `In the Debian copyright file of package P, what is the Upstream-Name?` | the header's Upstream-Name |
| `..., what is the Source given for the upstream code?` | the first line of the header's Source |
| `..., who is the Upstream-Contact?` | the first line of the header's Upstream-Contact |
| `..., which license covers the files F?` | the License short name of the Files stanza F |
| `..., who holds the copyright of the files F? Give the first copyright line.` | the first line of that stanza's Copyright |

F is the stanza's Files value on one line; stanzas whose Files value is longer than 60
characters or not unique in the file are not asked about. Per document 5 questions
(under 9,000 characters), 4 (up to 14,000) or 3 (larger), round robin over the
question types, one question per answer; documents are taken in random.Random({seed})
order, at most 10 of them over 16,000 characters, until 72 documents or ~2.9 MB.
Rows are sorted.

### Counts

{report}

### Regenerating

    python3 tests/data/make_qa_data.py

It rewrites `qa.tsv` and this section of the README and prints the counts above
(`--doc-dir` and `--out-dir` point it elsewhere).
"""


if __name__ == "__main__":
    sys.exit(main())
