"""The API reference (book/api/): one page per public module of mldyn_lite, every exported name on it.

Source-level checks (always run): every public module (and subpackage) of ``mldyn_lite`` has a page
``book/api/<module>.md`` that starts with the label ``(api-<module>)=``, runs ``automodule`` on it and is in
``_toc.yml`` under the reference's index; there is no page for a module that does not exist; every
``{ref}`` to an ``api-...`` label anywhere in the book names an existing page.

Built-site check (skipped, with the reason, when ``_build/html`` or ``MLDYN_SITE`` holds no built book):
every name of every module's ``__all__`` is on that module's page, either documented there (an anchor
``id="mldyn_lite.<module>.<name>"``) or, for a name the module re-exports from another public module,
linked to where it is documented (``book/_ext/api_docs.py``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

import mldyn_lite

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "book" / "api"
SITE = Path(os.environ.get("MLDYN_SITE") or ROOT / "_build" / "html")
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from api_docs import reexports  # noqa: E402


def public_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(mldyn_lite.__path__) if not m.name.startswith("_"))


MODULES = public_modules()


def toc_files() -> list[str]:
    def walk(entries):
        for entry in entries:
            yield entry["file"]
            yield from walk(entry.get("sections", []))

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"], *(f for part in toc["parts"] for f in walk(part["chapters"]))]


def test_there_are_public_modules():
    assert len(MODULES) >= 20, MODULES  # guards against iterating an empty or wrong package


@pytest.mark.parametrize("module", MODULES)
def test_every_public_module_has_a_page(module):
    page = API / f"{module}.md"
    assert page.exists(), f"no API page for mldyn_lite.{module}: write book/api/{module}.md (see book/api/flows.md)"
    text = page.read_text()
    assert text.startswith(f"(api-{module})=\n"), f"{page.name} must start with the label (api-{module})="
    assert re.search(rf"^\.\. automodule:: mldyn_lite\.{module}$", text, re.M), f"{page.name}: no automodule"
    assert f"book/api/{module}" in toc_files(), f"book/api/{module} is not in _toc.yml"


def test_no_page_without_a_module_and_the_index_is_in_the_toc():
    pages = {p.stem for p in API.glob("*.md")} - {"index"}
    assert pages <= set(MODULES), f"pages for modules that do not exist: {sorted(pages - set(MODULES))}"
    files = toc_files()
    assert "book/api/index" in files
    sections = files[files.index("book/api/index") + 1 :]
    assert {f"book/api/{m}" for m in MODULES} <= set(sections), "module pages must be sections of book/api/index"


def api_references() -> dict[str, set[str]]:
    """{page: api labels it references with {ref}}, over the book's markdown pages and notebooks."""
    pattern = re.compile(r"\{ref\}`(?:[^`<]*<)?(api-[\w-]+)>?`")
    found = {}
    for path in [*ROOT.glob("book/**/*.md"), *ROOT.glob("notebooks/**/*.ipynb"), ROOT / "CONTRIBUTING.md"]:
        if ".ipynb_checkpoints" in path.parts:
            continue
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        else:
            text = path.read_text()
        labels = set(pattern.findall(text))
        if labels:
            found[str(path.relative_to(ROOT))] = labels
    return found


def test_every_api_reference_names_a_page():
    labels = {"api-index"} | {f"api-{m}" for m in MODULES}
    unknown = {page: sorted(refs - labels) for page, refs in api_references().items() if refs - labels}
    assert not unknown, f"references to API pages that do not exist: {unknown}"


# --- the built site ------------------------------------------------------------------------------


def built_page(module: str) -> str:
    if not (SITE / "index.html").exists():
        pytest.skip(f"the book is not built ({SITE}): python3 dev.py book")
    page = SITE / "book" / "api" / f"{module}.html"
    assert page.exists(), f"the built book has no {page.relative_to(SITE)}: built before the API reference existed?"
    return page.read_text()


@pytest.mark.parametrize("module", MODULES)
def test_every_exported_name_is_on_its_page(module):
    html = built_page(module)
    mod = importlib.import_module(f"mldyn_lite.{module}")
    elsewhere = dict(reexports(mod))
    missing = []
    for name in getattr(mod, "__all__", []):
        if name in elsewhere:
            found = f'#{elsewhere[name]}"' in html  # a link to its own module's page
        else:
            found = f'id="mldyn_lite.{module}.{name}"' in html
        if not found:
            missing.append(name)
    assert not missing, f"names of mldyn_lite.{module}.__all__ not on its API page: {missing}"


def test_the_package_names_are_on_the_index():
    if not (SITE / "index.html").exists():
        pytest.skip(f"the book is not built ({SITE}): python3 dev.py book")
    html = (SITE / "book" / "api" / "index.html").read_text()
    elsewhere = dict(reexports(mldyn_lite))
    missing = [
        n
        for n in mldyn_lite.__all__
        if f'#{elsewhere.get(n, "mldyn_lite." + n)}"' not in html and f'id="mldyn_lite.{n}"' not in html
    ]
    assert not missing, f"names of mldyn_lite.__all__ not on the API index: {missing}"
