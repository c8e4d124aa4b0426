#!/usr/bin/env python3
"""docs/doxygen_filter.py - Doxygen's INPUT_FILTER for the public headers (docs/Doxyfile.in):
reads clgrad's plain C comments as documentation, keeping every line where it was (warnings
point at the real lines). The file's opening comment becomes its @file text; a comment that
starts a line documents the declaration below it; a comment after code on the same line
documents that member (/**< */); section rules ("/* ---- x ---- */") stay plain comments
unless they describe what follows ("/* ---- linear (src/ops/linear.c): x (N, in) ... ---- */").
A comment above a run of declarations (no blank line between them: "these three functions")
documents each of them (repeated in front of each on its first line). Words in angle
brackets ("ops/<stem>.c") are escaped so Doxygen does not read them as HTML. Comments already
in Doxygen form (/** or /**<) pass unchanged.
"""
import re
import sys

RULE = re.compile(r"^\s*/\*\s*-{2,}.*-{2,}\s*\*/\s*$")
LEADING = re.compile(r"^(\s*)/\*(?![*!])")
TRAILING = re.compile(r"^(\s*#define\s+\w+\s+\S+\s*|\s*\S.*?[;,{(]\s*|\s*\S.*?\)\s*)/\*(?![*!<])")


def main(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, first, in_comment, file_comment = [], True, False, False
    doc_ends, leading, indent, start = [], False, 0, 0
    for line in lines:
        if in_comment:
            line = ANGLE.sub(r"\\<\1\\>", line)
            if "*/" in line:
                in_comment = False
                if leading and not file_comment:
                    doc_ends.append((start, len(out), indent))
                if file_comment:
                    line = line.replace("*/", "@file */", 1)
                    file_comment = False
            out.append(line)
            continue
        stripped = line.strip()
        if RULE.match(line) and ":" in line:
            # "/* ---- linear (src/ops/linear.c): x (N, in) -> (N, out) ---- */" describes the
            # declarations below it: a doc comment without the rules.
            line = re.sub(r"/\*\s*-{2,}\s*(.*?)\s*-{2,}\s*\*/", r"/** \1 */", line)
            stripped = line.strip()
        if stripped.startswith("/*") and not RULE.match(line):
            line = ANGLE.sub(r"\\<\1\\>", LEADING.sub(r"\1/** ", line, count=1))
            in_comment = "*/" not in line[line.index("/*") + 2:]
            leading, indent, start = True, len(line) - len(line.lstrip()), len(out)
            if not in_comment and not first:
                doc_ends.append((start, len(out), indent))
            file_comment, first = first, False
            if file_comment and not in_comment:
                line = line.replace("*/", "@file */", 1)
        elif stripped and (not stripped.startswith(("#", "//")) or stripped.startswith("#define")) and "/*" in line:
            line = TRAILING.sub(lambda m: m.group(1) + "/**< ", line, count=1)
            leading = False
            rest = line[line.index("/*") + 2:]
            in_comment = "*/" not in rest
        if stripped:
            first = False  # a file comment opens the file
        out.append(line)
    group_runs(out, doc_ends)
    split_fields(out, doc_ends)
    sys.stdout.write("\n".join(out))


ANGLE = re.compile(r"<(/?[A-Za-z_][A-Za-z0-9_]*)>")


def group_runs(lines, doc_ends):
    """A leading doc comment above a run of two or more declarations documents each: its text
    is repeated, on one line, in front of every declaration of the run after the first."""
    for start, end, indent in doc_ends:
        starts, depth, prev_done = [], 0, True
        for j in range(end + 1, len(lines)):
            line = lines[j]
            stripped = line.strip()
            if not stripped or stripped.startswith(("/*", "#", "}", "//")):
                break
            if prev_done and len(line) - len(line.lstrip()) == indent:
                starts.append(j)
            depth += line.count("{") - line.count("}")
            prev_done = line.split("/*")[0].rstrip().endswith(";")
        if len(starts) < 2 or depth != 0 or not prev_done:
            continue
        text = " ".join(l.strip() for l in lines[start:end + 1])
        text = text.replace("/**", "", 1).rsplit("*/", 1)[0].replace(" * ", " ").strip()
        for j in starts[1:]:
            if "/**<" in lines[j]:
                continue  # it has its own
            lines[j] = lines[j][:indent] + "/** " + text + " */ " + lines[j][indent:]


MULTI = re.compile(r"^(\s*)((?:const\s+)?[A-Za-z_]\w*(?:\s+[A-Za-z_]\w*)*)\s+"
                   r"(\**\s*\w+(?:\[\w*\])?(?:\s*,\s*\**\s*\w+(?:\[\w*\])?)+);(.*)$")


def split_fields(lines, doc_ends):
    """One line declaring several fields ("int height, width;") under a leading comment or with
    a trailing one: the comment documents each field (as separate declarations on that line)."""
    above = {end + 1: (start, end) for start, end, _ in doc_ends}
    for j, line in enumerate(lines):
        m = MULTI.match(line)
        if not m:
            continue
        indent, ctype, decls, rest = m.groups()
        if "/**<" in rest:
            text = rest.split("/**<", 1)[1].rsplit("*/", 1)[0].strip()
        elif j in above:
            start, end = above[j]
            text = " ".join(l.strip() for l in lines[start:end + 1])
            text = text.replace("/**", "", 1).rsplit("*/", 1)[0].replace(" * ", " ").strip()
        else:
            continue
        if "*/" in text or rest.count("/*") > 1:
            continue
        names = [d.strip() for d in decls.split(",")]
        lines[j] = indent + " ".join("%s %s; /**< %s */" % (ctype, n, text) for n in names)


if __name__ == "__main__":
    main(sys.argv[1])
