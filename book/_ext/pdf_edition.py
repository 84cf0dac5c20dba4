"""The landing page's link to the PDF edition, shown only when the PDF was built.

A Sphinx extension, loaded from ``_config.yml`` (``sphinx.local_extensions``). The directive

    ```{pdf-edition}
    ```

renders, in the HTML build, a download link to ``_static/mldyn-book.pdf`` when
``_build/pdf/mldyn-book.pdf`` exists (``python3 dev.py pdf``, ``scripts/build_pdf.py``), and copies the
PDF there at the end of the build; without the PDF it renders a sentence saying how to build it, so
there is never a broken link and nothing for ``-W -n`` to warn about. A page with the directive is
read again when the PDF appeared, changed or disappeared since it was last read. In the PDF itself the
directive renders nothing.

It also mends, in the LaTeX build only, references to exercises across pages (sphinx-exercise 1.x
labels an exercise ``exercise:LABEL`` in LaTeX, while Sphinx refers to ``PAGE:LABEL``): every exercise
gets the second label too, and a numbered reference (``{numref}``) to an exercise on another page is
written with the number Sphinx resolved, as sphinx-exercise does for references on the same page.
Without this the PDF shows "Exercise ??".
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

__all__ = ["PDF", "PDF_NAME", "ExerciseReferences", "PdfEdition", "setup"]

ROOT = Path(__file__).resolve().parents[2]  # book/_ext/pdf_edition.py -> the repository root
PDF_NAME = "mldyn-book.pdf"
PDF = Path(os.environ.get("MLDYN_PDF") or ROOT / "_build" / "pdf" / PDF_NAME)  # MLDYN_PDF: for tests


class PdfEdition(SphinxDirective):
    """A paragraph with the PDF's download link, or how to build the PDF."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        if self.env.app.builder.format != "html":
            return []
        if not hasattr(self.env, "pdf_edition_pages"):
            self.env.pdf_edition_pages = {}
        self.env.pdf_edition_pages[self.env.docname] = pdf_state()  # see pages_to_redo
        paragraph = nodes.paragraph(classes=["pdf-edition"])
        if PDF.exists():
            href = posixpath.relpath(f"_static/{PDF_NAME}", posixpath.dirname(self.env.docname) or ".")
            size = PDF.stat().st_size / 1e6
            paragraph += nodes.strong(text="PDF edition. ")
            paragraph += nodes.raw(
                "",
                f'<a class="reference download" href="{href}" download>'
                f"Download the whole book as a PDF</a> ({size:.1f} MB), "
                "built from the same notebooks, with the sliders at their starting values.",
                format="html",
            )
        else:
            paragraph += nodes.strong(text="PDF edition. ")
            paragraph += nodes.Text("Not built with this copy of the book; ")
            paragraph += nodes.literal(text="python3 dev.py pdf")
            paragraph += nodes.Text(" builds it (needs TeX Live, see the repository's README).")
        return [paragraph]


class ExerciseReferences(SphinxPostTransform):
    """LaTeX only: labels and numbered references for exercises referred to from other pages."""

    default_priority = 25  # after Sphinx resolves references (10) and sphinx-exercise its titles (20-22)
    formats = ("latex",)

    def run(self, **kwargs) -> None:
        registry = getattr(self.env, "sphinx_exercise_registry", {})
        if not registry:
            return
        from sphinx_exercise.nodes import exercise_enumerable_node, exercise_latex_number_reference, exercise_node

        for node in list(self.document.findall(lambda n: isinstance(n, (exercise_node, exercise_enumerable_node)))):
            label = node.get("label", "")
            if label in registry:
                target = f"{registry[label]['docname']}:{label}"
                label_node = nodes.raw("", r"\phantomsection\label{\detokenize{" + target + "}}", format="latex")
                node.parent.insert(node.parent.index(node), label_node)  # before it, as sphinx-exercise's label
        for node in list(self.document.findall(addnodes.number_reference)):
            label = node.get("refid") or node.get("refuri", "").rpartition("#")[2]
            if label in registry and node.get("refuri"):
                reference = exercise_latex_number_reference()
                reference["refid"] = label
                reference += nodes.Text(node.astext())
                node.replace_self(reference)


def pdf_state() -> tuple[int, int] | None:
    """What the page shows depends on: whether the PDF exists, and its size and time."""
    if not PDF.exists():
        return None
    stat = PDF.stat()
    return stat.st_mtime_ns, stat.st_size


def pages_to_redo(app: Sphinx, env, added, changed, removed) -> list[str]:
    """Pages whose link was written for another PDF (or none): a new, rebuilt or deleted PDF redoes them."""
    state = pdf_state()
    return [doc for doc, seen in getattr(env, "pdf_edition_pages", {}).items() if seen != state and doc in env.found_docs]


def purge_page(app: Sphinx, env, docname: str) -> None:
    getattr(env, "pdf_edition_pages", {}).pop(docname, None)


def merge_pages(app: Sphinx, env, docnames, other) -> None:
    if not hasattr(env, "pdf_edition_pages"):
        env.pdf_edition_pages = {}
    env.pdf_edition_pages.update({d: s for d, s in getattr(other, "pdf_edition_pages", {}).items() if d in docnames})


def copy_pdf(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html" and PDF.exists():
        target = Path(app.outdir) / "_static" / PDF_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PDF, target)


def setup(app: Sphinx) -> dict:
    app.add_directive("pdf-edition", PdfEdition)
    app.connect("build-finished", copy_pdf)
    app.connect("env-get-outdated", pages_to_redo)
    app.connect("env-purge-doc", purge_page)
    app.connect("env-merge-info", merge_pages)
    app.add_post_transform(ExerciseReferences)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
