"""transform.py SRC.cu OUT.cpp (scripts/cuda_emu/run.sh): kernel launches
k<<<g, b, 0, s>>>(args) as emu_launch(dim3(g), dim3(b), [&]() { k(args); }),
and the device's block_sum_squares replaced by the host's (emu.cpp)."""
import re, sys
src = open(sys.argv[1]).read()
# the block reduction: host version in emu.cpp
i = src.find("__device__ double block_sum_squares(")
if i >= 0:
    j = src.index("\n}\n", i) + 3
    src = src[:i] + "} double block_sum_squares(const double *x, int r0, int r1); namespace {\n" + src[j:]
out, pos = [], 0
for m in re.finditer(r"(\w+)<<<", src):
    if m.start() < pos: continue
    name = m.group(1)
    k = src.index(">>>", m.end())
    cfg = src[m.end():k]
    # split cfg at top-level commas
    depth, parts, cur = 0, [], ""
    for ch in cfg:
        if ch in "([{": depth += 1
        if ch in ")]}": depth -= 1
        if ch == "," and depth == 0: parts.append(cur); cur = ""
        else: cur += ch
    parts.append(cur)
    assert src[k+3] == "("
    depth, a = 0, k + 3
    for b in range(k + 3, len(src)):
        if src[b] == "(": depth += 1
        elif src[b] == ")":
            depth -= 1
            if depth == 0: break
    args = src[k+4:b]
    out.append(src[pos:m.start()])
    out.append("emu_launch(dim3(%s), dim3(%s), [&]() { %s(%s); })" % (parts[0], parts[1], name, args))
    pos = b + 1
out.append(src[pos:])
open(sys.argv[2], "w").write("".join(out))
