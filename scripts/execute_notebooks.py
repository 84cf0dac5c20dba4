"""Execute notebooks from scratch, the way the book build and nbval do.

    python3 scripts/execute_notebooks.py notebooks/ch1/*.ipynb --store
    python3 scripts/execute_notebooks.py --book-cache _build/.jupyter_cache --jobs 2

``--store`` writes the fresh outputs back into the notebooks (they are stored
with outputs, and nbval compares against them). Each notebook runs in its own
folder with the reader's settings, and its wall time is printed. Without
``--store`` the outputs are not kept, and ``--jobs N`` runs N notebooks at a
time (``python3 dev.py test-oldest`` does so in the oldest environment).

``--book-cache DIR`` is the first half of the book build (``python3 dev.py book``):
it empties the jupyter-cache at DIR, executes every notebook, ``--jobs`` at a time
(each in its own kernel with one torch thread), and stores each executed notebook
in that cache. ``jupyter-book build`` (``execute_notebooks: cache`` in
``_config.yml``) then finds every notebook there, unchanged since it ran, and
renders those outputs; it executes only what it does not find. This is how the
whole book executes on both cores of a 2-core machine: jupyter-book runs one
notebook at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK_ENV = {"PLOTLY_RENDERER": "notebook_connected", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def _output_widget_without_echo():
    """nbclient's mimic of a frontend's Output widget, except that it does not send the captured outputs back to the
    kernel.

    nbclient already records them in the notebook's widget state (``OutputWidget.output``); sending them to the
    kernel as well, on the shell channel while it waits on that channel for the cell's reply, now and then makes it
    miss the reply until the cell's timeout expires (jupyter/nbclient#312). The kernel never reads them back: the
    panels clear and fill their Output widgets from the kernel, which nbclient sees either way.
    """
    from nbclient.output_widget import OutputWidget

    class OutputWidgetWithoutEcho(OutputWidget):
        def sync_state(self) -> None:
            pass

    return OutputWidgetWithoutEcho


def run(path: Path, timeout: int = 600, widgets: bool = True, record_timing: bool = True):
    """Run ``path`` top to bottom in a fresh kernel in its own folder; return (executed notebook, wall time in s).

    ``widgets``: keep what the ipywidgets panels show in the notebook's widget state, as a frontend would (for
    outputs that are stored or rendered). Otherwise a panel's output goes to its cell.
    ``record_timing``: write each cell's execution times into its metadata. Not for the book's cache: the cache
    finds a notebook by its code cells and their metadata, so these must stay as they are in the source.
    """
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(BOOK_ENV)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=record_timing,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.widget_registry = {"@jupyter-widgets/output": {"OutputModel": _output_widget_without_echo()}} if widgets else {}
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def execute(path: Path, store: bool = False, timeout: int = 600) -> float:
    """Run ``path`` top to bottom in a fresh kernel; return the wall time in seconds (``store``: write the outputs)."""
    import nbformat

    nb, seconds = run(path, timeout=timeout, widgets=store)
    if store:
        nbformat.write(nb, path)
    return seconds


def book_notebooks() -> list[Path]:
    """Every notebook of the book (under ``notebooks/``), without Jupyter's checkpoint copies."""
    return sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def book_timeout() -> int:
    """The per-cell timeout of the book build (``execute: timeout`` in ``_config.yml``)."""
    import yaml

    return int(yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"])


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def execute_all(paths: list[Path], jobs: int, book_cache: Path | None = None) -> list[Path]:
    """Execute ``paths`` from scratch, ``jobs`` at a time, each in its own kernel; return those that failed (each
    failure is printed, and the others go on).

    Without ``book_cache`` the outputs are not kept (as ``execute``). With it, for the book build: the widget state
    is kept, the cells' metadata stay as in the source, the cell timeout is the book's, and each executed notebook
    is stored in the jupyter-cache at ``book_cache``, which is emptied first.
    """
    # chapter 4, whose notebooks take longest, first: the queues then end closer together
    paths = sorted(paths, key=lambda p: p.parent.name, reverse=True)
    cache, settings = None, (600, False, True)  # run(path, timeout, widgets, record_timing)
    if book_cache is not None:
        from jupyter_cache import get_cache
        from jupyter_cache.base import CacheBundleIn

        if book_cache.exists():
            shutil.rmtree(book_cache)
        cache, settings = get_cache(str(book_cache)), (book_timeout(), True, False)
    failed = []
    spawn = multiprocessing.get_context("spawn")  # fresh workers: no threads or state inherited from the caller
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        futures = {pool.submit(run, path, *settings): path for path in paths}
        for future in concurrent.futures.as_completed(futures):
            path = futures[future]
            try:
                nb, seconds = future.result()
            except Exception as error:  # a cell raised or timed out
                failed.append(path)
                print(f"FAILED {_shown(path)}:\n{str(error)[-4000:]}", flush=True)
                continue
            if cache is not None:
                bundle = CacheBundleIn(nb, str(path), data={"execution_seconds": seconds})
                cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            print(f"{seconds:7.1f} s  {_shown(path)}", flush=True)
    return failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all under notebooks/)")
    parser.add_argument("--store", action="store_true", help="write the outputs back into the notebooks")
    parser.add_argument("--book-cache", type=Path, help="execute for the book build into this jupyter-cache")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks at a time (not with --store)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.store and (args.book_cache or args.jobs > 1):
        parser.error("--store executes one notebook at a time, into the notebook itself")
    paths = [p.resolve() for p in args.paths] or book_notebooks()
    if args.store:
        for path in paths:
            print(f"{execute(path, store=True):7.1f} s  {_shown(path)}", flush=True)
        return 0
    start = time.perf_counter()
    failed = execute_all(paths, args.jobs, book_cache=args.book_cache)
    print(f"{len(paths) - len(failed)} of {len(paths)} notebooks executed in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
