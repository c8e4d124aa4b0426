#!/usr/bin/env python3
"""tests/tools/check_layers.py - the include graph is the architecture: fails when a file
under src/<floor>/ includes a private header of a higher (or a sibling) floor, when a test
under tests/<floor>/ reaches above its floor, or when a tool includes a private header other
than the one documented tuning header (src/blas/tuning.h, for clgrad-bench and clgrad-tune).
Run by `meson test` (suite tools) with the source root as its argument.
"""
import os
import re
import sys

# Bottom to top; floors of equal rank may not include each other.
RANK = {"core": 0, "tensor": 1, "blas": 2, "ops": 3, "nn": 4, "optim": 4, "io": 5, "dist": 6}
TUNING_HEADER = "blas/tuning.h"
TUNING_TOOLS = ("tools/clgrad-tune.c", "tools/bench/")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def quoted_includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return INCLUDE.findall(f.read())


def floor_of(header):
    head = header.split("/", 1)[0]
    return head if "/" in header and head in RANK else None


def check_floor_file(rel, floor, header, problems):
    other = floor_of(header)
    if other is None or other == floor:
        return
    if RANK[other] >= RANK[floor]:
        problems.append(f"{rel}: includes \"{header}\" from floor '{other}', which is not below '{floor}'")


def main(root):
    problems = []
    for top in ("src", "tests", "tools"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                parts = rel.split("/")
                for header in quoted_includes(path):
                    if top == "src" and parts[1] in RANK:
                        check_floor_file(rel, parts[1], header, problems)
                    elif top == "src" and floor_of(header):
                        problems.append(f"{rel}: src/{parts[1]} is not a floor ({', '.join(RANK)})")
                    elif top == "tests" and parts[1] in RANK:
                        other = floor_of(header)
                        if other and RANK[other] > RANK[parts[1]]:
                            problems.append(f"{rel}: a {parts[1]} test includes \"{header}\" from a higher floor")
                    elif top == "tools" and floor_of(header):
                        if header != TUNING_HEADER or not rel.startswith(TUNING_TOOLS):
                            problems.append(f"{rel}: a tool includes the private header \"{header}\" "
                                            f"(tools use the public API; only clgrad-bench and clgrad-tune "
                                            f"may include {TUNING_HEADER})")
    for p in problems:
        print("layering:", p)
    print(f"layering: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")))
