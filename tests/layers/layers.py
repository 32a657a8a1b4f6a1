#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""layers.py BUILD_DIR - the core's dependencies point one way.

The real dependency graph: for each object of librmig (core/*.c and
rdma/*.c, as built in BUILD_DIR), the other objects whose symbols it uses
(nm). Every module has a layer in layers.txt; a module may use its own
layer and the ones below. An edge that points up fails, unless layers.txt
allows it by name (the known debt, each with its reason); an allowed edge
that no longer exists fails too, so the list only shrinks. A module that
layers.txt does not place fails: a new file is placed when it is added.
A circle among modules (a strongly connected component: files that use
each other, even within one layer) fails too: within a layer, the files
of a component are ordered as well (the session's, a backend's,
postcopy's), and features meet only through the session's hooks.
"""
import collections
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = ["base", "transport", "engine", "session", "feature", "api"]


def load_map(path):
    layer, allow = {}, {}
    for n, line in enumerate(open(path), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        f = line.split()
        if f[0] == "allow" and len(f) >= 3:
            allow[(f[1], f[2])] = n
        elif len(f) == 2 and f[1] in LAYERS:
            layer[f[0]] = LAYERS.index(f[1])
        else:
            sys.exit(f"layers.txt:{n}: cannot read '{line}'")
    return layer, allow


def graph(build):
    objs = glob.glob(os.path.join(build, "core", "librmig_core.a.p", "*.o"))
    objs += glob.glob(os.path.join(build, "rdma", "librmig_rdma.a.p", "*.o"))
    if not objs:
        sys.exit(f"layers: no librmig objects under {build} (build it first)")
    defs, uses = {}, collections.defaultdict(set)
    for o in objs:
        mod = ("rdma/" if f"{os.sep}rdma{os.sep}" in o else "") + os.path.basename(o)[:-4]
        out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
        for ln in out.splitlines():
            p = ln.split()
            if len(p) == 3 and p[1] in "TDBRG":
                defs[p[2]] = mod
            elif len(p) == 2 and p[0] == "U":
                uses[mod].add(p[1])
        uses.setdefault(mod, set())
    edges = collections.defaultdict(lambda: collections.defaultdict(set))
    for m, us in uses.items():
        for u in us:
            d = defs.get(u)
            if d and d != m:
                edges[m][d].add(u)
    return sorted(uses), edges


def circles(mods, edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop()
                on.discard(w)
                c.append(w)
                if w == v:
                    break
            if len(c) > 1:
                out.append(sorted(c))

    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in index:
            visit(v)
    return out


def check(layer, allow, mods, edges, out=print):
    """The failures of graph (mods, edges) against the layers; each printed."""
    bad = 0
    for m in mods:
        if m not in layer:
            out(f"FAIL {m}: no layer in tests/layers/layers.txt")
            bad += 1
    seen = set()
    for m in mods:
        for d, syms in sorted(edges[m].items()):
            if m not in layer or d not in layer or layer[d] <= layer[m]:
                continue
            seen.add((m, d))
            what = f"{m} ({LAYERS[layer[m]]}) uses {d} ({LAYERS[layer[d]]}): {' '.join(sorted(syms))}"
            if (m, d) in allow:
                out(f"debt {what}")
            else:
                out(f"FAIL {what}")
                bad += 1
    for (m, d), n in sorted(allow.items()):
        if (m, d) not in seen:
            out(f"FAIL layers.txt:{n}: {m} no longer uses {d} upward: remove the allow line")
            bad += 1
    for c in circles(mods, edges):
        spans = sorted({LAYERS[layer[m]] for m in c if m in layer})
        inner = [f"{m}->{d}" for m in c for d in sorted(edges[m]) if d in c]
        out(f"FAIL circle: {' '.join(c)} (within {', '.join(spans)}): {' '.join(inner)}")
        bad += 1
    return bad, len(seen)


def self_test():
    """The check fails where it must: an upward edge, a circle within a layer."""
    layer = {"low": 0, "mid": 1, "mid2": 1, "top": 2}
    mods = sorted(layer)

    def g(*pairs):
        e = collections.defaultdict(lambda: collections.defaultdict(set))
        for m, d in pairs:
            e[m][d].add(f"{d}_fn")
        return e

    quiet = lambda _: None
    cases = [
        ("clean", g(("top", "mid"), ("mid", "mid2"), ("mid2", "low")), 0),
        ("upward", g(("low", "top")), 1),
        ("circle in a layer", g(("mid", "mid2"), ("mid2", "mid")), 1),
        ("unplaced", g(), 1),
    ]
    for name, edges, want in cases:
        ms = mods + (["stray"] if name == "unplaced" else [])
        got = check(layer, {}, ms, edges, quiet)[0]
        if got != want:
            print(f"FAIL self-test '{name}': {got} failure(s), expected {want}")
            return False
    return True


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: layers.py BUILD_DIR")
    if not self_test():
        return 1
    layer, allow = load_map(os.path.join(HERE, "layers.txt"))
    mods, edges = graph(sys.argv[1])
    bad, ups = check(layer, allow, mods, edges)
    print(f"layers: {len(mods)} modules, {ups} upward edges ({len(allow)} allowed), "
          f"no circle: {'ok' if not bad else f'{bad} failure(s)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
