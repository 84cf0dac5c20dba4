"""The book build's first half (scripts/execute_notebooks.py --book-cache): every notebook executed, several at a
time, into the jupyter-cache that ``jupyter-book build`` reads.

If the cached notebooks did not match what myst-nb looks up, the build would not fail: it would quietly execute
every notebook again, one at a time, and the book would no longer build within its budget. These tests execute
two small notebooks (one with an ipywidgets panel) the way the build does and look them up the way myst-nb does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import execute_notebooks  # noqa: E402

PANEL = """\
import ipywidgets as widgets
from IPython.display import display
out = widgets.Output()
display(out)
with out:
    print("inside the panel")
"""


def write(path: Path, *sources: str) -> Path:
    # as in the stored notebooks, the code cells carry the timing of an earlier run in their metadata
    earlier = {"execution": {"iopub.execute_input": "2026-01-01T00:00:00.000000Z"}}
    nb = new_notebook(cells=[new_markdown_cell("# A page"), *[new_code_cell(s, metadata=earlier) for s in sources]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    return [
        write(tmp_path / "a.ipynb", "import os\nprint(os.path.basename(os.getcwd()))", "print(6 * 7)"),
        write(tmp_path / "b.ipynb", PANEL),
    ]


def test_every_notebook_is_found_in_the_cache_as_myst_nb_looks_it_up(notebooks, tmp_path):
    from jupyter_cache import get_cache

    cache_dir = tmp_path / "cache"
    assert execute_notebooks.execute_all(notebooks, 2, book_cache=cache_dir) == []
    cache = get_cache(str(cache_dir))
    for path in notebooks:
        unexecuted = nbformat.read(path, as_version=4)  # what myst-nb reads from the source
        assert all(not c.get("outputs") for c in unexecuted.cells if c.cell_type == "code")
        cache.match_cache_notebook(unexecuted)  # raises KeyError when not found
        _, merged = cache.merge_match_into_notebook(unexecuted)
        texts = ["".join(o.get("text", "")) for c in merged.cells if c.cell_type == "code" for o in c.outputs]
        if path.name == "a.ipynb":
            assert texts == [f"{tmp_path.name}\n", "42\n"]  # ran in the notebook's own folder


def test_a_panel_keeps_its_output_in_the_widget_state(notebooks):
    nb, seconds = execute_notebooks.run(notebooks[1], timeout=60, widgets=True)
    assert seconds > 0
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    outputs = [s["state"]["outputs"] for s in state.values() if s["model_name"] == "OutputModel"]
    assert outputs == [[{"name": "stdout", "output_type": "stream", "text": "inside the panel\n"}]]
    assert not any(o.get("text") for o in nb.cells[1].outputs)  # in the panel, not under the cell


def test_without_a_cache_every_notebook_runs_and_failures_are_returned(notebooks, tmp_path, capsys):
    bad = write(tmp_path / "bad.ipynb", "raise ValueError('depth must be positive')")
    assert execute_notebooks.execute_all([*notebooks, bad], 2) == [bad]
    out = capsys.readouterr().out
    assert "depth must be positive" in out
    assert all(str(path) in out for path in notebooks)  # each one's time is printed


def test_a_failing_notebook_is_reported_and_not_cached(tmp_path, capsys):
    from jupyter_cache import get_cache

    bad = write(tmp_path / "bad.ipynb", "raise ValueError('width must be positive')")
    cache_dir = tmp_path / "cache"
    assert execute_notebooks.execute_all([bad], 1, book_cache=cache_dir) == [bad]
    assert "width must be positive" in capsys.readouterr().out
    with pytest.raises(KeyError):
        get_cache(str(cache_dir)).match_cache_notebook(nbformat.read(bad, as_version=4))


def test_the_build_executes_exactly_the_notebooks_of_the_table_of_contents():
    import re

    listed = set(re.findall(r"file:\s*(notebooks/\S+)", (ROOT / "_toc.yml").read_text()))
    found = {p.relative_to(ROOT).with_suffix("").as_posix() for p in execute_notebooks.book_notebooks()}
    assert found == listed
