"""Keep every notebook's first cell (the Colab install cell) in sync with _config.yml.

The repository URL is set once, in ``_config.yml`` (``repository.url``). This
script writes the install cell that pip-installs mldyn_lite from that URL
*only when it is missing*, so Colab keeps its own torch and numpy.

    python3 scripts/colab_cell.py          # check, exit 1 if a notebook is out of date
    python3 scripts/colab_cell.py --write  # rewrite the first cell of every notebook
    python3 scripts/colab_cell.py --write notebooks/ch1/01_supervised_learning.ipynb  # only this one
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "colab-install"


def repository_url() -> str:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def install_source(url: str | None = None) -> str:
    url = url or repository_url()
    return (
        "# Install the book's helper package only if it is missing (e.g. on Colab);\n"
        "# torch, numpy and scipy that are already installed are kept as they are.\n"
        "try:\n"
        "    import mldyn_lite\n"
        "except ModuleNotFoundError:\n"
        f'    %pip install --quiet "mldyn_lite @ git+{url}"'
    )


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def sync(path: Path, write: bool) -> bool:
    """Return True if the notebook's install cell is current (after writing, if asked)."""
    nb = json.loads(path.read_text())
    wanted = install_source()
    cell = first_code_cell(nb)
    if cell is not None and TAG in cell.get("metadata", {}).get("tags", []):
        if "".join(cell["source"]) == wanted:
            return True
        if not write:
            return False
        cell["source"] = wanted.splitlines(keepends=True)
    else:
        if not write:
            return False
        new = {
            "cell_type": "code",
            "execution_count": None,
            "id": "colab-install",
            "metadata": {"tags": [TAG, "remove-cell"]},
            "outputs": [],
            "source": wanted.splitlines(keepends=True),
        }
        index = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), len(nb["cells"]))
        nb["cells"].insert(index, new)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def main(argv: list[str]) -> int:
    write = "--write" in argv
    paths = [Path(a).resolve() for a in argv if a != "--write"] or notebooks()
    stale = [p for p in paths if not sync(p, write)]
    for p in stale:
        print(f"out of date: {p.relative_to(ROOT)} (run: python3 scripts/colab_cell.py --write)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
