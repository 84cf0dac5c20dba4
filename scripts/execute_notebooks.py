"""Execute notebooks from scratch, the way the book build and nbval do.

    python3 scripts/execute_notebooks.py notebooks/ch1/*.ipynb --store

``--store`` writes the fresh outputs back into the notebooks (they are stored
with outputs, and nbval compares against them). Each notebook runs in its own
folder with the reader's settings, and its wall time is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK_ENV = {"PLOTLY_RENDERER": "notebook_connected", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def execute(path: Path, store: bool = False, timeout: int = 600) -> float:
    """Run ``path`` top to bottom in a fresh kernel; return the wall time in seconds."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(BOOK_ENV)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    if not store:
        # Without a frontend, nbclient mimics each ipywidgets Output widget and sends its state back to the
        # kernel on the shell channel while it waits on that channel for the cell's reply; now and then the
        # reply is then only seen when the cell's timeout expires (jupyter/nbclient#312), which costs the whole
        # timeout. When the outputs are not stored, a live panel's output can go to the cell instead.
        client.widget_registry = {}
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if store:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all under notebooks/)")
    parser.add_argument("--store", action="store_true", help="write the outputs back into the notebooks")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").rglob("*.ipynb"))
    for path in paths:
        seconds = execute(path.resolve(), store=args.store)
        print(f"{seconds:7.1f} s  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
