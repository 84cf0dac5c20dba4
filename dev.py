#!/usr/bin/env python3
"""The book's two commands. Needs nothing but Python >= 3.10.

    python3 dev.py book   # install what is needed, execute every notebook (two at a time), build _build/html
    python3 dev.py test   # install what is needed, run unit tests, nbval (strict), the PDF, the -W -n book build,
                          # the built site in headless Chromium (when Debian's chromium is installed),
                          # JupyterLab's live sliders in headless Chromium, and test-oldest
    python3 dev.py pdf    # the PDF edition from the stored outputs (needs TeX Live: see README.md)
    python3 dev.py test-oldest  # the lowest supported versions (pyproject.toml's floors) in .venv-oldest:
                                # install the package as the notebooks' first cell does, execute every notebook
                                # (or only the notebooks named after it)

Both create (once) a virtual environment in ``.venv`` with the exact versions
of ``requirements.txt`` and the helper package ``mldyn_lite`` installed in
editable mode; set ``MLDYN_VENV`` to use another folder. The build itself
needs no network.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("MLDYN_VENV", ROOT / ".venv")).resolve()
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".mldyn-installed"
BOOK_ENV = {
    "PLOTLY_RENDERER": "notebook_connected",  # myst-nb drops plotly output otherwise
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
BUILD = ["jupyter-book", "build", ".", "-W", "-n", "--keep-going"]
#: Before BUILD: every notebook executed, two at a time (one per core of a 2-core machine), into the cache that the
#: build reads (_config.yml: execute_notebooks: cache); jupyter-book itself would run one at a time.
EXECUTE_FOR_BUILD = ["scripts/execute_notebooks.py", "--book-cache", "_build/.jupyter_cache", "--jobs", "2"]
BROWSER_TEST = "tests/test_site_browser.py"  # needs the built site: runs after BUILD
API_PAGES_TEST = "tests/test_api_reference.py"  # its built-site half runs again after BUILD (skipped before it)
PDF_TEST = "tests/test_pdf.py"  # needs the PDF: runs after scripts/build_pdf.py
LIVE_SLIDERS_TEST = "tests/test_live_sliders.py"  # JupyterLab in headless Chromium: runs on its own
OLDEST_VENV = Path(os.environ.get("MLDYN_OLDEST_VENV", ROOT / ".venv-oldest")).resolve()
OLDEST_BIN = OLDEST_VENV / ("Scripts" if os.name == "nt" else "bin")
#: What executes the notebooks in the oldest environment (not dependencies of the package: newest versions).
NOTEBOOK_RUNNER = ["ipykernel", "nbclient", "nbformat"]
#: Notebooks executed at once by test-oldest (each uses one torch thread).
OLDEST_JOBS = 2


def run(*command: str, extra_env: dict[str, str] | None = None) -> None:
    print("+", " ".join(command), flush=True)
    env = {**os.environ, **BOOK_ENV, **(extra_env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    code = subprocess.call(command, cwd=ROOT, env=env)
    if code != 0:
        sys.exit(f"failed (exit {code}): {' '.join(command)}")


def requirements_digest() -> str:
    text = (ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    return hashlib.sha256(text).hexdigest()


def ensure_environment() -> None:
    """Create .venv and install the pinned environment, unless it is already current."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is required, this is {sys.version.split()[0]}")
    if STAMP.exists() and STAMP.read_text() == requirements_digest():
        return
    if not (BIN / "python").exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(BIN / "python")
    run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt")
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    STAMP.write_text(requirements_digest())


def floors() -> dict[str, str]:
    """The lowest version each dependency in pyproject.toml allows ({name: version}), and ipywidgets' from the extra."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    if block is None:
        sys.exit("pyproject.toml: no dependencies list found")
    found = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)', block.group(1)))
    widgets = re.search(r'"ipywidgets>=([0-9][0-9.]*)', text)  # kernel_slider needs it; Colab and Jupyter have it
    if widgets:
        found["ipywidgets"] = widgets.group(1)
    return found


def pinned(name: str) -> str:
    """The exact pin of ``name`` in requirements.txt (``name==version``)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.strip()
    sys.exit(f"requirements.txt has no pin for {name}")


def oldest_requirements() -> list[str]:
    """Every floor exactly; torch stays at the pinned CPU build (the floor's CPU wheel is not on these machines)."""
    return [pinned("torch") if name == "torch" else f"{name}=={version}" for name, version in floors().items()]


def test_oldest(*paths: str) -> None:
    """Floors in .venv-oldest, the package installed as the notebooks' first cell does, every notebook executed
    (or only ``paths``)."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 is required, this is {sys.version.split()[0]}")
    python = str(OLDEST_BIN / "python")
    wanted = oldest_requirements()
    stamp = OLDEST_VENV / ".mldyn-oldest"
    digest = hashlib.sha256("\n".join(wanted + NOTEBOOK_RUNNER).encode()).hexdigest()
    if not (stamp.exists() and stamp.read_text() == digest):
        if not (OLDEST_BIN / "python").exists():
            print(f"creating virtual environment in {OLDEST_VENV}", flush=True)
            venv.EnvBuilder(with_pip=True).create(OLDEST_VENV)
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(python, "-m", "pip", "install", "--quiet", *wanted, *NOTEBOOK_RUNNER)
        stamp.write_text(digest)
    # as the first cell of every notebook: pip install "mldyn_lite @ <repository>" (not editable, with its
    # dependencies, which the floors already satisfy), here from this checkout instead of the repository URL
    run(python, "-m", "pip", "uninstall", "--quiet", "--yes", "mldyn_lite")
    run(python, "-m", "pip", "install", "--quiet", f"mldyn_lite @ {ROOT.as_uri()}")
    run(python, "-m", "pip", "check")
    # the versions a kernel sees (and not this checkout's source), before any notebook runs
    print("+ (in a kernel of the oldest environment) check the versions the notebooks import", flush=True)
    if subprocess.call([python, "-c", OLDEST_PROBE, *wanted], cwd=ROOT) != 0:
        sys.exit("failed: the oldest environment does not hold the floors")
    # each in a fresh kernel of the oldest environment, OLDEST_JOBS at a time; outputs not compared
    # (every notebook of the book unless paths are given)
    print("+ (with the oldest supported versions) execute the notebooks", flush=True)
    env = {**os.environ, **BOOK_ENV, "PATH": f"{OLDEST_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    command = [python, "scripts/execute_notebooks.py", "--jobs", str(OLDEST_JOBS), *(str(Path(p).resolve()) for p in paths)]
    if subprocess.call(command, cwd=ROOT, env=env) != 0:
        sys.exit("failed with the oldest supported versions (FAILED above)")


#: Runs in a fresh kernel of the oldest environment: every floor installed exactly, mldyn_lite not from the checkout.
OLDEST_PROBE = r"""
import sys
import nbformat
from nbclient import NotebookClient
names = [w.split("==")[0] for w in sys.argv[1:]]
probe = "import importlib.metadata as m, mldyn_lite\nprint(mldyn_lite.__file__)\nfor n in %r: print(n, m.version(n))" % names
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)])
NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": "/"}}).execute()
lines = [line for line in "".join(o.get("text", "") for o in nb.cells[0].outputs).split("\n") if line]
print("kernel sees:", "; ".join(lines))
def release(v):
    parts = [int(p) for p in v.split("+")[0].split(".")]
    return parts + [0] * (3 - len(parts))
where, seen = lines[0], dict(line.split(" ", 1) for line in lines[1:])
wrong = [f"{w} (kernel has {seen.get(w.split('==')[0])})" for w in sys.argv[1:]
         if release(seen.get(w.split("==")[0], "0")) != release(w.split("==")[1])]
if wrong or "site-packages" not in where:
    sys.exit("oldest environment is not what it should be: " + ", ".join(wrong) + f"; mldyn_lite from {where}")
"""


def book() -> None:
    ensure_environment()
    start = time.perf_counter()
    run(str(BIN / "python"), *EXECUTE_FOR_BUILD)
    run(*BUILD)
    print(f"\nBook built in {time.perf_counter() - start:.0f} s. Open: {ROOT / '_build' / 'html' / 'index.html'}")


def pdf() -> None:
    ensure_environment()
    run(str(BIN / "python"), "scripts/build_pdf.py")


def test() -> None:
    ensure_environment()
    python = str(BIN / "python")
    run(python, "-m", "ruff", "check", ".")
    run(python, "-m", "ruff", "format", "--check", ".")  # the formatter's layout (pyproject.toml: [tool.ruff.format])
    run(python, "scripts/colab_cell.py")
    # unit tests (tests/) and every notebook under nbval in strict mode (notebooks/), on two workers (pytest-xdist;
    # each test file and each notebook stays on one worker, and every worker uses one torch thread)
    run(
        python,
        "-m",
        "pytest",
        "-n",
        "2",
        "--dist",
        "loadfile",
        "--nbval",
        "--nbval-sanitize-with",
        "nbval_sanitize.cfg",
        "-ra",
        f"--ignore={BROWSER_TEST}",
        f"--ignore={PDF_TEST}",
        f"--ignore={LIVE_SLIDERS_TEST}",
    )
    # the PDF edition from the stored outputs just checked, before the book build so that the site links it
    # (without TeX: a message, and test_pdf.py skips, except in CI)
    run(python, "scripts/build_pdf.py", "--if-tex")
    run(python, "-m", "pytest", "-ra", PDF_TEST)
    # the book build turns any warning (broken reference, dropped output, failed cell, CDN asset) into a failure
    run(python, *EXECUTE_FOR_BUILD)
    run(*BUILD)
    # the site just built, in headless Chromium with no network (skipped, with the reason, without Chromium)
    # and every public name on its module's API page in that site
    run(python, "-m", "pytest", "-ra", BROWSER_TEST, API_PAGES_TEST, extra_env={"MLDYN_SITE": str(ROOT / "_build" / "html")})
    # every ipywidgets panel in a live JupyterLab, driven by headless Chromium (skipped without Chromium)
    run(python, "-m", "pytest", "-ra", LIVE_SLIDERS_TEST)
    # the lowest versions pyproject.toml allows: every notebook must execute (outputs not compared)
    test_oldest()


def main(argv: list[str]) -> None:
    commands = {"book": book, "test": test, "test-oldest": test_oldest, "pdf": pdf}
    if not argv or argv[0] not in commands or (len(argv) > 1 and argv[0] != "test-oldest"):
        sys.exit(__doc__)
    commands[argv[0]](*argv[1:])  # test-oldest takes optional notebook paths


if __name__ == "__main__":
    main(sys.argv[1:])
