#!/usr/bin/env python3
"""Measure how many facts a simulated model keeps when it compresses the documents of
tests/data/qa.tsv, at compression ratios 2, 5, 10 and 20 (tests/sim/README.md,
"Compression requests", quotes its output).

Start a simulator with the answer key first, then:

    build/tierq-sim --port 0 --answers tests/data/qa.tsv    # prints the port
    python3 tests/sim/measure_compress.py PORT [MODEL ...]

For each model it prints the share of facts found verbatim in the shortened text:
plain requests (every fact of every document), question-aware requests (the asked
fact) and, after switching the model to compress.mode truncate through
POST /sim/models/<name> (restored afterwards), plain truncation.
Python 3 standard library only.
"""
import json
import sys
import urllib.request

SYSTEM = ("You shorten documents for another model that must answer from them. "
          "Keep every fact a question could need, in at most %d tokens.")
RATIOS = (2, 5, 10, 20)


def copy_unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def compress(port, model, doc, target, question=None):
    user = ("Question the document must still answer: %s\n\nDocument:\n%s" % (question, doc)
            if question else "Document:\n" + doc)
    r = post(port, "/v1/chat/completions", {"model": model, "messages": [
        {"role": "system", "content": SYSTEM % target}, {"role": "user", "content": user}]})
    return r["choices"][0]["message"]["content"]


def main():
    port = sys.argv[1]
    models = sys.argv[2:] or ["qwen3-8b"]
    docs = {}
    with open("tests/data/qa.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, q, ctx, exp = (copy_unescape(x) for x in line.rstrip("\n").split("\t"))
            docs.setdefault(ctx, []).append((q, exp))
    for model in models:
        print("%s (%d documents, %d facts)" % (model, len(docs), sum(len(v) for v in docs.values())))
        print("  ratio  extract  question-aware (asked fact)  truncate")
        rows = {}
        for r in RATIOS:
            plain = asked = 0
            for doc, qs in docs.items():
                target = max(1, (len(doc.encode()) + 3) // 4 // r)
                out = compress(port, model, doc, target)
                plain += sum(e in out for _, e in qs)
                asked += sum(e in compress(port, model, doc, target, q) for q, e in qs)
            rows[r] = [plain, asked]
        saved = post(port, "/sim/models/" + model, {})["compress"]["mode"]
        post(port, "/sim/models/" + model, {"compress": {"mode": "truncate"}})
        try:
            for r in RATIOS:
                rows[r].append(sum(sum(e in compress(port, model, doc, max(1, (len(doc.encode()) + 3) // 4 // r))
                                       for _, e in qs) for doc, qs in docs.items()))
        finally:
            post(port, "/sim/models/" + model, {"compress": {"mode": saved}})
        n = sum(len(v) for v in docs.values())
        for r in RATIOS:
            print("  %5d  %6.1f%%  %26.1f%%  %7.1f%%" % (r, *(100.0 * x / n for x in rows[r])))


if __name__ == "__main__":
    main()
