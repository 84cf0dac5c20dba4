"""The PDF edition (``python3 dev.py pdf``, ``scripts/build_pdf.py``), read back with poppler's tools.

``python3 dev.py test`` builds the PDF (when TeX is installed) and then runs this file. It checks that
the PDF holds the whole book: a sane number of pages, the title of every page of ``_toc.yml`` and every
part, no unresolved reference ("??" in the text, or LaTeX's "undefined references"), the bibliography,
the figures, every live slider panel as its static figure, and no widget or plotly debris.

Skipped, with the reason, when the PDF or poppler's ``pdftotext`` is missing — except in CI
(``CI=true``) or with ``MLDYN_REQUIRE_PDF=1``, where a missing PDF fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_pdf  # noqa: E402  (scripts/build_pdf.py: the paths and the panel note)

PDF = Path(os.environ.get("MLDYN_PDF") or build_pdf.PDF)
LATEX_LOG = build_pdf.OUT / "_build" / "latex" / "book.log"
LATEX_SOURCE = LATEX_LOG.with_suffix(".tex")
# About 250 pages in December 2026 (19 notebooks, 11 other pages). Far fewer means pages or outputs went
# missing; far more means something is printed that should not be (e.g. a figure's JSON as text).
MIN_PAGES, MAX_PAGES = 120, 600


def skip_or_fail(reason: str):
    if os.environ.get("MLDYN_REQUIRE_PDF") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"the PDF must be checked here (CI=true or MLDYN_REQUIRE_PDF=1) but cannot: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pdf() -> Path:
    for tool in ("pdftotext", "pdfinfo", "pdfimages"):
        if shutil.which(tool) is None:
            skip_or_fail(f"needs poppler's {tool} (Debian: apt-get install poppler-utils)")
    if not PDF.exists():
        skip_or_fail(
            f"no PDF at {PDF.relative_to(ROOT) if PDF.is_relative_to(ROOT) else PDF}: "
            f"build it with `python3 dev.py pdf` (needs {build_pdf.TEX_PACKAGES})"
        )
    return PDF


@cache
def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def normalise(text: str) -> str:
    """Compare text as pdftotext gives it: NFKC (math italic 𝑥 -> x), plain quotes and dashes, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00ad": ""}))
    return re.sub(r"\s+", " ", text).strip().lower()


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())

    def files(entries):
        for entry in entries:
            if "file" in entry:
                yield entry["file"]
            yield from files(entry.get("sections", []))

    return [toc["root"]] + [file for part in toc["parts"] for file in files(part["chapters"])]


def page_title(page: str) -> str:
    """The first level-1 heading of a page, without markdown emphasis or code marks."""
    notebook = ROOT / f"{page}.ipynb"
    if notebook.exists():
        text = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "markdown")
    else:
        text = (ROOT / f"{page}.md").read_text()
    heading = re.search(r"^# (.+)$", text, re.M)
    assert heading, f"{page} has no level-1 heading"
    return re.sub(r"[*_`]", "", heading.group(1))


def panel_cells() -> dict[str, int]:
    """Notebooks with an ipywidgets panel (an output of the widget view type), and how many panels."""
    found = {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        count = sum(
            any(build_pdf.WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))
            for c in nb.cells
            if c.cell_type == "code"
        )
        if count:
            found[str(path.relative_to(ROOT).with_suffix(""))] = count
    return found


def test_page_count_is_sane(pdf):
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert MIN_PAGES <= pages <= MAX_PAGES, f"{pages} pages, expected {MIN_PAGES}..{MAX_PAGES}"


def test_every_page_and_part_title_is_in_the_pdf(pdf):
    text = normalise(pdf_text(pdf))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    titles = [page_title(page) for page in toc_pages()] + [part["caption"] for part in toc["parts"]]
    missing = [title for title in titles if normalise(title) not in text]
    assert not missing, f"titles not found in the PDF's text: {missing}"


def test_no_unresolved_references(pdf):
    text = pdf_text(pdf)
    lines = [line.strip() for line in text.splitlines() if "??" in line]
    assert not lines, f"unresolved references ('??') in the PDF: {lines[:5]}"
    if LATEX_LOG.exists() and PDF == build_pdf.PDF:
        log = LATEX_LOG.read_text(errors="replace")
        assert "There were undefined references" not in log, f"LaTeX reports undefined references: see {LATEX_LOG}"


def test_bibliography_lists_every_entry(pdf):
    keys = re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M)
    text = normalise(pdf_text(pdf))
    assert "bibliography" in text
    if LATEX_SOURCE.exists() and PDF == build_pdf.PDF:
        items = re.findall(r"\\bibitem", LATEX_SOURCE.read_text())
        assert len(items) == len(keys), f"{len(items)} bibliography items for {len(keys)} entries of references.bib"
    # a citation the landing page makes, resolved to author and year
    assert "li, 2021" in text


def test_figures_are_in_the_pdf(pdf):
    stored = sum(
        "image/png" in o.get("data", {})
        for path in (ROOT / "notebooks").rglob("*.ipynb")
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], check=True, capture_output=True, text=True).stdout
    images = len(listing.splitlines()) - 2  # two header lines
    assert images >= stored, f"{images} images in the PDF, the notebooks store {stored} figures"


def test_numbered_equations_are_numbered(pdf):
    """Every labelled display equation of the sources is a numbered equation in the LaTeX source."""
    sources = [p.read_text() for p in (ROOT / "book").glob("*.md")]
    sources += [
        "\n".join(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
        for p in (ROOT / "notebooks").rglob("*.ipynb")
    ]
    labels = sum(len(re.findall(r"\$\$\s*\([\w:-]+\)", s)) + len(re.findall(r"```\{math\}\s*\n:label:", s)) for s in sources)
    if not (LATEX_SOURCE.exists() and PDF == build_pdf.PDF):
        pytest.skip("needs the LaTeX source of the PDF (_build/pdf/_build/latex/book.tex)")
    numbered = len(re.findall(r"\\begin\{equation\}", LATEX_SOURCE.read_text()))
    assert numbered >= labels, f"{numbered} numbered equations for {labels} labelled ones in the sources"


def test_every_slider_panel_is_shown_as_its_figure(pdf):
    panels = panel_cells()
    assert panels, "no notebook with an ipywidgets panel found: the test would check nothing"
    text = normalise(pdf_text(pdf))
    mark = normalise(build_pdf.PANEL_MARK)
    assert text.count(mark) == sum(panels.values()), "every live panel is printed once, with its note"
    manifest = build_pdf.OUT / "panels.json"
    if manifest.exists() and PDF == build_pdf.PDF:
        import json

        built = json.loads(manifest.read_text())
        assert set(built) == set(panels)
        assert all(panel["figures"] >= 1 for found in built.values() for panel in found), built
    for debris in ("interactive(children", "<function ", "application/vnd.plotly", "Figure({"):
        assert debris.lower() not in text, f"widget or plotly output printed as text: {debris!r}"


def test_exercises_are_in_the_pdf(pdf):
    labels = [
        re.search(r":label: (\S+)", s)
        for p in (ROOT / "notebooks").rglob("*.ipynb")
        for s in (c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
        if s.lstrip().startswith(("```{exercise}", ":::{exercise}"))
    ]
    exercises = len([m for m in labels if m])
    assert exercises, "no exercise found in the notebooks: the test would check nothing"
    printed = len(re.findall(r"\bExercise \d+\b", pdf_text(pdf)))
    assert printed >= exercises, f"{printed} numbered exercises in the PDF, {exercises} in the notebooks"


LANDING = """# Tiny book

```{pdf-edition}
```
"""


@pytest.mark.parametrize("built", [True, False], ids=["pdf-built", "no-pdf"])
def test_landing_page_links_the_pdf_only_when_built(tmp_path, built):
    """book/_ext/pdf_edition.py in a throwaway book built with -W -n: a link and a copy, or a sentence."""
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(
        yaml.safe_dump(
            {
                "title": "tiny",
                "execute": {"execute_notebooks": "off"},
                "sphinx": {"local_extensions": {"pdf_edition": str(ROOT / "book" / "_ext")}},
            }
        )
    )
    (book / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (book / "index.md").write_text(LANDING)
    pdf = tmp_path / "mldyn-book.pdf"
    if built:
        pdf.write_bytes(b"%PDF-1.4 stand-in\n")
    env = {**os.environ, "MLDYN_PDF": str(pdf)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "-W", "-n"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (book / "_build" / "html" / "index.html").read_text()
    copied = book / "_build" / "html" / "_static" / "mldyn-book.pdf"
    if built:
        assert 'href="_static/mldyn-book.pdf"' in html and copied.read_bytes() == pdf.read_bytes()
    else:
        assert "mldyn-book.pdf" not in html and not copied.exists()
        assert "python3 dev.py pdf" in re.sub(r"<[^>]+>", "", html)
