#!/usr/bin/env python3
"""Fails when two files under src/ import each other, directly or through
others: every file's imports must form a graph without cycles.

An import is a path naming another file's module: `crate::a::b`,
`super::x`, or a child module `m::` of a file that declares `mod m;`.
A path resolves to the longest module prefix that is a file
(`src/a/b.rs` or `src/a/b/mod.rs`). Two kinds of edges are not imports:
a parent declaring its children (`mod m;`), and paths resolving to the
crate root (`crate::Store`: lib.rs only re-exports, it has no code).

    scripts/check-cycles.py [SRC_DIR]   # prints each cycle, exits 1 if any
"""

import os
import re
import sys


def module_of(src, path):
    """The module path (list of names) of a file under src."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_of(src, module):
    """The file defining `module`, or None."""
    if not module:
        return None
    base = os.path.join(src, *module)
    for f in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.isfile(f):
            return f
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def inline_modules(text):
    """Splits `text` into (depth, chunk) pieces: chunks inside an inline
    `mod name { ... }` are one module deeper (their `super` is the file's
    module)."""
    pieces, depth_stack, last, i = [], [], 0, 0
    opener = re.compile(r"\bmod\s+\w+\s*\{")
    depth = 0
    while i < len(text):
        m = opener.match(text, i)
        if m:
            pieces.append((depth, text[last:m.end()]))
            depth_stack.append(0)
            depth += 1
            i = last = m.end()
            continue
        c = text[i]
        if depth_stack:
            if c == "{":
                depth_stack[-1] += 1
            elif c == "}":
                if depth_stack[-1] == 0:
                    pieces.append((depth, text[last:i]))
                    depth_stack.pop()
                    depth -= 1
                    last = i
                else:
                    depth_stack[-1] -= 1
        i += 1
    pieces.append((depth, text[last:]))
    return pieces


def imports(src, path):
    found = set()
    text = strip_comments(open(path, encoding="utf-8").read())
    for depth, chunk in inline_modules(text):
        found |= imports_of(src, path, chunk, depth)
    return found


def imports_of(src, path, text, depth):
    here = module_of(src, path) + ["<inline>"] * depth
    # The module `super` and `self` mean from this file.
    is_dir_module = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
    parent = here[:-1] if here else []
    self_mod = here
    children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
    found = set()
    if depth:
        children = set()
    # Grouped uses: `use crate::a::{b, c::d}` -> crate::a::b, crate::a::c::d.
    expanded = []
    for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^}]*)\}", text):
        for part in m.group(2).split(","):
            part = part.strip().split(" as ")[0].strip()
            if part and part != "self":
                expanded.append(m.group(1) + "::" + part)
            elif part == "self":
                expanded.append(m.group(1))
    plain = re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", text)
    # Modules brought in by name (`use super::sqlite;`, `use crate::a::b as c;`):
    # their paths (`sqlite::backup::f`) are imports of the files they name.
    aliases = {}
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::\w+)+)(?:\s+as\s+(\w+))?\s*;", text):
        aliases[m.group(2) or m.group(1).split("::")[-1]] = m.group(1)
    child_paths = [
        m.group(0) for m in re.finditer(r"(?<![:\w])(\w+)(?:::\w+)+", text) if m.group(1) in children
    ]
    for m in re.finditer(r"(?<![:\w])(\w+)((?:::\w+)+)", text):
        if m.group(1) in aliases and m.group(1) not in children:
            child_paths.append(aliases[m.group(1)] + m.group(2))
    for p in plain + expanded + child_paths:
        parts = p.split("::")
        if parts[0] == "crate":
            base, rest = [], parts[1:]
        elif parts[0] in ("super", "self"):
            base = list(self_mod)
            rest = parts
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    base = base[:-1]
                rest = rest[1:]
        else:
            base, rest = list(self_mod), parts
        # Longest prefix that is a file.
        target = None
        for n in range(len(rest), 0, -1):
            target = file_of(src, base + rest[:n])
            if target:
                break
        if target is None:
            target = file_of(src, base)
        if target is None or os.path.samefile(target, path):
            continue
        found.add(os.path.normpath(target))
    del is_dir_module, parent
    return found


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    roots = {os.path.normpath(os.path.join(src, f)) for f in ("lib.rs", "main.rs")}
    graph = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.normpath(os.path.join(dirpath, f))
                graph[path] = {t for t in imports(src, path) if t not in roots}
    found = cycles(graph)
    for comp in found:
        edges = [
            f"  {a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp
        ]
        print("import cycle between: " + ", ".join(comp))
        print("\n".join(edges))
    if found:
        sys.exit(1)
    print(f"no import cycles between the {len(graph)} files under {src}/")


if __name__ == "__main__":
    main()
