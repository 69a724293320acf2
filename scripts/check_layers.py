#!/usr/bin/env python3
"""check_layers.py: no call cycles between the engine's source files.

    check_layers.py BUILD_DIR [SUBDIR ...]      (default SUBDIRS: core gpu)

Builds the file-level dependency graph from the object files themselves:
for every object under BUILD_DIR/SUBDIR (CMake's CMakeFiles/<target>.dir/),
`nm` lists the symbols it defines and the ones it needs; file A depends on
file B when A needs a symbol B defines. No list of files is written down
anywhere: a new file joins the graph by being compiled. Objects compiled
from one source several times (eval_kernel.c, once per instruction set)
are one node.

Prints the files by layer (a file's layer is one above the highest layer it
depends on, files that depend on no other file being layer 0) and exits 1,
naming the files of each cycle, when the graph has one; 2 when nm fails or
no objects are found (the check must not pass on nothing).
"""
import os
import re
import subprocess
import sys

# Strong definitions: text, data, bss, read-only, small data, common,
# indirect functions. Weak ones (W, V: C++ inline functions and templates
# instantiated in every object that uses them) do not make an edge.
DEFINED = set("TDBRGSCi")


def source_of(path, build):
    """core/CMakeFiles/tps_engine.dir/local.c.o -> core/local.c"""
    rel = os.path.relpath(path, build)
    rel = re.sub(r"CMakeFiles/[^/]+\.dir/", "", rel)
    return rel[:-2] if rel.endswith(".o") else rel


def symbols(obj):
    out = subprocess.run(["nm", "-P", obj], check=True, capture_output=True, text=True).stdout
    defined, needed = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            needed.add(name)
        elif kind in DEFINED:
            defined.add(name)
    return defined, needed


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    build = argv[1]
    subdirs = argv[2:] or ["core", "gpu"]
    source_dir = None
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as cache:
            for line in cache:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    source_dir = line.split("=", 1)[1].strip()
    except OSError:
        pass
    objects = []
    for sub in subdirs:
        for root, _, files in os.walk(os.path.join(build, sub)):
            objects += [os.path.join(root, f) for f in files if f.endswith(".o")]
    # An object whose source is gone (a file renamed or split since the
    # build dir was made) is stale: CMake does not delete it.
    if source_dir:
        objects = [o for o in objects
                   if os.path.exists(os.path.join(source_dir, source_of(o, build)))]
    if not objects:
        print(f"check_layers: no object files under {build}/{{{','.join(subdirs)}}}: build first",
              file=sys.stderr)
        return 2
    defines, needs = {}, {}
    owner = {}
    for obj in sorted(objects):
        src = source_of(obj, build)
        try:
            d, n = symbols(obj)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"check_layers: nm {obj}: {e}", file=sys.stderr)
            return 2
        defines.setdefault(src, set()).update(d)
        needs.setdefault(src, set()).update(n)
        for s in d:
            owner.setdefault(s, set()).add(src)
    graph = {src: set() for src in defines}
    why = {}
    for src, syms in needs.items():
        for s in syms:
            for dst in owner.get(s, ()):
                if dst != src:
                    graph[src].add(dst)
                    why.setdefault((src, dst), []).append(s)

    found = cycles(graph)
    if found:
        for comp in found:
            print("check_layers: call cycle between " + ", ".join(comp))
            members = set(comp)
            for a in comp:
                for b in sorted(graph[a] & members):
                    print(f"    {a} -> {b}: {', '.join(sorted(why[(a, b)])[:4])}")
        return 1

    layer = {}

    def depth(v):
        if v not in layer:
            layer[v] = 1 + max((depth(w) for w in graph[v]), default=-1)
        return layer[v]

    for v in graph:
        depth(v)
    for lvl in range(max(layer.values()) + 1, -1, -1):
        files = sorted(v for v in layer if layer[v] == lvl)
        if files:
            print(f"layer {lvl}: " + "  ".join(files))
    print(f"check_layers: {len(graph)} files, no call cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
