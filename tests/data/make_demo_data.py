#!/usr/bin/env python3
"""Build the tierq demo workload (tests/data/demo.tsv) from Debian package metadata.

Provenance
----------
Every prompt and expected answer is real text taken from the Debian package
metadata of the machine that ran this script (Debian 12 "bookworm", amd64):

  * /var/lib/dpkg/status -- the installed packages, with full long descriptions,
    Section and Priority;
  * /var/lib/apt/lists/*_Packages.lz4 -- the apt package lists of bookworm,
    bookworm-updates and bookworm-security (main, binary-amd64): Package, Section
    and the one-line synopsis of every package in the archive.  The lists are
    decompressed with `/usr/lib/apt/apt-helper cat-file`, so no lz4 tool is needed.

Debian package descriptions are part of the packages' metadata and are
redistributed by Debian in every mirror's Packages and Translation files.

The output is committed, so the demo does not depend on this machine's package
lists; rerunning the script on another machine (other packages installed, newer
apt lists) gives a different, equally valid file.  On the same inputs the output
is byte-for-byte identical: inputs are parsed into sorted structures and every
random choice comes from random.Random(SEED).

Output (written next to this script unless --out-dir is given)
------
  demo.tsv              header `kind<TAB>prompt<TAB>expected`, then one job per line,
                        fields escaped in PostgreSQL COPY text format; load with
                        \\copy staging(kind,prompt,expected) FROM 'demo.tsv' WITH (FORMAT text, HEADER true)
  classify_labels.txt   the label set of the classify rows, sorted, one per line
  README.md             provenance, columns, per-kind counts, label distribution

Kinds
-----
  classify   "Package: NAME\\nDescription: SYNOPSIS" -> archive section (apt lists)
  summarize  "Package: NAME\\n\\nLONG DESCRIPTION"   -> the synopsis (dpkg status)
  simple     priority question + name/section/synopsis -> Priority (dpkg status)
  chat       "What does the Debian package NAME do?" -> the synopsis (apt lists)

Usage: python3 tests/data/make_demo_data.py [--status FILE] [--lists-dir DIR] [--out-dir DIR]
Python 3 standard library only.
"""

import argparse
import collections
import glob
import os
import random
import re
import subprocess
import sys

SEED = 20240611

N_CLASSIFY = 1100
N_SUMMARIZE = 700
N_SIMPLE = 400
N_CHAT = 350

CLASSIFY_MAX_LABELS = 30      # keep the most common sections, at most this many
CLASSIFY_MIN_PER_LABEL = 15   # every kept label gets at least this many rows
CLASSIFY_ALPHA = 0.5          # rows per label ~ (packages in section) ** ALPHA
CLASSIFY_MAX_SHARE = 0.35     # sanity bound on the most common label

SUMMARIZE_MIN_CHARS = 200     # long descriptions shorter than this are skipped

PRIORITIES = ("required", "important", "standard", "optional", "extra")

# chat asks what a package does: skip sections and name patterns whose packages
# are plumbing (libraries, headers, debug symbols, documentation, data files).
CHAT_SKIP_SECTIONS = {"libs", "libdevel", "oldlibs", "debug", "doc", "introspection",
                      "metapackages", "tasks", "localization", "fonts"}
CHAT_SKIP_NAME = re.compile(r"(^lib|-dev$|-doc$|-dbg$|-data$|-common$|-l10n|-i18n|"
                            r"^r-cran-|^r-bioc-|^golang-|^librust-|^node-|^python3?-|"
                            r"^ruby-|^php-|^lua-|^elpa-|^texlive-|^fonts-|^firmware-|"
                            r"^linux-(image|headers|modules)|^haskell-|^ocaml-|^cl-)")

# C0 controls except newline, DEL, C1 controls; tab is mapped to a space first.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

HERE = os.path.dirname(os.path.abspath(__file__))
QA_HEADING = "## Question answering: qa.tsv"  # the README section written by make_qa_data.py


def clean(text):
    """Normalise line ends, turn tabs into spaces, drop other control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = CONTROL.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def copy_escape(field):
    """Escape one field for PostgreSQL COPY text format."""
    return (field.replace("\\", "\\\\").replace("\t", "\\t")
            .replace("\n", "\\n").replace("\r", "\\r"))


def parse_stanzas(text):
    """Parse deb822 text into a list of {field: value} dicts.

    A value keeps its continuation lines, joined with '\\n' and still carrying
    their leading space, exactly as in the file."""
    stanzas = []
    cur = {}
    last = None
    for line in text.split("\n"):
        if not line.strip():
            if cur:
                stanzas.append(cur)
            cur, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                cur[last] += "\n" + line
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            cur[last] = value.strip()
    if cur:
        stanzas.append(cur)
    return stanzas


def split_description(value):
    """Return (synopsis, long description) of a Description field value.

    Long description: continuation lines without their first space; a line " ."
    is a paragraph separator and becomes an empty line."""
    lines = value.split("\n")
    synopsis = clean(lines[0]).strip()
    body = []
    for line in lines[1:]:
        line = line[1:] if line[:1] in (" ", "\t") else line
        body.append("" if line.strip() == "." else line)
    return synopsis, clean("\n".join(body))


def strip_area(section):
    """'contrib/utils' -> 'utils', 'non-free/net' -> 'net'."""
    return section.split("/", 1)[1] if "/" in section else section


def read_status(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        stanzas = parse_stanzas(f.read())
    pkgs = {}
    for st in stanzas:
        if "installed" not in st.get("Status", "").split()[-1:]:
            continue
        name = st.get("Package")
        if not name or "Description" not in st:
            continue
        synopsis, long_desc = split_description(st["Description"])
        rec = {"name": name, "section": strip_area(st.get("Section", "")),
               "priority": st.get("Priority", ""), "synopsis": synopsis, "long": long_desc}
        # several architectures of one package: keep the longest description
        old = pkgs.get(name)
        if old is None or (len(rec["long"]), rec["synopsis"]) > (len(old["long"]), old["synopsis"]):
            pkgs[name] = rec
    return pkgs


def list_order(path):
    """bookworm first, then -updates, then -security: later ones override."""
    base = os.path.basename(path)
    return ("-security_" in base, "-updates_" in base, base)


def read_apt_lists(lists_dir):
    files = sorted(glob.glob(os.path.join(lists_dir, "*_Packages.lz4")) +
                   glob.glob(os.path.join(lists_dir, "*_Packages")), key=list_order)
    if not files:
        sys.exit("no *_Packages lists in %s" % lists_dir)
    pkgs = {}
    for path in files:
        if path.endswith(".lz4"):
            text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], check=True,
                                  stdout=subprocess.PIPE).stdout.decode("utf-8", "replace")
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        for st in parse_stanzas(text):
            name, section = st.get("Package"), st.get("Section")
            if not name or not section or "Description" not in st:
                continue
            synopsis, _ = split_description(st["Description"])
            if synopsis:
                pkgs[name] = {"name": name, "section": strip_area(section),
                              "priority": st.get("Priority", ""), "synopsis": synopsis}
    return files, pkgs


def release_info(lists_dir, files):
    """One line per package list: file name and Suite/Version/Date of its InRelease."""
    out = []
    for path in files:
        base = os.path.basename(path)
        rel = os.path.join(lists_dir, base.split("_main_")[0] + "_InRelease")
        fields = {}
        if os.path.exists(rel):
            with open(rel, encoding="utf-8", errors="replace") as f:
                for line in f:   # the release fields, inside the PGP-signed message
                    if line.startswith(("MD5Sum:", "SHA256:", "-----BEGIN PGP SIGNATURE")):
                        break
                    k, sep, v = line.partition(":")
                    if sep and not line[:1].isspace():
                        fields.setdefault(k, v.strip())
        out.append("%s (%s)" % (base, ", ".join(
            "%s %s" % (k, fields[k]) for k in ("Codename", "Version", "Date") if k in fields)))
    return out


def allocate(counts, total, alpha, floor):
    """Split `total` rows over labels ~ count**alpha, at least `floor`, at most count."""
    weights = {k: c ** alpha for k, c in counts.items()}
    alloc = {k: floor for k in counts}
    rest = total - floor * len(counts)
    wsum = sum(weights.values())
    exact = {k: rest * w / wsum for k, w in weights.items()}
    for k in counts:
        alloc[k] += int(exact[k])
    # largest remainders get the leftover rows (ties by label name)
    left = total - sum(alloc.values())
    for k in sorted(counts, key=lambda k: (-(exact[k] - int(exact[k])), k))[:left]:
        alloc[k] += 1
    for k in counts:
        alloc[k] = min(alloc[k], counts[k])
    return alloc


def build_classify(apt, rng):
    by_section = collections.defaultdict(list)
    for name in sorted(apt):
        by_section[apt[name]["section"]].append(apt[name])
    ranked = sorted(by_section, key=lambda s: (-len(by_section[s]), s))
    labels = [s for s in ranked if len(by_section[s]) >= CLASSIFY_MIN_PER_LABEL][:CLASSIFY_MAX_LABELS]
    alloc = allocate({s: len(by_section[s]) for s in labels}, N_CLASSIFY, CLASSIFY_ALPHA,
                     CLASSIFY_MIN_PER_LABEL)
    rows, used = [], set()
    for s in sorted(labels):
        for p in rng.sample(by_section[s], alloc[s]):
            rows.append(("classify", "Package: %s\nDescription: %s" % (p["name"], p["synopsis"]), s))
            used.add(p["name"])
    return rows, sorted(labels), used


def build_summarize(status, rng):
    seen, cands = set(), []
    for name in sorted(status):
        p = status[name]
        if len(p["long"]) < SUMMARIZE_MIN_CHARS or not p["synopsis"]:
            continue
        if p["long"] in seen:      # sibling packages often share one long description
            continue
        seen.add(p["long"])
        cands.append(p)
    pick = rng.sample(cands, min(N_SUMMARIZE, len(cands)))
    return [("summarize", "Package: %s\n\n%s" % (p["name"], p["long"]), p["synopsis"])
            for p in sorted(pick, key=lambda p: p["name"])], len(cands)


def build_simple(status, rng):
    cands = [status[n] for n in sorted(status)
             if status[n]["priority"] in PRIORITIES and status[n]["synopsis"]]
    # every package that is not "optional" (the rare, interesting answers), then optional ones
    rare = [p for p in cands if p["priority"] != "optional"]
    common = [p for p in cands if p["priority"] == "optional"]
    pick = rare[:N_SIMPLE] + rng.sample(common, max(0, min(len(common), N_SIMPLE - len(rare))))
    q = "What is the Debian priority (required, important, standard, optional or extra) of this package?"
    return [("simple", "%s\nPackage: %s\nSection: %s\nDescription: %s"
             % (q, p["name"], p["section"] or "unknown", p["synopsis"]), p["priority"])
            for p in sorted(pick, key=lambda p: p["name"])]


def build_chat(apt, used, rng):
    cands = [apt[n] for n in sorted(apt)
             if n not in used and apt[n]["section"] not in CHAT_SKIP_SECTIONS
             and not CHAT_SKIP_NAME.search(n) and len(apt[n]["synopsis"]) >= 10]
    pick = rng.sample(cands, min(N_CHAT, len(cands)))
    return [("chat", "What does the Debian package %s do?" % p["name"], p["synopsis"])
            for p in sorted(pick, key=lambda p: p["name"])]


def dedupe(rows):
    seen, out = set(), []
    for kind, prompt, expected in rows:
        prompt, expected = clean(prompt), clean(expected)
        if not prompt or not expected or (kind, prompt) in seen:
            continue
        seen.add((kind, prompt))
        out.append((kind, prompt, expected))
    return out


def table(rows, header):
    w = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    return "\n".join([fmt(header), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [fmt(r) for r in rows])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--status", default="/var/lib/dpkg/status")
    ap.add_argument("--lists-dir", default="/var/lib/apt/lists")
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()

    status = read_status(args.status)
    list_files, apt = read_apt_lists(args.lists_dir)
    # installed packages that are not in the Debian lists come from third-party
    # repositories (other maintainers, other licenses): leave them out
    foreign = sorted(n for n in status if n not in apt)
    status = {n: p for n, p in status.items() if n in apt}
    rng = random.Random(SEED)

    classify, labels, used = build_classify(apt, rng)
    summarize, n_sum_cands = build_summarize(status, rng)
    simple = build_simple(status, rng)
    chat = build_chat(apt, used, rng)
    rows = dedupe(classify + summarize + simple + chat)

    kinds = ["classify", "summarize", "simple", "chat"]
    count = collections.Counter(k for k, _, _ in rows)
    label_count = collections.Counter(e for k, _, e in rows if k == "classify")
    prio_count = collections.Counter(e for k, _, e in rows if k == "simple")
    top_share = max(label_count.values()) / count["classify"]
    assert top_share <= CLASSIFY_MAX_SHARE, top_share
    assert min(label_count.values()) >= CLASSIFY_MIN_PER_LABEL
    assert sorted(label_count) == labels

    tsv = os.path.join(args.out_dir, "demo.tsv")
    with open(tsv, "w", encoding="utf-8", newline="\n") as f:
        f.write("kind\tprompt\texpected\n")
        for r in rows:
            f.write("\t".join(copy_escape(x) for x in r) + "\n")
    with open(os.path.join(args.out_dir, "classify_labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(l + "\n" for l in labels))

    size = os.path.getsize(tsv)
    kind_rows = [(k, count[k]) for k in kinds] + [("total", len(rows))]
    label_rows = [(l, label_count[l], "%.1f%%" % (100.0 * label_count[l] / count["classify"]))
                  for l in sorted(labels, key=lambda l: (-label_count[l], l))]
    prio_rows = [(p, prio_count[p]) for p in PRIORITIES if prio_count[p]]
    sum_len = sorted(len(p) for k, p, _ in rows if k == "summarize")

    report = "\n\n".join([
        "Jobs per kind:\n\n" + table(kind_rows, ("kind", "jobs")),
        "classify labels (%d; expected = Debian section):\n\n" % len(labels)
        + table(label_rows, ("label", "jobs", "share")),
        "simple answers (expected = Debian priority):\n\n" + table(prio_rows, ("priority", "jobs")),
        "summarize: %d jobs drawn from %d candidates (installed Debian packages with a distinct "
        "long description of >= %d characters); prompt length %d..%d characters, median %d."
        % (count["summarize"], n_sum_cands, SUMMARIZE_MIN_CHARS, sum_len[0], sum_len[-1],
           sum_len[len(sum_len) // 2]),
        "demo.tsv: %d bytes, %d lines including the header." % (size, len(rows) + 1),
    ])
    print(report)

    sources = "\n".join("  - `/var/lib/apt/lists/%s`" % s for s in release_info(args.lists_dir, list_files))
    readme = README.format(sources=sources, report=report, seed=SEED, n_status=len(status),
                           n_apt=len(apt), n_jobs=len(rows), n_foreign=len(foreign))
    path = os.path.join(args.out_dir, "README.md")
    try:  # the question-answering section is make_qa_data.py's: keep it
        with open(path, encoding="utf-8") as f:
            old = f.read()
        at = old.find(QA_HEADING)
        if at >= 0:
            readme = readme.rstrip("\n") + "\n\n" + old[at:]
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(readme)


README = """# Demo workload data

`demo.tsv` is the demo workload of tierq: {n_jobs} jobs of real text, so the demo
runs against realistic prompts without depending on any external data set.
It and the other files here are written by `make_demo_data.py`; do not edit them by hand.

## Provenance

All text is Debian package metadata from a Debian 12 "bookworm" (amd64) machine:

- `/var/lib/dpkg/status`: the {n_status} installed packages that are also in the
  Debian lists below, with their full long descriptions, Section and Priority
  (kinds `summarize` and `simple`); {n_foreign} installed packages from third-party
  repositories (not in the Debian lists) are left out;
- the apt package lists ({n_apt} distinct packages, Package/Section/one-line synopsis;
  kinds `classify` and `chat`), decompressed with `/usr/lib/apt/apt-helper cat-file`:
{sources}

License: Debian package descriptions are part of the packages' metadata, which
Debian publishes and redistributes in the Packages and Translation files of every
mirror; they are freely redistributable with the archive metadata. Package names,
sections and priorities are likewise archive metadata.

## Files

- `demo.tsv`: UTF-8, PostgreSQL COPY text format with a header line
  `kind<TAB>prompt<TAB>expected`, one job per line. In the fields a backslash is
  written `\\\\`, a tab `\\t`, a newline `\\n`, a carriage return `\\r`. No NULs;
  control characters other than newline were stripped (tabs became spaces).
  Load it with

      \\copy staging(kind,prompt,expected) FROM 'demo.tsv' WITH (FORMAT text, HEADER true)

  (`HEADER` in text format needs PostgreSQL 15 or later.)
- `classify_labels.txt`: the label set of the `classify` jobs, sorted, one per line.
- `make_demo_data.py`: the generator (Python 3, standard library only).

## Columns

- `kind`: the job kind (`jobs/<kind>.json`); its system prompt carries the
  instructions, so the prompt is the data with at most a short lead-in.
- `prompt`: the user message sent to the model.
- `expected`: the reference answer, from the metadata.

| kind | prompt | expected | source |
|------|--------|----------|--------|
| classify | `Package: NAME` / `Description: SYNOPSIS` | Section, `contrib/` / `non-free/` prefix removed | apt lists |
| summarize | `Package: NAME`, blank line, long description (` .` separators turned into blank lines, leading space removed) | the one-line synopsis | dpkg status |
| simple | a one-line priority question, then `Package:`, `Section:`, `Description: SYNOPSIS` | Priority | dpkg status |
| chat | `What does the Debian package NAME do?` | the synopsis | apt lists |

Selection (random.Random({seed}) over sorted inputs, so the output is deterministic
for given inputs):

- classify: the most common sections with at least 15 packages, at most 30 of
  them; rows per section proportional to the square root of the section's size,
  at least 15 each, packages drawn at random within a section.
- summarize: installed packages whose long description has at least 200
  characters; of packages sharing one long description only the first (by name)
  is kept.
- simple: every installed package whose priority is not `optional`, then
  `optional` ones at random up to 400.
- chat: packages not used by classify, outside plumbing sections and name
  patterns (libraries, `-dev`, `-doc`, language-module prefixes and the like).

No two jobs of one kind have the same prompt.

## Counts

{report}

## Regenerating

    python3 tests/data/make_demo_data.py        # on a Debian machine, after apt-get update

It rewrites `demo.tsv`, `classify_labels.txt` and this README, and prints the
counts above. Options `--status`, `--lists-dir` and `--out-dir` point it at other
inputs or another output directory. Other machines (other installed packages,
newer lists) give a different but equivalent file.
"""


if __name__ == "__main__":
    main()
