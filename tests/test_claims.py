"""The claims registry (tests/claims.py) against the book, and the checks themselves on broken examples.

The first group checks the real registry: unique ids, pages that exist in the toc, anchors that exist on
their page, numbers that the page shows, claims admonitions that list registered ids, an up-to-date
book/claims.md, and at least 40 claims. The second group feeds each check a small synthetic book with
one thing broken and asserts that the check rejects it, naming the claim.
"""

import json
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

import claims as registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claims():
    return registry.collect(ROOT)


@pytest.fixture(scope="module")
def book():
    return registry.Book.load(ROOT)


def report(problems):
    return "\n".join(problems)


# --- the book's registry ----------------------------------------------------------------------------------------


def test_claim_ids_are_unique(claims):
    problems = registry.duplicate_problems(claims)
    assert not problems, report(problems)


def test_claims_name_existing_pages_anchors_and_numbers(claims, book):
    problems = registry.claim_problems(claims, book)
    assert not problems, report(problems)


def test_claims_admonitions_list_registered_claims(claims, book):
    problems = registry.admonition_problems(claims, book)
    assert not problems, report(problems)


def test_the_ledger_page_is_current(claims, book):
    page = ROOT / registry.PAGE_FILE
    assert page.is_file(), f"{registry.PAGE_FILE} is missing: python tests/claims.py --write"
    assert page.read_text(encoding="utf-8") == registry.render_page(claims, book), (
        f"{registry.PAGE_FILE} is stale: regenerate it with `python tests/claims.py --write` (the book build does it too)"
    )


def test_the_book_registers_at_least_40_claims(claims):
    assert len(claims) >= registry.MIN_CLAIMS, f"only {len(claims)} claims are registered"


def test_the_ledger_page_is_in_the_toc(book):
    assert "book/claims" in book.order


def test_the_claim_marker_is_registered_with_pytest():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"claim(id, page, anchor, statement, number, tolerance)' in text


# --- the checks reject what they should: a synthetic book ---------------------------------------------------------

GOOD_TEST = """
import pytest


@pytest.mark.claim(
    "ch1-gap-rate",
    page="notebooks/ch1/01_page",
    anchor="ch1-gap",
    statement="the gap falls like 1/N",
    number="-0.997",
    tolerance="|slope + 1| <= 0.1",
)
def test_gap():
    pass


class TestRisks:
    @pytest.mark.claim("ch1-floor", page="book/intro", anchor="intro-floor", statement="a floor",
                       number="0.093", tolerance="within 1%")
    def test_floor(self):
        pass
"""


def write_book(
    root: Path,
    test_source: str = GOOD_TEST,
    markdown: str | None = None,
    output: str | None = None,
    intro: str | None = None,
) -> Path:
    """A two-page book (one notebook, one .md page) with a test file, and its ledger page, under ``root``."""
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "notebooks" / "ch1").mkdir(parents=True, exist_ok=True)
    (root / "book").mkdir(exist_ok=True)
    (root / "_toc.yml").write_text(
        textwrap.dedent("""\
        format: jb-book
        root: book/index
        parts:
          - caption: "Chapter 1"
            chapters:
              - file: book/intro
                sections:
                  - file: notebooks/ch1/01_page
          - caption: "Back matter"
            chapters:
              - file: book/claims
        """)
    )
    (root / "book" / "index.md").write_text("# Index\n")
    (root / "book" / "intro.md").write_text(
        intro if intro is not None else "# Intro\n\n(intro-floor)=\n## The floor\n\nIt is 0.093.\n"
    )
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell(
            markdown if markdown is not None else "# 1.1 A page\n\n(ch1-gap)=\n## The gap\n\nText."
        ),
        nbformat.v4.new_code_cell(
            "print(slope)",
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=output if output is not None else "slope -0.997\n")
            ],
        ),
    ]
    nbformat.write(notebook, root / "notebooks" / "ch1" / "01_page.ipynb")
    (root / "tests" / "test_example.py").write_text(test_source)
    try:
        registry.write_page(root)
    except registry.ClaimError:
        pass  # a malformed claim: check() reports it
    return root


def problems_of(root: Path, minimum: int = 2) -> list[str]:
    return registry.check(root, minimum=minimum)


def test_a_good_synthetic_book_passes(tmp_path):
    root = write_book(tmp_path)
    assert problems_of(root) == []
    claims = registry.collect(root)
    assert [c.id for c in claims] == ["ch1-gap-rate", "ch1-floor"]
    assert [c.test for c in claims] == ["tests/test_example.py::test_gap", "tests/test_example.py::TestRisks::test_floor"]
    page = (root / "book" / "claims.md").read_text()
    assert "{ref}`1.1 · The gap <ch1-gap>`: `-0.997`" in page
    assert "`tests/test_example.py::TestRisks::test_floor`: `within 1%`" in page
    assert page.index("ch1-floor") < page.index("ch1-gap-rate")  # grouped and ordered as in the toc


def test_a_duplicate_id_is_rejected(tmp_path):
    source = GOOD_TEST + GOOD_TEST.split("class TestRisks")[0].replace("def test_gap", "def test_gap_again")
    problems = problems_of(write_book(tmp_path, source))
    assert any("'ch1-gap-rate' is registered 2 times" in p for p in problems), problems


def test_a_page_outside_the_toc_is_rejected(tmp_path):
    problems = problems_of(
        write_book(tmp_path, GOOD_TEST.replace('page="notebooks/ch1/01_page"', 'page="notebooks/ch1/02_page"'))
    )
    assert any("'ch1-gap-rate'" in p and "not in _toc.yml" in p for p in problems), problems


def test_a_page_without_a_file_is_rejected(tmp_path):
    root = write_book(tmp_path)
    (root / "notebooks" / "ch1" / "01_page.ipynb").unlink()
    problems = problems_of(root)
    assert any("'ch1-gap-rate'" in p and "neither" in p for p in problems), problems


def test_a_missing_anchor_is_rejected(tmp_path):
    problems = problems_of(write_book(tmp_path, markdown="# 1.1 A page\n\n## The gap\n\nText."))
    assert any("'ch1-gap-rate'" in p and "anchor '(ch1-gap)='" in p for p in problems), problems
    # an anchor on the .md page is looked up there
    problems = problems_of(write_book(tmp_path, intro="# Intro\n\n## The floor\n\nIt is 0.093.\n"))
    assert any("'ch1-floor'" in p and "anchor '(intro-floor)='" in p for p in problems), problems


def test_an_anchor_in_a_code_cell_or_output_does_not_count(tmp_path):
    root = write_book(tmp_path, markdown="# 1.1 A page\n\n## The gap", output="(ch1-gap)=\nslope -0.997\n")
    problems = problems_of(root)
    assert any("'ch1-gap-rate'" in p and "anchor" in p for p in problems), problems


def test_an_anchor_defined_on_two_pages_is_rejected(tmp_path):
    problems = problems_of(write_book(tmp_path, intro="# Intro\n\n(intro-floor)=\n(ch1-gap)=\n## Floor\n\n0.093\n"))
    assert any("'ch1-gap-rate'" in p and "several pages" in p for p in problems), problems


def test_a_number_the_page_does_not_show_is_rejected(tmp_path):
    problems = problems_of(write_book(tmp_path, output="slope -0.99\n"))
    assert any("'ch1-gap-rate'" in p and "number '-0.997'" in p for p in problems), problems
    # a number inside a longer one does not count ("-0.9971" is not "-0.997")
    problems = problems_of(write_book(tmp_path, output="slope -0.9971\n"))
    assert any("'ch1-gap-rate'" in p and "number" in p for p in problems), problems
    # a number that only the code shows does not count either
    root = write_book(tmp_path, output="slope\n")
    notebook = json.loads((root / "notebooks" / "ch1" / "01_page.ipynb").read_text())
    notebook["cells"][1]["source"] = "print(-0.997)"
    (root / "notebooks" / "ch1" / "01_page.ipynb").write_text(json.dumps(notebook))
    assert any("'ch1-gap-rate'" in p and "number" in p for p in problems_of(root))


def test_the_number_may_be_in_the_text_of_the_page(tmp_path):
    root = write_book(
        tmp_path, markdown="# 1.1 A page\n\n(ch1-gap)=\n## The gap\n\nThe slope is -0.997.", output="nothing\n"
    )
    assert problems_of(root) == []


@pytest.mark.parametrize(
    "broken, message",
    [
        ('page="notebooks/ch1/01_page",', "lacks the field(s) page"),
        ('number="-0.997",', "lacks the field(s) number"),
        ('number="-0.997",\n    number="-0.997",', "given twice"),
        ('tolerance="|slope + 1| <= 0.1",', "lacks the field(s) tolerance"),
    ],
)
def test_a_claim_with_a_missing_field_is_rejected(tmp_path, broken, message):
    source = GOOD_TEST.replace(broken, broken if "twice" in message else "", 1)
    if "twice" in message:
        source = source.replace('number="-0.997",', broken, 1)
    with pytest.raises(registry.ClaimError, match=re.escape(message)):
        registry.collect_source(source, "tests/test_example.py")
    problems = problems_of(write_book(tmp_path, source))
    assert len(problems) == 1 and "'ch1-gap-rate'" in problems[0] and message in problems[0], problems


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('number="-0.997"', "number=-0.997", "must be a string literal"),
        ('number="-0.997"', 'number=f"{-0.997}"', "must be a string literal"),
        ('statement="the gap falls like 1/N"', 'statement=" "', "is empty"),
        ('"ch1-gap-rate",', '"Gap rate",', "must look like ch<N>-<short-name>"),
        ('page="notebooks/ch1/01_page"', 'page="notebooks/ch1/01_page.ipynb"', "without extension"),
        ('number="-0.997"', 'number="`-0.997`"', "may not contain backticks"),
        ('tolerance="|slope + 1| <= 0.1"', 'tolerance="|slope + 1| <= 0.1", colour="red"', "unknown field"),
        ("def test_gap():", "def helper():", "which pytest does not collect"),
    ],
)
def test_a_malformed_claim_is_rejected(old, new, message):
    assert old in GOOD_TEST
    with pytest.raises(registry.ClaimError, match=re.escape(message)):
        registry.collect_source(GOOD_TEST.replace(old, new, 1), "tests/test_example.py")


def test_too_few_claims_are_rejected(tmp_path):
    problems = problems_of(write_book(tmp_path), minimum=3)
    assert any("only 2 claims" in p for p in problems), problems


def test_a_stale_ledger_page_is_rejected(tmp_path):
    root = write_book(tmp_path)
    (root / "tests" / "test_example.py").write_text(GOOD_TEST.replace("the gap falls like 1/N", "the gap falls"))
    assert any("stale" in p for p in problems_of(root))
    registry.write_page(root)
    assert problems_of(root) == []


ADMONITION = "\n\n```{admonition} Claims on this page\n:class: tip\n\n`ch1-gap-rate` and `ch1-floor`\n```\n"


def test_claims_admonitions_are_read_and_checked(tmp_path):
    intro_ok = "# Intro\n\n(intro-floor)=\n## The floor\n\nIt is 0.093." + ADMONITION.replace("`ch1-gap-rate` and ", "")
    assert problems_of(write_book(tmp_path, intro=intro_ok)) == []
    assert registry.Book.load(tmp_path).pages["book/intro"].admonitions() == [["ch1-floor"]]
    # an id nobody registered
    problems = problems_of(write_book(tmp_path, intro=intro_ok.replace("`ch1-floor`", "`ch1-ceiling`")))
    assert any("'ch1-ceiling', which no test registers" in p for p in problems), problems
    # an id registered on another page
    problems = problems_of(write_book(tmp_path, intro=intro_ok + ADMONITION))
    assert any("'ch1-gap-rate', which is registered on notebooks/ch1/01_page" in p for p in problems), problems
    # a colon fence in a notebook's markdown cell, with an unregistered id
    markdown = "# 1.1 A page\n\n(ch1-gap)=\n## The gap\n\n:::{admonition} Claims on this page\n`ch1-nothing`\n:::\n"
    problems = problems_of(write_book(tmp_path, markdown=markdown))
    assert any("notebooks/ch1/01_page" in p and "'ch1-nothing'" in p for p in problems), problems
    # an admonition that omits one of the page's claims
    problems = problems_of(
        write_book(
            tmp_path,
            markdown="# 1.1 A page\n\n(ch1-gap)=\n## The gap\n"
            + ADMONITION.replace("`ch1-gap-rate` and `ch1-floor`", "`ch1-gap-rate`").replace("ch1-gap-rate", "ch1-other"),
        )
    )
    assert any("omits the claim(s) 'ch1-gap-rate'" in p for p in problems), problems
    # an admonition with another title is not a claims list
    other = "# Intro\n\n(intro-floor)=\n## Floor\n\n0.093\n\n```{admonition} Notes\n`ch1-unknown`\n```\n"
    assert problems_of(write_book(tmp_path, intro=other)) == []
