#!/usr/bin/env python3
"""Fails on an import cycle between the files of one module.

Rust (src/): for each module folder, an edge runs from one file to a
sibling file when it names it (`super::sibling`, `crate::path::sibling`,
or a name the folder's mod.rs re-exports from that sibling), anywhere in
the file outside its `#[cfg(test)]` module. mod.rs itself is the module's
public face and is left out. The top-level modules (`crate::x`) are
checked the same way, as the files of the crate.

Python (tools/): an edge runs from a module to each module of the same
tree it imports, wherever the import stands (a lazy import inside a
function is still a dependency).

No crate or package does this for both languages without building the
whole project (cargo-modules needs rust-analyzer's crates), so this is a
short script of ours. Prints each cycle; exits 1 when there is one.

    scripts/check-cycles.py [REPO]
"""

import ast
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_rust(text):
    """Drops comments, string literals and the `#[cfg(test)] mod` block."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+" + IDENT, text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def path_heads(text, prefix):
    """The first segment after each `prefix::`, expanding `{a, b::c}`."""
    out = set()
    for m in re.finditer(r"(?<![\w:])" + re.escape(prefix) + r"::", text):
        rest = text[m.end():]
        if rest.startswith("{"):
            depth, i = 0, 0
            for i, ch in enumerate(rest):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    break
            inner = rest[1:i]
            depth, item = 0, ""
            for ch in inner + ",":
                if ch == "," and depth == 0:
                    head = re.match(r"\s*(" + IDENT + ")", item)
                    if head:
                        out.add(head.group(1))
                    item = ""
                    continue
                depth += ch == "{"
                depth -= ch == "}"
                item += ch
        else:
            head = re.match(IDENT, rest)
            if head:
                out.add(head.group(0))
    return out


def reexports(mod_rs):
    """Names mod.rs re-exports, mapped to the child module they come from."""
    names = {}
    text = strip_rust(open(mod_rs).read())
    for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+(?:self::)?(" + IDENT + r")::([^;]+);", text):
        child, rest = m.group(1), m.group(2)
        for name in re.findall(r"(" + IDENT + r")\s*(?:as\s+(" + IDENT + "))?", rest):
            names[name[1] or name[0]] = child
    return names


def rust_graphs(src):
    """{module path: {file: set(sibling files it names)}}."""
    graphs = {}
    for folder, _, files in os.walk(src):
        rel = os.path.relpath(folder, src)
        module = "crate" if rel == "." else "crate::" + rel.replace(os.sep, "::")
        root = rel == "."
        face = "main.rs" if root else "mod.rs"
        siblings = {f[:-3] for f in files if f.endswith(".rs") and f not in (face, "lib.rs")}
        siblings |= {d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, "mod.rs"))}
        if len(siblings) < 2:
            continue
        names = reexports(os.path.join(folder, face)) if os.path.exists(os.path.join(folder, face)) else {}
        graph = {}
        for name in siblings:
            paths = [os.path.join(folder, name + ".rs")]
            if os.path.isdir(os.path.join(folder, name)):
                paths = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(folder, name))
                         for f in fs if f.endswith(".rs")]
            edges = set()
            for path in paths:
                text = strip_rust(open(path).read())
                # How many `super::` lead from this file to the folder's
                # module: one from folder/x.rs and folder/name/mod.rs, one
                # more for each folder further down.
                below = os.path.relpath(os.path.dirname(path), folder)
                dirs = 0 if below == "." else below.count(os.sep) + 1
                supers = dirs + (0 if os.path.basename(path) == "mod.rs" else 1)
                prefixes = ["crate"] if root else [module, "::".join(["super"] * supers)]
                for prefix in prefixes:
                    for head in path_heads(text, prefix):
                        target = head if head in siblings else names.get(head)
                        if target and target != name:
                            edges.add(target)
            graph[name] = edges
        graphs[module] = graph
    return graphs


def python_graph(tools):
    graph = {}
    for folder, _, files in os.walk(tools):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, tools)[:-3].replace(os.sep, ".")
            package = rel.rsplit(".", 1)[0] if not rel.endswith("__init__") else rel[: -len(".__init__")]
            if rel.endswith(".__init__"):
                rel = rel[: -len(".__init__")]
            tree = ast.parse(open(path).read(), path)
            edges = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parts = package.split(".")
                        parts = parts[: len(parts) - node.level + 1]
                        base = ".".join(parts + ([base] if base else []))
                    for alias in node.names:
                        edges.add(base + "." + alias.name)
                        edges.add(base)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        edges.add(alias.name)
            graph[rel] = edges
    # Keep only edges to modules of this tree, and not a package's edge to
    # itself (`from . import x` names the package first).
    for name, edges in graph.items():
        graph[name] = {e for e in edges if e in graph and e != name and not name.startswith(e + ".")}
    return graph


def cycles(graph):
    """Each strongly connected component of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    found = []
    for module, graph in sorted(rust_graphs(os.path.join(repo, "src")).items()):
        for comp in cycles(graph):
            found.append(f"{module}: {' <-> '.join(comp)}")
    tools = os.path.join(repo, "tools")
    if os.path.isdir(tools):
        for comp in cycles(python_graph(tools)):
            found.append(f"tools: {' <-> '.join(comp)}")
    for line in found:
        print(f"import cycle: {line}")
    if found:
        print("help: move what both sides need into a leaf file that imports neither", file=sys.stderr)
        return 1
    print("check-cycles: no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
