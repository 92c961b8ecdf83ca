#!/usr/bin/env python3
"""Layering check of proxy/: no two source files call each other both ways.

From `nm` of the objects built from proxy/ (build/san/obj/proxy/ by
default), file A *uses* file B when A's object has an undefined symbol that
B's object defines. A pair (A, B) where A uses B and B uses A is a
violation, except when one direction only goes through an ops table (a data
symbol named *_ops: the way a frontend or the upstream side is reached
without a call back into its caller's file).

One direction is also checked: nothing in proxy/core/ uses proxy/admin/
(the process and its control plane sit on top of the data plane, never
under it).

A pair may be allowed, temporarily, by a line of the allow-list
(scripts/layers-allow.txt by default):

    proxy/a.c proxy/b.c  # why it is allowed for now

Exit status: 0 when every bidirectional pair is allowed and every allowed
pair still exists; 1 otherwise (an unlisted pair, a stale entry, an entry
without a reason, or no object found: the check never passes on nothing).

    scripts/check_layers.py [--objdir DIR] [--allow FILE] [--list]

--list prints every pair and the symbols behind it, then checks.
"""
import argparse
import os
import subprocess
import sys


def nm_symbols(path):
    """(defined, undefined) global symbol sets of one object."""
    out = subprocess.run(["nm", "-P", "-g", path], check=True, capture_output=True,
                         text=True).stdout
    defined, undefined = {}, set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind not in ("w", "v"):
            defined[name] = kind
    return defined, undefined


def source_of(objdir, obj):
    rel = os.path.relpath(obj, objdir)
    return os.path.join("proxy", rel[:-2] + ".c")


def is_ops_table(name, kind):
    return name.endswith("_ops") and kind.upper() in ("D", "R", "B")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objdir", default="build/san/obj/proxy")
    ap.add_argument("--allow", default="scripts/layers-allow.txt")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()

    # Objects whose source is gone (left in build/ by a move) are skipped.
    objs = []
    for root, _, files in os.walk(args.objdir):
        objs += [os.path.join(root, f) for f in files if f.endswith(".o")]
    objs = sorted(o for o in objs if os.path.exists(source_of(args.objdir, o)))
    if not objs:
        print(f"check_layers: no object under {args.objdir}", file=sys.stderr)
        return 1

    defs, undefs = {}, {}
    owner = {}  # symbol -> (source, kind)
    for o in objs:
        src = source_of(args.objdir, o)
        d, u = nm_symbols(o)
        defs[src], undefs[src] = d, u
        for name, kind in d.items():
            owner[name] = (src, kind)

    # uses[a][b] = symbols of b that a references (ops tables left out)
    uses = {}
    for a, u in undefs.items():
        for name in u:
            if name not in owner:
                continue
            b, kind = owner[name]
            if b == a or is_ops_table(name, kind):
                continue
            uses.setdefault(a, {}).setdefault(b, set()).add(name)

    pairs = {}
    for a in uses:
        for b in uses[a]:
            if a < b and a in uses.get(b, {}):
                pairs[(a, b)] = (sorted(uses[a][b]), sorted(uses[b][a]))

    bad = 0
    for a in sorted(uses):
        for b in sorted(uses[a]):
            if a.startswith("proxy/core/") and b.startswith("proxy/admin/"):
                print(f"VIOLATION: {a} (core) uses {b} (admin): {', '.join(sorted(uses[a][b]))}")
                bad = 1

    allowed = {}
    if os.path.exists(args.allow):
        with open(args.allow) as f:
            for n, line in enumerate(f, 1):
                text, _, reason = line.partition("#")
                names = text.split()
                if not names:
                    continue
                if len(names) != 2 or not reason.strip():
                    print(f"{args.allow}:{n}: want 'A.c B.c  # reason'", file=sys.stderr)
                    bad = 1
                    continue
                allowed[tuple(sorted(names))] = (n, reason.strip())

    for (a, b), (ab, ba) in sorted(pairs.items()):
        status = "allowed" if (a, b) in allowed else "VIOLATION"
        if args.list or status == "VIOLATION":
            print(f"{status}: {a} <-> {b}")
            print(f"    {a} uses {b}: {', '.join(ab)}")
            print(f"    {b} uses {a}: {', '.join(ba)}")
        if status == "VIOLATION":
            bad = 1
    for (a, b), (n, _) in sorted(allowed.items()):
        if (a, b) not in pairs:
            print(f"{args.allow}:{n}: stale entry, {a} and {b} no longer call each other both "
                  "ways: remove it", file=sys.stderr)
            bad = 1
    print(f"check_layers: {len(objs)} objects, {len(pairs)} bidirectional pair(s), "
          f"{len(allowed)} allowed: {'FAIL' if bad else 'ok'}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
