"""Read the book's notebooks from tests: the functions their solution cells define, and their self-check cells."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import torch

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _cells(notebook: str | Path, tag: str) -> list[str]:
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    return [
        "".join(cell["source"])
        for cell in cells
        if cell["cell_type"] == "code" and tag in cell.get("metadata", {}).get("tags", [])
    ]


def solution_function(notebook: str | Path, name: str, **names):
    """The function ``name`` as a ``solution`` cell of ``notebook`` (e.g. ``"ch2/04_msa_training.ipynb"``) defines it.

    Only the cell's imports and that ``def`` run, with ``np``, ``torch`` and ``names`` in scope, so the
    tests exercise the book's own code.
    """
    for source in _cells(notebook, "solution"):
        tree = ast.parse(source)
        if any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body):
            kept = [
                node
                for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom))
                or (isinstance(node, ast.FunctionDef) and node.name == name)
            ]
            namespace = {"np": np, "torch": torch, **names}
            exec(compile(ast.Module(body=kept, type_ignores=[]), str(notebook), "exec"), namespace)
            return namespace[name]
    raise LookupError(f"no solution cell of {notebook} defines {name}")


def self_check_sources(notebook: str | Path) -> list[str]:
    """The sources of the cells of ``notebook`` tagged ``self-check``."""
    return _cells(notebook, "self-check")
