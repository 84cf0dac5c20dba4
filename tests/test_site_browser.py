"""The web site, opened in a real browser: headless Chromium driven by selenium.

Two parts:

* a tiny throwaway book, built here with the repository's ``_config.yml`` (math, a matplotlib figure,
  a plotly slider twin, a frozen ipywidget), checks the offline setup and that dragging a kernel-free
  slider changes the figure, without building the whole book;
* the real site, ``_build/html`` (or the folder in ``MLDYN_SITE``; ``python3 dev.py test`` runs this
  file again right after its book build): every page typesets its math, every notebook page shows its
  figures and has a Colab link, no page fetches anything from another host, and every plotly slider
  on it can be dragged.

The browser gets no internet: Chromium resolves every host but localhost to nothing, as in a classroom
with no connection. Needs Debian's ``chromium`` and ``chromium-driver`` and the pip package selenium;
skipped, with the reason, when one of them (or the built site) is missing — except in CI (``CI=true``)
or with ``MLDYN_REQUIRE_BROWSER=1``, where a missing browser fails the test.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("MLDYN_SITE") or ROOT / "_build" / "html")
CHROMIUM = os.environ.get("MLDYN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("MLDYN_CHROMEDRIVER") or shutil.which("chromedriver")
COLAB = "https://colab.research.google.com/github/"
FIGURE_MIME = ("image/png", "image/jpeg", "image/svg+xml")


# --- the browser ---------------------------------------------------------------------------------


def skip_or_fail(reason: str):
    """Skip, except in CI (CI=true) or with MLDYN_REQUIRE_BROWSER=1: there a missing browser is a failure."""
    if os.environ.get("MLDYN_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run here (CI=true or MLDYN_REQUIRE_BROWSER=1) but cannot: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and Path(CHROMIUM).exists() and CHROMEDRIVER and Path(CHROMEDRIVER).exists()):
        skip_or_fail("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        skip_or_fail("needs the pip package selenium (in requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on a free localhost port; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


TYPESET = """
const done = arguments[arguments.length - 1];
if (!document.querySelector('.math')) { done('no math'); return; }
const wait = (n) => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done('typeset'), (e) => done('MathJax error: ' + e));
  } else if (n > 100) { done('MathJax did not load'); } else { setTimeout(() => wait(n + 1), 100); }
};
wait(0);
"""

PAGE_STATE = """
const article = document.querySelector('article') || document.body;
const text = article.cloneNode(true);
text.querySelectorAll('pre, code, script, style, .highlight, mjx-container').forEach(e => e.remove());
const images = Array.from(article.querySelectorAll('img'));
const plots = Array.from(article.querySelectorAll('.plotly-graph-div'));
return {
  raw_math: (text.textContent.match(/\\\\\\(|\\\\\\[|\\$\\$/g) || []).length,
  math: article.querySelectorAll('.math').length,
  typeset: article.querySelectorAll('mjx-container').length,
  images: images.length,
  broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
  plots: plots.length,
  drawn_plots: plots.filter(p => p.querySelector('svg.main-svg')).length,
  sliders: plots.map((p, i) => p.querySelector('.slider-grip-rect') ? i : -1).filter(i => i >= 0),
  plot_math: plots.map(p => p.querySelectorAll('[class*="math-group"] svg').length).reduce((a, b) => a + b, 0),
  raw_plot_math: plots.filter(p => Array.from(p.querySelectorAll('text'))
    .some(t => /[$].*[$]/.test(t.textContent) && t.getBoundingClientRect().width > 0)).length,
  colab: Array.from(document.querySelectorAll('a')).map(a => a.href).filter(h => h.startsWith(arguments[0])),
  widget_notes: article.querySelectorAll('.mldyn-kernel-widget').length,
};
"""


def open_page(driver, url: str) -> dict:
    """Load ``url``, wait for MathJax, return what the page shows and what it requested from other hosts."""
    driver.get_log("performance")  # drop the log of earlier pages
    driver.get(url)
    typeset = driver.execute_async_script(TYPESET)
    state = driver.execute_script(PAGE_STATE, COLAB)
    state["mathjax"] = typeset
    origin = re.match(r"https?://[^/]+", url).group(0)
    requested = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    state["remote"] = sorted(u for u in requested if not u.startswith((origin, "data:", "blob:", "about:")))
    state["errors"] = [
        e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon.ico" not in e["message"]
    ]
    return state


def assert_page_offline_and_typeset(page: str, state: dict) -> None:
    assert state["remote"] == [], f"{page} fetches from the network: {state['remote']}"
    assert state["errors"] == [], f"{page} has errors in the browser console: {state['errors']}"
    if state["math"]:
        assert state["mathjax"] == "typeset", f"{page}: {state['mathjax']}"
        assert state["raw_math"] == 0, f"{page} shows {state['raw_math']} untypeset math delimiters"
        assert state["typeset"] >= state["math"], f"{page}: {state['typeset']} of {state['math']} formulas typeset"
    assert state["broken_images"] == [], f"{page}: images that did not load: {state['broken_images']}"
    assert state["raw_plot_math"] == 0, f"{page}: a plotly figure shows untypeset LaTeX ($...$)"
    missing = state["plots"] - state["drawn_plots"]
    assert missing == 0, f"{page}: {missing} plotly figures not drawn"


SLIDER_STATE = """
const gd = document.querySelectorAll('.plotly-graph-div')[arguments[0]];
return {
  active: gd._fullLayout.sliders[0].active,
  label: (gd.querySelector('.slider-group > .slider-label') || {}).textContent,
  paths: Array.from(gd.querySelectorAll('.cartesianlayer .overplot, .polarlayer, .layer-above')).map(e => e.innerHTML),
};
"""


def drag_slider(driver, index: int) -> tuple[dict, dict]:
    """Drag the grip of slider figure ``index`` on the page across most of its rail; return states before and after."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    figure = driver.find_elements(By.CSS_SELECTOR, ".plotly-graph-div")[index]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    before = driver.execute_script(SLIDER_STATE, index)
    grip = figure.find_element(By.CSS_SELECTOR, ".slider-grip-rect")
    rail = figure.find_element(By.CSS_SELECTOR, ".slider-rail-rect")
    distance = int(rail.size["width"] * 0.8)
    ActionChains(driver).click_and_hold(grip).move_by_offset(distance // 2, 0).move_by_offset(
        distance // 2, 0
    ).release().perform()
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(SLIDER_STATE, index)["active"] != before["active"])
    return before, driver.execute_script(SLIDER_STATE, index)


# --- a tiny book, built with the repository's configuration -------------------------------------

TINY_NOTEBOOK = [
    ("markdown", "# A slider\n\nThe map $x \\mapsto \\sin(a x)$ for a few values of $a$."),
    (
        "code",
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n"
        "import plotly.graph_objects as go\n\n"
        "from mldyn_lite.interactive import kernel_slider, slider_figure\n\n"
        "x = np.linspace(0, 1, 30)",
    ),
    (
        "code",
        "slider_figure(lambda a: [go.Scatter(x=x, y=np.sin(a * x), mode='lines')], [1.0, 2.0, 4.0, 8.0],\n"
        "              slider_label='frequency a = ', xaxis={'range': [0, 1], 'title': {'text': '$x$'}},\n"
        "              yaxis={'range': [-1.1, 1.1]})",
    ),
    ("code", "plt.figure(figsize=(2, 1.5))\nplt.plot(x, x ** 2)\nplt.show()"),
    ("code", "# NBVAL_IGNORE_OUTPUT\nkernel_slider(lambda value: print(value), [1, 2, 3])"),
]


def write_tiny_book(folder: Path) -> None:
    """A book of two pages with the repository's configuration; its notebook is executed here, as the book does."""
    from nbclient import NotebookClient

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = "tiny"
    config["execute"] = {"execute_notebooks": "off"}
    config["bibtex_bibfiles"] = [str(ROOT / "book" / "references.bib")]
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in (config["sphinx"].get("local_extensions") or {}).items()
    }
    config["exclude_patterns"] = ["_build"]
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: slider\n")
    (folder / "index.md").write_text(
        "# Tiny\n\nInline $e^{i\\pi} + 1 = 0$ and displayed\n\n$$\n\\int_0^1 x\\,dx = \\tfrac12.\n$$\n"
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        for kind, text in TINY_NOTEBOOK
    ]
    os.environ.setdefault("PLOTLY_RENDERER", "notebook_connected")  # as python3 dev.py sets it for the book
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(nb, folder / "slider.ipynb")


@pytest.fixture(scope="module")
def tiny_site(browser, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_book")
    write_tiny_book(folder)
    command = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
        "build",
        str(folder),
        "-W",
        "-n",
        "--keep-going",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder, timeout=300)
    assert result.returncode == 0, f"tiny book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    with serve(folder / "_build" / "html") as url:
        yield url


def test_tiny_book_math_figures_offline(browser, tiny_site):
    home = open_page(browser, f"{tiny_site}/index.html")
    assert_page_offline_and_typeset("index", home)
    assert home["math"] == 2 and home["typeset"] >= 2

    page = open_page(browser, f"{tiny_site}/slider.html")
    assert_page_offline_and_typeset("slider", page)
    assert page["images"] == 1 and page["plots"] == 1 and page["sliders"] == [0]
    assert page["plot_math"] == 1, "the LaTeX axis title of the plotly figure is typeset"
    assert page["widget_notes"] == 1, "a frozen ipywidget should say that it needs a kernel"
    assert [link.rsplit("/blob/main/", 1)[-1] for link in page["colab"]] == ["slider.ipynb"]


def test_tiny_book_slider_drag_changes_figure(browser, tiny_site):
    open_page(browser, f"{tiny_site}/slider.html")
    before, after = drag_slider(browser, 0)
    assert before["active"] == 0 and after["active"] > 0
    assert after["label"] != before["label"]
    assert after["paths"] != before["paths"], "the slider moved but the curve did not change"


# --- the real site ------------------------------------------------------------------------------


def site_pages() -> list[str]:
    if not (SITE / "index.html").is_file():
        return []
    return sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*.html") if not p.relative_to(SITE).parts[0].startswith("_"))


def expected_figures(page: str) -> tuple[int, int]:
    """(images, plotly figures) among the shown outputs of the page's notebook."""
    source = ROOT / Path(page).with_suffix(".ipynb")
    if not source.is_file():
        return 0, 0
    images = plots = 0
    for cell in nbformat.read(source, as_version=4).cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & {"remove-cell", "remove-output"}:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(m in data for m in FIGURE_MIME) and "application/vnd.plotly.v1+json" not in data
            plots += "plotly-graph-div" in str(data.get("text/html", ""))
    return images, plots


@pytest.fixture(scope="module")
def site(browser):
    if not site_pages():
        if os.environ.get("MLDYN_SITE"):
            pytest.fail(f"MLDYN_SITE={SITE} holds no built site (no index.html)")
        pytest.skip(f"no built site in {SITE} (python3 dev.py test builds it and then runs this file)")
    with serve(SITE) as url:
        yield url


@pytest.mark.parametrize("page", site_pages() or ["(no built site)"])
def test_site_page(browser, site, page):
    state = open_page(browser, f"{site}/{page}")
    assert_page_offline_and_typeset(page, state)
    if page.startswith("notebooks/"):
        images, plots = expected_figures(page)
        assert state["images"] >= images, f"{page}: {state['images']} images shown, the notebook has {images}"
        assert state["plots"] >= plots, f"{page}: {state['plots']} plotly figures shown, the notebook has {plots}"
        notebook = Path(page).with_suffix(".ipynb").as_posix()
        assert any(link.endswith(notebook) for link in state["colab"]), f"{page} has no Colab link to {notebook}"
    for index in state["sliders"]:
        before, after = drag_slider(browser, index)
        assert after["paths"] != before["paths"], f"{page}: slider {index} moved but its figure did not change"
