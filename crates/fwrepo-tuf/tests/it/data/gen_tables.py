#!/usr/bin/env python3
"""Writes the python-tuf reference tables the fwrepo-tuf tests check against.

Run once with python-tuf 7 installed (python3 -m venv v && v/bin/pip install 'tuf>=7,<8'):
    v/bin/python gen_tables.py
It writes path-patterns.json (DelegatedRole path matching) and role-names.json (how
python-tuf's ngclient turns a role name into a file name and URL component) beside itself.
"""

import json
import os
import random
import sys
from urllib import parse

import tuf
from tuf.api.metadata import DelegatedRole

HERE = os.path.dirname(os.path.abspath(__file__))

PATTERNS = [
    "*", "?", "fw/*", "fw/[ab]*", "fw/[!ab]*", "fw/[a-c].bin", "fw/[c-a].bin", "fw/[!c-a].bin",
    "fw/[]]x", "fw/[!]]x", "fw/[]", "fw/[!]", "fw/[", "fw/[a", "fw/[-a]", "fw/[a-]", "fw/[!-a]",
    "fw/[a-c-e]", "fw/[z-a-c]", "fw/[x-!!]", "fw/[\\]", "fw/[\\-a]", "fw/[^a]", "fw/[[]", "fw/[&~|]",
    "*/*", "*/*/*", "fw/**", "fw/*.bin", "fw/*.b?n", "a*b*c", "*.tar.gz", "[0-9][0-9]*/*",
    "fw/\u00e9*", "fw/[\u00e0-\u00ff]*", "fw/[!a-z]*", "fw/a]b", "fw/a[]b", "", "/", "fw/", "/fw/a",
    "fw//a", "fw/.", "fw/..", "?/?", "[*]", "[?]", "fw/[a-a]", "fw/[b-a-c]", "fw/[]-a]", "fw/[]-!]",
]

PATHS = [
    "a", "b", "fw/a.bin", "fw/b.bin", "fw/c.bin", "fw/d.bin", "fw/ab", "fw/x", "fw/]x", "fw/ax",
    "fw/-", "fw/^", "fw/\\", "fw/[", "fw/&", "fw/~", "fw/|", "fw/e", "fw/sub/a.bin", "fw/a.bn",
    "axxbyyc", "axxbyy", "x.tar.gz", "12/x", "1/x", "fw/\u00e9t\u00e9", "fw/\u00e0", "fw/Z",
    "fw/a]b", "fw/ab", "", "/", "fw/", "/fw/a", "fw//a", "fw/.", "fw/..", "a/b", "*", "?",
    "fw/!", "fw/a-b", "fw/b-a", "fw/]", "fw/[]", "fw/[!]", "fw/[a", "fw/A.bin",
]


def random_cases(n, seed):
    rng = random.Random(seed)
    pat_alphabet = "ab-]![*?/\\^z"
    path_alphabet = "ab-]![/\\^z"
    out = []
    for _ in range(n):
        pat = "".join(rng.choice(pat_alphabet) for _ in range(rng.randint(0, 8)))
        if rng.random() < 0.5:
            path = "".join(rng.choice(path_alphabet) for _ in range(rng.randint(0, 6)))
        else:
            # Near misses and hits: the pattern with its wildcards filled in.
            path = "".join(
                "".join(rng.choice(path_alphabet) for _ in range(rng.randint(0, 2))) if c == "*"
                else rng.choice(path_alphabet) if c == "?"
                else c
                for c in pat
            )
        out.append((pat, path))
    return out


def write(path, source, columns, rows):
    """One case per line, so a diff of a regenerated table is readable."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(f'"source": {json.dumps(source)},\n')
        f.write(f'"columns": {json.dumps(columns)},\n')
        f.write('"cases": [\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        f.write("\n]\n}\n")


def main():
    cases = [(p, t) for p in PATTERNS for t in PATHS] + random_cases(4000, 9)
    table = [[p, t, DelegatedRole._is_target_in_pathpattern(t, p)] for p, t in cases]
    source = (
        f"python-tuf {tuf.__version__} on Python {sys.version.split()[0]}: "
        "tuf.api.metadata.DelegatedRole._is_target_in_pathpattern(path, pattern), "
        "written by gen_tables.py in this directory"
    )
    write(os.path.join(HERE, "path-patterns.json"), source, "[pattern, path, matches]", table)

    names = [
        "bins-0f", "delegatedrole", "/delegatedrole", "../delegatedrole", "..", ".", "a?b#c",
        "a b", "100%", "a+b=c&d", "~user", "r\u00f4le", "\u0440\u043e\u043b\u044c", "\U0001f512",
        "a/b/c", "a\\b", "a\"b", "a\x00b", "a\nb", "e\u0301", ":colon;", "[x]", "x" * 40,
    ]
    roles = [[n, parse.quote(n, "")] for n in names]
    source = (
        f"python-tuf {tuf.__version__} on Python {sys.version.split()[0]}: "
        "urllib.parse.quote(role, \"\") as tuf.ngclient.Updater uses it for metadata file "
        "names and URLs, written by gen_tables.py in this directory"
    )
    write(os.path.join(HERE, "role-names.json"), source, "[role name, encoded]", roles)


if __name__ == "__main__":
    main()
