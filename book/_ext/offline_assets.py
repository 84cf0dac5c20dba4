"""Serve the book's JavaScript from the site itself, so that ``_build/html`` works with no internet.

A Sphinx extension, loaded from ``_config.yml`` (``sphinx.local_extensions``). It

* loads MathJax 3 from ``_static/mathjax/`` instead of a CDN (the files of the pip package
  ``sphinx-mathjax-offline``, MathJax 3.2.2, of which only what the pages use is copied);
* copies plotly.js from the installed ``plotly`` package to ``_static/plotly.min.js``, loads it on
  every page that shows a plotly figure, and deletes the CDN ``<script>`` tags that plotly's
  ``notebook_connected`` renderer writes into each figure output (plotly.js and a second MathJax);
* loads no ipywidgets JavaScript from a CDN: a frozen ipywidget does nothing without a kernel, so its
  place on the page says where the live version runs; the kernel-free slider twin
  (:func:`mldyn_lite.interactive.slider_figure`) is what works on the web page;
* warns — an error under ``jupyter-book build -W`` — for every script, stylesheet, image or frame
  that a page would still fetch from another host. Plain links (the Colab button) are not fetched
  and stay.

On pages with plotly figures MathJax is loaded with SVG output and before the figures, so that plotly.js
can typeset LaTeX labels such as ``"$\\delta$"`` (plotly's slider labels are never typeset: use Unicode there).
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import re
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.ext.mathjax import MATHJAX_URL
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_COMPONENT = "tex-mml-chtml.js"  # the component Sphinx loads from its CDN by default
# What that component loads on demand: TeX extensions, fonts, the menu, accessibility (speech rules).
MATHJAX_FOLDERS = ("input", "output", "ui", "a11y", "sre", "adaptors")
PLOTLY_MATHJAX = "tex-mml-svg.js"  # on pages with plotly figures: plotly.js needs MathJax's SVG output
PLOTLY_FILE = "plotly.min.js"

# The CDN scripts that plotly's notebook renderers put into every figure output.
PLOTLY_CDN = [
    re.compile(r'<script type="module">\s*import\s+"https://cdn\.plot\.ly/[^"]*"\s*</script>'),
    re.compile(r'<script\b[^>]*\bsrc="https://cdn\.plot\.ly/[^"]*"[^>]*>\s*</script>'),
    re.compile(r'<script\b[^>]*\bsrc="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"[^>]*>\s*</script>'),
]
PLOTLY_FIGURE = re.compile(r'class="plotly-graph-div"|Plotly\.newPlot\(')
WIDGET_VIEW = re.compile(r'(<script type="application/vnd\.jupyter\.widget-view\+json">.*?</script>)', re.S)
WIDGET_NOTE = (
    '<p class="mldyn-kernel-widget"><em>This control needs a running Python kernel: open the page in '
    "Jupyter or Colab (launch button at the top of the page) to use it.</em></p>"
)
# Elements that make the browser fetch something, pointing at another host.
REMOTE_FETCH = [
    re.compile(
        r"""<(script|img|iframe|audio|video|source|embed|input)\b[^>]*?\bsrc\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.I
    ),
    re.compile(r"""<link\b[^>]*?\bhref\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", re.I),
    re.compile(r"""\bimport\s*\(?\s*["']((?:https?:)?//[^"']+)""", re.I),
    re.compile(r"""@import\s+(?:url\()?\s*["']?((?:https?:)?//[^"')\s]+)""", re.I),
]


def mathjax_source() -> Path:
    """Folder of the MathJax 3 distribution shipped by the pip package ``sphinx-mathjax-offline``."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            "offline_assets: the package sphinx-mathjax-offline (MathJax for an offline site) is "
            "missing: pip install -r requirements.txt, or python3 dev.py book"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (folder / MATHJAX_COMPONENT).is_file():
        raise ExtensionError(f"offline_assets: {folder / MATHJAX_COMPONENT} not found")
    return folder


def plotly_source() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise ExtensionError("offline_assets: the package plotly is missing")
    path = Path(spec.origin).parent / "package_data" / PLOTLY_FILE
    if not path.is_file():
        raise ExtensionError(f"offline_assets: {path} not found")
    return path


def use_local_assets(app: Sphinx, config) -> None:
    """Replace the CDN defaults of Sphinx (MathJax) and myst-nb (ipywidgets) by local or no assets."""
    mathjax_source()  # fail early, with the fix, if the package is missing
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = f"mathjax/{MATHJAX_COMPONENT}"
    widgets_js = getattr(config, "nb_ipywidgets_js", None) or {}
    if any(re.match(r"(https?:)?//", url) for url in widgets_js):
        config.nb_ipywidgets_js = {}


def mathjax_for_plotly(app: Sphinx, context: dict) -> None:
    """On a page with plotly figures, load MathJax with SVG output, blocking, instead of the deferred CHTML build.

    plotly.js typesets LaTeX labels (``"$\\delta$"``) with MathJax's SVG output while the page is still being
    parsed, so MathJax must be ready before the figures' inline scripts run.
    """
    if not app.config.mathjax_path.startswith("mathjax/"):
        return  # a MathJax chosen by hand: leave it alone
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    loaded = [s for s in scripts if getattr(s, "filename", None) == f"_static/{app.config.mathjax_path}"]
    for script in loaded:
        scripts.remove(script)
    if not loaded and app.config.mathjax3_config:  # a page without equations: Sphinx added no MathJax
        app.builder.add_js_file("", body=f"window.MathJax = {json.dumps(app.config.mathjax3_config)}")
    app.builder.add_js_file(f"mathjax/{PLOTLY_MATHJAX}")


def rewrite_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Drop CDN scripts from figure outputs, load local plotly.js where needed, report remote fetches."""
    body = context.get("body", "")
    if body:
        for pattern in PLOTLY_CDN:
            body = pattern.sub("", body)
        body = WIDGET_VIEW.sub(lambda m: m.group(1) + WIDGET_NOTE, body)
        if PLOTLY_FIGURE.search(body):
            # plotly.js must run before the inline Plotly.newPlot calls of the body: a plain (blocking) head script
            app.builder.add_js_file("", body="window.PlotlyConfig = {MathJaxConfig: 'local'};", priority=200)
            app.builder.add_js_file(PLOTLY_FILE, priority=201)
            mathjax_for_plotly(app, context)
        context["body"] = body

    scripts = context.get("script_files")
    if isinstance(scripts, list):  # the same inline script twice (sphinx-thebe's const) is a SyntaxError in the browser
        seen = set()
        for script in list(scripts):
            attributes = json.dumps(getattr(script, "attributes", {}), sort_keys=True)
            key = (str(getattr(script, "filename", script) or ""), attributes)
            if key in seen:
                scripts.remove(script)
            seen.add(key)

    remote = []
    for pattern in REMOTE_FETCH:
        remote += [m.group(m.lastindex) for m in pattern.finditer(body)]
    for asset in list(context.get("script_files", [])) + list(context.get("css_files", [])):
        name = getattr(asset, "filename", asset)
        if isinstance(name, str) and re.match(r"(https?:)?//", name):
            remote.append(name)
    for url in sorted(set(remote)):
        logger.warning(
            f"offline_assets: page {pagename!r} loads {url} from the network; serve it from _static "
            "instead (see book/_ext/offline_assets.py)",
            type="offline_assets",
            location=pagename,
        )


def copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file() and filecmp.cmp(source, target, shallow=True):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def copy_assets(app: Sphinx, exception) -> None:
    """Copy the MathJax files the site uses and plotly.js into ``_static``."""
    if app.builder.format != "html" or not Path(app.outdir).is_dir():
        return
    static = Path(app.outdir) / "_static"
    copy_if_changed(plotly_source(), static / PLOTLY_FILE)
    mathjax = mathjax_source()
    component = app.config.mathjax_path
    if component.startswith("mathjax/"):
        for name in (component.removeprefix("mathjax/"), PLOTLY_MATHJAX):
            copy_if_changed(mathjax / name, static / "mathjax" / name)
    for folder in MATHJAX_FOLDERS:
        for source in (mathjax / folder).rglob("*"):
            if source.is_file():
                copy_if_changed(source, static / "mathjax" / source.relative_to(mathjax))


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", use_local_assets)
    app.connect("html-page-context", rewrite_page, priority=900)  # after the extensions that add scripts
    app.connect("build-finished", copy_assets)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
