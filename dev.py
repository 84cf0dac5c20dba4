#!/usr/bin/env python3
"""The book's two commands. Needs nothing but Python >= 3.10.

    python3 dev.py book   # install what is needed, execute every notebook, build _build/html
    python3 dev.py test   # install what is needed, run unit tests, nbval (strict), the -W -n book build,
                          # and the built site in headless Chromium (when Debian's chromium is installed)

Both create (once) a virtual environment in ``.venv`` with the exact versions
of ``requirements.txt`` and the helper package ``mldyn_lite`` installed in
editable mode; set ``MLDYN_VENV`` to use another folder. The build itself
needs no network.
"""

from __future__ import annotations

import hashlib
import os
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
BROWSER_TEST = "tests/test_site_browser.py"  # needs the built site: runs after BUILD


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


def book() -> None:
    ensure_environment()
    start = time.perf_counter()
    run(*BUILD)
    print(f"\nBook built in {time.perf_counter() - start:.0f} s. Open: {ROOT / '_build' / 'html' / 'index.html'}")


def test() -> None:
    ensure_environment()
    python = str(BIN / "python")
    run(python, "-m", "ruff", "check", ".")
    run(python, "scripts/colab_cell.py")
    # unit tests (tests/) and every notebook under nbval in strict mode (notebooks/)
    run(python, "-m", "pytest", "--nbval", "--nbval-sanitize-with", "nbval_sanitize.cfg", "-ra",
        f"--ignore={BROWSER_TEST}")
    # the book build turns any warning (broken reference, dropped output, failed cell, CDN asset) into a failure
    run(*BUILD)
    # the site just built, in headless Chromium with no network (skipped, with the reason, without Chromium)
    run(python, "-m", "pytest", "-ra", BROWSER_TEST, extra_env={"MLDYN_SITE": str(ROOT / "_build" / "html")})


def main(argv: list[str]) -> None:
    commands = {"book": book, "test": test}
    if len(argv) != 1 or argv[0] not in commands:
        sys.exit(__doc__)
    commands[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
