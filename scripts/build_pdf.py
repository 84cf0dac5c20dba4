"""Build the PDF edition of the book from the notebooks' stored outputs.

    python3 dev.py pdf                 # the same, after making sure .venv is current
    .venv/bin/python scripts/build_pdf.py [--if-tex]

Jupyter Book 1's LaTeX builder (``jupyter-book build --builder pdflatex``) with XeLaTeX, the
engine set in ``_config.yml`` (``latex:``). Needs Debian's ``texlive-xetex texlive-latex-extra
texlive-fonts-recommended latexmk fonts-freefont-otf make`` (``.ci/run`` installs them, with
``--no-install-recommends``); ``--if-tex`` turns a missing TeX into a message and exit status 0
(``python3 dev.py test`` then skips ``tests/test_pdf.py``, outside CI).

No notebook is executed: the build reads the outputs stored in the notebooks, which nbval (strict)
compares with a fresh run in ``python3 dev.py test``. It works on a generated copy of the sources in
``_build/pdf/src``:

* ``_config.yml`` is the book's, with ``execute_notebooks: "off"``;
* ``book/``, ``_toc.yml`` and the rest are links to the repository's, except the runtime page, which
  says that nothing was executed for the PDF (the web edition's page shows the build's execution times);
* ``notebooks/`` holds copies in which every live ipywidgets panel (it needs a kernel, and its stored
  output is only the widget's text form) is replaced by its static figure: the image its output
  widget showed when the notebook was executed, saved in the notebook's widget state. The plotly
  slider twins (HTML and JavaScript, which LaTeX cannot show) are dropped: the panel beside each of
  them shows the same quantity.

Writes ``_build/pdf/mldyn-book.pdf`` and ``_build/pdf/panels.json`` (which panel got which figure;
``tests/test_pdf.py`` reads it). The HTML build links the PDF from the landing page when it exists
(``book/_ext/pdf_edition.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

__all__ = ["PANEL_MARK", "PDF", "TEX_PACKAGES", "static_panels", "prepare_sources", "main"]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "pdf"
SRC = OUT / "src"
PDF = OUT / "mldyn-book.pdf"
TEX_PACKAGES = "texlive-xetex texlive-latex-extra texlive-fonts-recommended latexmk fonts-freefont-otf make"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
LOCAL = {"_config.yml", "notebooks", "book", "_build", ".git", ".venv"}  # what the copy does not link to
RUNTIME_PAGE = """# Runtime

This PDF was built from the outputs stored in the notebooks, without running them again. The stored
outputs are checked by the repository's tests, which execute every notebook afresh and compare
(`python3 dev.py test`, nbval in strict mode). The web edition's runtime page lists how long each
notebook took when that copy was built; the times measured by `benchmarks/notebook_times.py`, with
the machine and package versions, are on the Benchmarks page.
"""
PANEL_MARK = "Live panel:"  # tests/test_pdf.py counts these
PANEL_NOTE = f"*{PANEL_MARK} in Jupyter its sliders recompute this figure; here it is shown at their starting values.*"


def _widget_outputs(state: dict, model_id: str, seen: set[str] | None = None) -> list[dict]:
    """The outputs of every output widget inside widget ``model_id`` (children first to last)."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    outputs = list(model["state"].get("outputs", [])) if model.get("model_name") == "OutputModel" else []
    for child in model["state"].get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            outputs += _widget_outputs(state, child.removeprefix("IPY_MODEL_"), seen)
    return outputs


def _is_plotly_html(output: dict) -> bool:
    html = output.get("data", {}).get("text/html", "")
    html = "".join(html) if isinstance(html, list) else html
    return "plotly" in html.lower()


def static_panels(nb) -> list[dict]:
    """Replace, in place, each ipywidgets panel of ``nb`` by its stored figure; drop plotly outputs.

    Returns one record per panel: the cell index and the number of figures it got (0 when the
    notebook was stored without widget state: the panel then shows only a note).
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    panels = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outputs, figures, is_panel = [], 0, False
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                is_panel = True
                stored = [
                    o for o in _widget_outputs(state, data[WIDGET_MIME]["model_id"]) if o.get("output_type") != "stream"
                ]
                figures += sum("image/png" in o.get("data", {}) for o in stored)
                outputs += [nbformat.from_dict(o) for o in stored]
            elif _is_plotly_html(output):
                continue  # a kernel-free plotly twin: LaTeX cannot draw it
            elif is_panel and output.get("output_type") == "execute_result":
                continue  # the repr of interact's return value, e.g. "<function ...<lambda>>"
            else:
                outputs.append(output)
        if is_panel:
            outputs.append(
                nbformat.v4.new_output(
                    "display_data", data={"text/markdown": PANEL_NOTE, "text/plain": PANEL_NOTE.strip("*")}
                )
            )
            panels.append({"cell": index, "figures": figures})
        cell["outputs"] = outputs
    return panels


def prepare_sources() -> dict[str, list[dict]]:
    """Write ``_build/pdf/src``: the config with execution off, links to book/ and _toc.yml, notebook copies."""
    if SRC.exists():
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"  # stored outputs, checked by nbval
    (SRC / "_config.yml").write_text(
        "# Generated by scripts/build_pdf.py from ../../../_config.yml\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    )
    for path in ROOT.iterdir():  # _toc.yml, benchmarks/ (included by a page), ...
        if path.name not in LOCAL and not path.name.startswith(".") and not (path / "pyvenv.cfg").exists():
            (SRC / path.name).symlink_to(path)
    (SRC / "book").mkdir()
    for path in (ROOT / "book").iterdir():  # the pages, except the runtime page: nothing runs here
        if path.name != "runtime.md":
            (SRC / "book" / path.name).symlink_to(path)
    (SRC / "book" / "runtime.md").write_text(RUNTIME_PAGE)
    panels = {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = nbformat.read(path, as_version=4)
        found = static_panels(nb)
        target = SRC / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        if found:
            panels[str(path.relative_to(ROOT).with_suffix(""))] = found
    # other files the notebooks' folders hold (data, images), as links
    for path in (ROOT / "notebooks").rglob("*"):
        target = SRC / path.relative_to(ROOT)
        if path.is_file() and path.suffix != ".ipynb" and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    return panels


def tex_missing() -> list[str]:
    return [tool for tool in ("xelatex", "latexmk", "make", "xdvipdfmx", "makeindex") if shutil.which(tool) is None]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--if-tex", action="store_true", help="without TeX, say so and exit 0 (no PDF)")
    args = parser.parse_args(argv)
    missing = tex_missing()
    if missing:
        message = (
            f"The PDF edition needs TeX: {', '.join(missing)} not found. Debian/Ubuntu: sudo apt-get install {TEX_PACKAGES}"
        )
        if args.if_tex:
            print(f"PDF edition skipped. {message}", flush=True)
            return 0
        print(message, file=sys.stderr)
        return 1
    start = time.perf_counter()
    PDF.unlink(missing_ok=True)
    panels = prepare_sources()
    (OUT / "panels.json").write_text(json.dumps(panels, indent=1) + "\n")
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    # latexmk passes -interaction=nonstopmode (Sphinx's latexmkrc); LATEXMKOPTS keeps the log short
    env.setdefault("LATEXMKOPTS", "-silent")
    command = ["jupyter-book", "build", str(SRC), "--builder", "pdflatex", "--path-output", str(OUT)]
    print("+", " ".join(command), flush=True)
    code = subprocess.call(command, cwd=ROOT, env=env)
    built = OUT / "_build" / "latex" / "book.pdf"
    if code != 0 or not built.exists():
        print(f"PDF build failed (exit {code}); the LaTeX log is {built.with_suffix('.log')}", file=sys.stderr)
        return code or 1
    shutil.copy2(built, PDF)
    print(f"\nPDF edition built in {time.perf_counter() - start:.0f} s: {PDF}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
