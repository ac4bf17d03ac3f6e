"""The version of the verdict rules: a digest of the code that decides a verdict.

A dataset stores each run's verdicts and each transfer's rate, so it is stamped with
the rules that derived them. The digest covers the syntax trees of those modules
(docstrings and comments left out): a changed rule or threshold changes it, a
reworded comment does not, and nobody has to remember to bump a number.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
from functools import cache

MODULES = ("analysis.verdicts", "analysis.features", "analysis.bootstrap", "analysis.transports",
           "analysis.thresholds", "analysis.signature", "analysis.rates",
           "probe.measure.rate", "probe.names")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return tree


@cache
def version() -> str:
    """Twelve hex digits naming the current verdict rules."""
    digest = hashlib.sha256()
    for name in MODULES:
        source = inspect.getsource(importlib.import_module(name))
        digest.update(ast.dump(_without_docstrings(ast.parse(source))).encode())
    return digest.hexdigest()[:12]
