#!/usr/bin/env python3
"""Size, prose and import-graph figures of the package, counted the same way each time.

    python scripts/package_stats.py [PACKAGE_DIR]      # default: keras_resnet_cifar

Run it before and after a restructuring and compare.

lines: every line of every .py file. docstring lines: the lines spanned by module, class
and function docstrings (ast). internal imports: distinct (importer, imported module)
pairs inside the package, top-level and in function bodies counted apart. layers: the
longest chain of internal imports (modules on it). Functions over 60 lines of code
(lines that are not blank, comment or docstring).
"""
import ast
import collections
import pathlib
import sys


def _module_name(path, root):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node, module, is_package, package):
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == package]
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != package:
        return []
    return [target] + [f"{target}.{a.name}" for a in node.names]


def main(root="keras_resnet_cifar"):
    root = pathlib.Path(root).resolve()
    if not (root / "__init__.py").is_file():
        sys.exit(f"error: {root} is not a Python package folder.")
    package = root.name
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(p, root): p for p in files}
    lines = docstring_lines = 0
    edges, inner_edges = set(), set()
    long_functions = []
    for name, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source)
        lines += len(source.splitlines())
        doc_spans = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(
                        getattr(body[0], "value", None), ast.Constant) and isinstance(
                        body[0].value.value, str):
                    doc_spans.update(range(body[0].lineno, body[0].end_lineno + 1))
        docstring_lines += len(doc_spans)
        comment_or_blank = {i for i, text in enumerate(source.splitlines(), 1)
                            if not text.strip() or text.strip().startswith("#")}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                span = set(range(node.lineno, node.end_lineno + 1))
                code = len(span - doc_spans - comment_or_blank)
                if code > 60:
                    long_functions.append((code, f"{path.relative_to(root.parent)}:{node.name}"))
        top_level = set(id(n) for n in tree.body)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(node, name, path.name == "__init__.py", package):
                    if target in modules and target != name:
                        (edges if id(node) in top_level else inner_edges).add((name, target))
    graph = collections.defaultdict(set)
    for a, b in edges | inner_edges:
        graph[a].add(b)
    depth = {}

    def longest(m, seen=()):
        if m in depth:
            return depth[m]
        if m in seen:
            return 0
        depth[m] = 1 + max((longest(n, seen + (m,)) for n in graph[m]), default=0)
        return depth[m]

    layers = max(longest(m) for m in modules)
    print(f"files                      {len(files)}")
    print(f"lines                      {lines}")
    print(f"docstring lines            {docstring_lines} ({100 * docstring_lines / lines:.1f}%)")
    print(f"internal imports, top      {len(edges)}")
    print(f"internal imports, in body  {len(inner_edges - edges)}")
    print(f"layers (longest chain)     {layers}")
    print(f"functions over 60 lines    {len(long_functions)}")
    for code, where in sorted(long_functions, reverse=True):
        print(f"  {code:4d}  {where}")


if __name__ == "__main__":
    main(*sys.argv[1:])
