"""The claims registry: every quantitative claim of the book, registered once, on the test that asserts it.

A claim is registered with a pytest marker on a test function (``pytest -m claim`` runs exactly these)::

    @pytest.mark.claim(
        "ch2-sme-order-1",                           # id: ch<N>-<short-name>, unique in the book
        page="notebooks/ch2/07_weak_approximation",  # the page, as in _toc.yml (no extension)
        anchor="ch2-sme-weak-order",                 # a MyST label `(ch2-sme-weak-order)=` on that page
        statement="SME1 is a weak order-1 approximation of SGD",
        number="1.02",                               # as printed on the page (stored outputs or text)
        tolerance="|slope - 1| <= 0.15",             # what the test asserts
    )
    def test_sme1_weak_order_one(): ...

This module reads the markers from the source of ``tests/*.py`` with :mod:`ast` (no pytest run, no
imports), checks them against the pages, and writes the book's ledger page ``book/claims.md``:

    python tests/claims.py            # check the registry; exit 1 and list the problems if any
    python tests/claims.py --write    # (re)write book/claims.md from the registry

The book build regenerates ``book/claims.md`` too (``book/_ext/claims_page.py``);
``tests/test_claims.py`` fails when the committed page is stale.

A page may list its claims in an admonition whose title is exactly ``Claims on this page``; every
backticked token of its body is a claim id, each must be registered on that page, and together the
page's claims admonitions list all of its claims::

    ```{admonition} Claims on this page
    :class: tip

    `ch2-sme-order-1`, `ch2-sme-order-2`
    ```
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ADMONITION_TITLE",
    "FIELDS",
    "MIN_CLAIMS",
    "PAGE_FILE",
    "Book",
    "Claim",
    "ClaimError",
    "Page",
    "admonition_problems",
    "check",
    "claim_problems",
    "collect",
    "collect_source",
    "duplicate_problems",
    "render_page",
    "write_page",
]

ROOT = Path(__file__).resolve().parents[1]
PAGE_FILE = "book/claims.md"  # the generated ledger, relative to the repository root
MIN_CLAIMS = 40
FIELDS = ("id", "page", "anchor", "statement", "number", "tolerance")
ADMONITION_TITLE = "Claims on this page"
ID_PATTERN = re.compile(r"^ch[0-9]+-[a-z0-9]+(?:-[a-z0-9]+)*$")
LABEL_LINE = re.compile(r"^\s*\(([^()\s]+)\)=\s*$")
OPTION_LABEL = re.compile(r"^\s*:label:\s*(\S+)\s*$")  # the label of a directive (exercise, figure, math)
HEADING_LINE = re.compile(r"^\s*(#{1,6})\s+(.*?)\s*#*\s*$")
DIRECTIVE_LINE = re.compile(r"^\s*(?:`{3,}|:{3,})\s*\{([\w-]+)\}\s*(.*?)\s*$")
FENCE_OPEN = re.compile(r"^\s*(`{3,}|:{3,})\s*\{admonition\}\s*(.*?)\s*$")
OUTPUT_MIME = ("text/plain", "text/markdown", "text/latex", "text/html")


class ClaimError(ValueError):
    """A claim marker that cannot be read (missing or non-string field, misplaced marker)."""


@dataclass(frozen=True)
class Claim:
    id: str
    page: str
    anchor: str
    statement: str
    number: str
    tolerance: str
    file: str  # the test file, relative to the repository root (tests/test_x.py)
    test: str  # the test's node name, e.g. tests/test_x.py::test_name or tests/test_x.py::TestA::test_b
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# --- collecting the markers ----------------------------------------------------------------------------------


def _is_claim_marker(node: ast.expr) -> bool:
    """``pytest.mark.claim(...)`` (or ``mark.claim(...)`` after ``from pytest import mark``)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) or node.func.attr != "claim":
        return False
    mark = node.func.value
    return (
        isinstance(mark, ast.Attribute)
        and mark.attr == "mark"
        and isinstance(mark.value, ast.Name)
        and mark.value.id == "pytest"
    ) or (isinstance(mark, ast.Name) and mark.id == "mark")


def _string(value: ast.expr, name: str, where: str) -> str:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        if not value.value.strip():
            raise ClaimError(f"{where}: field {name!r} is empty")
        return value.value
    raise ClaimError(f"{where}: field {name!r} must be a string literal, not {ast.unparse(value)}")


def _fields(call: ast.Call, where: str) -> dict[str, str]:
    if len(call.args) > 1:
        raise ClaimError(f"{where}: a claim takes one positional argument (the id); use keywords for the rest")
    values: dict[str, str] = {}
    if call.args:
        values["id"] = _string(call.args[0], "id", where)
    where = f"{where}: claim {values.get('id', '?')!r}"
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ClaimError(f"{where}: **kwargs are not allowed in a claim marker")
        if keyword.arg not in FIELDS:
            raise ClaimError(f"{where}: unknown field {keyword.arg!r} (fields: {', '.join(FIELDS)})")
        if keyword.arg in values:
            raise ClaimError(f"{where}: field {keyword.arg!r} given twice")
        values[keyword.arg] = _string(keyword.value, keyword.arg, where)
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise ClaimError(f"{where} lacks the field(s) {', '.join(missing)}")
    if not ID_PATTERN.match(values["id"]):
        raise ClaimError(f"{where}: the id must look like ch<N>-<short-name> (lower case, digits, '-')")
    if values["page"].endswith((".ipynb", ".md")) or values["page"].startswith("/"):
        raise ClaimError(
            f"{where}: page {values['page']!r} must be the path from the repository root without extension, as in _toc.yml"
        )
    for name in ("number", "tolerance"):
        if "`" in values[name] or "\n" in values[name]:
            raise ClaimError(f"{where}: {name} {values[name]!r} may not contain backticks or newlines")
    return values


def collect_source(source: str, file: str) -> list[Claim]:
    """The claims registered in one test file's source (``file`` is its path from the repository root)."""
    tree = ast.parse(source, filename=file)
    claims: list[Claim] = []

    def visit(body: list[ast.stmt], prefix: str, in_test_class: bool) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}::{node.name}", node.name.startswith("Test"))
                continue
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for decorator in node.decorator_list:
                if not _is_claim_marker(decorator):
                    continue
                where = f"{file}:{decorator.lineno}"
                collected = node.name.startswith("test") and (prefix == file or in_test_class)
                if not collected:
                    raise ClaimError(
                        f"{where}: the claim marker is on {node.name!r}, which pytest does not collect "
                        "(put it on a test_* function of a test file)"
                    )
                claims.append(
                    Claim(**_fields(decorator, where), file=file, test=f"{prefix}::{node.name}", line=decorator.lineno)
                )

    visit(tree.body, file, False)
    return claims


def collect(root: Path | str = ROOT) -> list[Claim]:
    """Every claim registered in ``root/tests/*.py``, in file order."""
    root = Path(root)
    claims: list[Claim] = []
    for path in sorted((root / "tests").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "claim" in source:
            claims += collect_source(source, path.relative_to(root).as_posix())
    return claims


# --- the pages -----------------------------------------------------------------------------------------------


@dataclass
class Page:
    """What the checks need of one page: its markdown, its printed outputs, its labels and claims admonitions."""

    name: str  # as in _toc.yml
    markdown: list[str]  # the markdown cells of a notebook, or the whole text of a .md page
    outputs: list[str] = field(default_factory=list)  # the text of the stored outputs (notebooks)
    caption: str = ""  # the toc part this page belongs to

    @property
    def lines(self) -> list[str]:
        return [line for block in self.markdown for line in block.splitlines()]

    @property
    def title(self) -> str:
        for line in self.lines:
            match = HEADING_LINE.match(line)
            if match and len(match.group(1)) == 1:
                return match.group(2)
        return self.name

    def labels(self) -> dict[str, int]:
        """Label -> line number (in the concatenated markdown) of every ``(label)=`` line and ``:label:`` option."""
        found: dict[str, int] = {}
        for number, line in enumerate(self.lines):
            match = LABEL_LINE.match(line) or OPTION_LABEL.match(line)
            if match:
                found.setdefault(match.group(1), number)
        return found

    def heading_after(self, label: str) -> str | None:
        """The heading that ``(label)=`` stands right before (else the section it is in), or the directive whose
        ``:label:`` it is, if any."""
        lines = self.lines
        start = self.labels().get(label)
        if start is None:
            return None
        if OPTION_LABEL.match(lines[start]):  # a directive's label: its name and title ("Exercise: Less noise")
            for previous in reversed(lines[:start]):
                match = DIRECTIVE_LINE.match(previous)
                if match:
                    return f"{match.group(1).capitalize()}: {match.group(2)}".rstrip(": ")
            return None
        for line in lines[start + 1 :]:
            if not line.strip() or LABEL_LINE.match(line):
                continue
            match = HEADING_LINE.match(line)
            if match:
                return match.group(2)
            break
        for line in reversed(lines[:start]):  # a label inside a section: that section's heading
            match = HEADING_LINE.match(line)
            if match and len(match.group(1)) > 1:
                return match.group(2)
        return None

    def shows(self, number: str) -> bool:
        """Whether ``number`` appears verbatim, as a whole number (not inside a longer one), in the outputs or text."""
        pattern = re.compile(r"(?<![0-9.])" + re.escape(number) + r"(?![0-9]|\.[0-9])")
        return any(pattern.search(text) for text in (*self.outputs, *self.markdown))

    def admonitions(self) -> list[list[str]]:
        """The ids listed by each ``Claims on this page`` admonition of the page (backticked tokens of its body)."""
        lists = []
        for block in self.markdown:
            lines = block.splitlines()
            for start, line in enumerate(lines):
                match = FENCE_OPEN.match(line)
                if not match or match.group(2) != ADMONITION_TITLE:
                    continue
                fence = match.group(1)
                body = []
                for inner in lines[start + 1 :]:
                    if re.fullmatch(re.escape(fence[0]) + f"{{{len(fence)},}}", inner.strip()):
                        break
                    if not inner.lstrip().startswith(":"):
                        body.append(inner)
                lists.append(re.findall(r"`([^`\s]+)`", "\n".join(body)))
        return lists


def _toc_pages(toc: dict) -> list[tuple[str, str]]:
    """(file, part caption) of every page of a Jupyter Book toc, in reading order."""
    pages = [(str(toc["root"]), "")] if "root" in toc else []

    def walk(entries, caption):
        for entry in entries or []:
            if "file" in entry:
                pages.append((str(entry["file"]), caption))
            walk(entry.get("sections"), caption)
            walk(entry.get("chapters"), caption)

    for part in toc.get("parts", []):
        walk(part.get("chapters"), part.get("caption", ""))
    walk(toc.get("chapters"), "")
    walk(toc.get("sections"), "")
    return pages


def _strip_extension(name: str) -> str:
    for extension in (".ipynb", ".md"):
        if name.endswith(extension):
            return name[: -len(extension)]
    return name


def _read_page(root: Path, name: str, caption: str) -> Page | None:
    notebook, markdown = root / f"{name}.ipynb", root / f"{name}.md"
    if notebook.is_file():
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        text = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]
        outputs = []
        for cell in cells:
            for output in cell.get("outputs", []):
                if "text" in output:
                    outputs.append("".join(output["text"]))
                for mime in OUTPUT_MIME:
                    if mime in output.get("data", {}):
                        value = output["data"][mime]
                        outputs.append(value if isinstance(value, str) else "".join(value))
        return Page(name, text, outputs, caption)
    if markdown.is_file():
        return Page(name, [markdown.read_text(encoding="utf-8")], [], caption)
    return None


@dataclass
class Book:
    """The pages of the book's table of contents (``_toc.yml``), read from ``root``."""

    root: Path
    order: list[str]  # page names in reading order
    pages: dict[str, Page]  # the pages whose file exists
    missing: set[str]  # pages in the toc whose file does not exist

    @classmethod
    def load(cls, root: Path | str = ROOT) -> Book:
        import yaml

        root = Path(root)
        toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
        order, pages, missing = [], {}, set()
        for name, caption in _toc_pages(toc):
            name = _strip_extension(name)
            order.append(name)
            page = _read_page(root, name, caption)
            if page is None:
                missing.add(name)
            else:
                pages[name] = page
        return cls(root, order, pages, missing)


# --- the checks ----------------------------------------------------------------------------------------------


def duplicate_problems(claims: list[Claim]) -> list[str]:
    """One message per claim id that is registered more than once."""
    problems = []
    for ident, count in Counter(claim.id for claim in claims).items():
        if count > 1:
            places = ", ".join(claim.test for claim in claims if claim.id == ident)
            problems.append(f"claim {ident!r} is registered {count} times: {places}")
    return problems


def claim_problems(claims: list[Claim], book: Book) -> list[str]:
    """One message per problem, each naming the claim id: duplicate ids, missing pages, anchors or numbers."""
    problems = duplicate_problems(claims)
    label_pages: dict[str, list[str]] = {}
    for page in book.pages.values():
        for label in page.labels():
            label_pages.setdefault(label, []).append(page.name)
    for claim in claims:
        where = f"claim {claim.id!r} ({claim.test})"
        if claim.page not in book.order:
            problems.append(f"{where}: page {claim.page!r} is not in _toc.yml")
            continue
        page = book.pages.get(claim.page)
        if page is None:
            problems.append(
                f"{where}: page {claim.page!r} is in _toc.yml but neither {claim.page}.ipynb nor {claim.page}.md exists"
            )
            continue
        if claim.anchor not in page.labels():
            problems.append(
                f"{where}: anchor '({claim.anchor})=' is not a label in the markdown of {claim.page} "
                "(neither a '(label)=' line nor a directive's ':label:')"
            )
        elif len(label_pages[claim.anchor]) > 1:
            problems.append(
                f"{where}: anchor {claim.anchor!r} is defined on several pages: {', '.join(label_pages[claim.anchor])}"
            )
        if not page.shows(claim.number):
            problems.append(
                f"{where}: number {claim.number!r} does not appear in the stored outputs or the text of {claim.page}"
            )
    return problems


def admonition_problems(claims: list[Claim], book: Book) -> list[str]:
    """Claims admonitions that list an id nobody registered or a claim of another page, or omit one of the page's."""
    registered = {claim.id: claim for claim in claims}
    problems = []
    for page in book.pages.values():
        admonitions = page.admonitions()
        if admonitions:
            listed_anywhere = {ident for listed in admonitions for ident in listed}
            omitted = [claim.id for claim in claims if claim.page == page.name and claim.id not in listed_anywhere]
            if omitted:
                problems.append(
                    f"{page.name}: its '{ADMONITION_TITLE}' admonition omits the claim(s) "
                    f"{', '.join(repr(ident) for ident in omitted)} registered on this page"
                )
        for listed in admonitions:
            if not listed:
                problems.append(f"{page.name}: its '{ADMONITION_TITLE}' admonition lists no claim id in backticks")
            for ident in listed:
                if ident not in registered:
                    problems.append(
                        f"{page.name}: its '{ADMONITION_TITLE}' admonition lists claim {ident!r}, which no test registers"
                    )
                elif registered[ident].page != page.name:
                    problems.append(
                        f"{page.name}: its '{ADMONITION_TITLE}' admonition lists claim {ident!r}, "
                        f"which is registered on {registered[ident].page}"
                    )
    return problems


def check(root: Path | str = ROOT, minimum: int = MIN_CLAIMS) -> list[str]:
    """Every problem of the registry under ``root`` (empty when all is well)."""
    root = Path(root)
    try:
        claims = collect(root)
    except ClaimError as error:
        return [str(error)]
    book = Book.load(root)
    problems = claim_problems(claims, book) + admonition_problems(claims, book)
    if len(claims) < minimum:
        problems.append(f"only {len(claims)} claims are registered; the book promises at least {minimum}")
    page = root / PAGE_FILE
    if not page.is_file() or page.read_text(encoding="utf-8") != render_page(claims, book):
        problems.append(
            f"{PAGE_FILE} is stale: regenerate it with `python tests/claims.py --write` (the book build does it too)"
        )
    return problems


# --- the ledger page -----------------------------------------------------------------------------------------

INTRO = """\
% Generated from the claims registry by tests/claims.py (python tests/claims.py --write, or the book build).
% Do not edit by hand: register a claim with @pytest.mark.claim on its test (see CONTRIBUTING.md).

(claims-ledger)=
# Claims ledger

Every quantitative claim of this book is measured on its page and asserted by a test. This page
lists all {count} of them, from the registry that the tests carry: each row gives the claim, a link
to the section where it is shown, the number printed there when the book was built, and the test
that asserts it, with the tolerance it asserts.

**Check them yourself.** From a clone of the repository, `python3 dev.py test` runs every test
(see the README); `.venv/bin/python -m pytest -m claim` runs only the tests of this ledger, and
`.venv/bin/python -m pytest "<test name>"`, with a test name from the last column, runs one row. The tests recompute
each number with the page's settings (or, where the page is too long to rerun in a unit test,
with settings stated in the test); they fail when the claim stops holding. A companion test
(`tests/test_claims.py`) fails when a claim names a page, section or number that the book does
not show, and when this page is out of date.
"""


def _cell(text: str) -> str:
    """Text for one list-table cell (one line); ``*`` and ``_`` outside ``$...$`` math are literal."""
    parts = " ".join(text.split()).split("$")
    return "$".join(re.sub(r"([*_])", r"\\\1", part) if index % 2 == 0 else part for index, part in enumerate(parts))


def _link_title(claim: Claim, page: Page) -> str:
    heading = page.heading_after(claim.anchor) or ""
    title = page.title
    number = title.split()[0] if title and title.split()[0][0].isdigit() else ""
    text = " · ".join(part for part in (number or title, heading) if part)
    return re.sub(r"[`<>$\\*_]", "", text).strip() or claim.anchor


def render_page(claims: list[Claim], book: Book) -> str:
    """The text of ``book/claims.md``: one list-table row per claim, grouped by the toc's parts (chapters)."""
    position = {name: index for index, name in enumerate(book.order)}

    def key(claim: Claim):
        page = book.pages.get(claim.page)
        line = page.labels().get(claim.anchor, 10**9) if page else 10**9
        return position.get(claim.page, 10**9), line, claim.id

    text = [INTRO.format(count=len(claims))]
    groups: dict[str, list[Claim]] = {}
    for claim in sorted(claims, key=key):
        page = book.pages.get(claim.page)
        groups.setdefault(page.caption if page and page.caption else "Other pages", []).append(claim)
    for caption, members in groups.items():
        text.append(
            f"\n## {caption}\n\n```{{list-table}}\n:header-rows: 1\n:widths: 18 37 20 25\n\n"
            "* - Claim\n  - Statement\n  - Shown (number)\n  - Asserted by (tolerance)\n"
        )
        for claim in members:
            page = book.pages.get(claim.page)
            if page is not None and claim.anchor in page.labels():
                shown = f"{{ref}}`{_link_title(claim, page)} <{claim.anchor}>`"
            else:  # a broken claim: named without a link, so the page still builds (tests/test_claims.py fails)
                shown = f"`{claim.page}` (anchor `{claim.anchor}` missing)"
            text.append(
                f"* - `{claim.id}`\n"
                f"  - {_cell(claim.statement)}\n"
                f"  - {shown}: `{claim.number}`\n"
                f"  - `{claim.test}`: `{claim.tolerance}`\n"
            )
        text.append("```\n")
    return "".join(text)


def write_page(root: Path | str = ROOT) -> bool:
    """Write ``book/claims.md`` from the registry; return whether its content changed."""
    root = Path(root)
    text = render_page(collect(root), Book.load(root))
    path = root / PAGE_FILE
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        changed = write_page(ROOT)
        print(f"{PAGE_FILE}: {'written' if changed else 'up to date'} ({len(collect(ROOT))} claims)")
        return 0
    if argv:
        print(__doc__)
        return 2
    problems = check(ROOT)
    for problem in problems:
        print(problem)
    print(f"{len(collect(ROOT))} claims, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
