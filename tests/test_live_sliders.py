"""Every live ipywidgets panel of the book, used as a reader uses it: in JupyterLab, in a browser.

A panel is a code cell whose stored outputs hold an ipywidgets view (``kernel_slider`` or
``ipywidgets.interactive``); the notebooks that have one are found from the stored outputs, and checked
against a search of the sources for those calls. For each such notebook:

1. a JupyterLab server (the pinned ``jupyterlab``) runs on 127.0.0.1 with no token, on a temporary
   folder holding copies of the notebooks, with fresh settings (every cell rendered, no news, no server
   extension but JupyterLab's own);
2. headless Chromium opens the notebook and runs **all** its cells (*Run > Run All Cells*, the whole
   notebook, not only the cells up to the panel), waits until every code cell has its execution count,
   and checks that no cell shows an error;
3. it moves each slider of the panel one step with the arrow keys (and presses the other button of each
   toggle), as a reader would, and after each move waits until the panel's output area shows something
   else (figure image or text) and checks that no error or traceback appears there.

The browser gets no internet (every host but localhost resolves to nothing). The time each update
takes is not asserted here (it depends on the machine's load): ``benchmarks/slider_updates.py``
measures it. Needs Debian's ``chromium`` and ``chromium-driver`` and the pip packages selenium and
jupyterlab; skipped, with the reason, when one is missing, except in CI (``CI=true``) or with
``MLDYN_REQUIRE_BROWSER=1``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MLDYN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("MLDYN_CHROMEDRIVER") or shutil.which("chromedriver")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# a panel: kernel_slider, ipywidgets.interactive, or SliderPanel(...).live() (mldyn_lite.interactive)
PANEL_CALL = re.compile(r"\bkernel_slider\(|\bipywidgets\.(interactive|interact)\(|\binteract\(|\.live\(")
RUN_TIMEOUT = 600  # seconds for a whole notebook in the browser (the book's budget is 90 s on a quiet machine)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on show
UPDATE_TIMEOUT = 120  # seconds for one panel update (benchmarks/slider_updates.py: <= 1 s of compute)


def skip_or_fail(reason: str):
    if os.environ.get("MLDYN_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"the live-slider test must run here (CI=true or MLDYN_REQUIRE_BROWSER=1) but cannot: {reason}")
    pytest.skip(reason)


def panel_notebooks() -> dict[str, list[int]]:
    """{notebook path: indices of its panel cells}, from the stored outputs."""
    found = {}
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        cells = nbformat.read(path, as_version=4).cells
        panels = [
            i
            for i, c in enumerate(cells)
            if c.cell_type == "code" and any(WIDGET_MIME in o.get("data", {}) for o in c.get("outputs", []))
        ]
        if panels:
            found[str(path.relative_to(ROOT))] = panels
    return found


PANELS = panel_notebooks()


def test_every_panel_call_has_a_stored_panel():
    """The search of the sources finds exactly the notebooks whose stored outputs hold a panel."""
    calls = set()
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        if any(c.cell_type == "code" and PANEL_CALL.search(c.source) for c in cells):
            calls.add(str(path.relative_to(ROOT)))
    assert calls, "no notebook calls kernel_slider or ipywidgets.interactive: nothing to test"
    assert calls == set(PANELS), f"panels in the sources {sorted(calls)} vs in the stored outputs {sorted(PANELS)}"


# --- JupyterLab and the browser ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_config(folder: Path) -> dict[str, str]:
    """Fresh settings, workspaces and config for the server; returns the environment variables."""
    settings = folder / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (JupyterLab 4 otherwise leaves cells outside the window out of the page)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    config = folder / "config"
    (config / "labconfig").mkdir(parents=True)
    disabled_lab = {"@jupyterlab/apputils-extension:announcements": True, "@jupyter/nbgrader": True}
    (config / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled_lab}))
    # only JupyterLab's own server extension (nbgrader's, the LSP's and Notebook 7's are installed too)
    enabled = {}
    for conf in (Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d").glob("*.json"):
        enabled.update(json.loads(conf.read_text()).get("ServerApp", {}).get("jpserver_extensions", {}))
    server = {name: name == "jupyterlab" for name in enabled}
    (config / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": server}}))
    return {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
    }


@pytest.fixture(scope="module")
def lab():
    """A JupyterLab server on a temporary folder with copies of the panel notebooks; yields (url, folder)."""
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        skip_or_fail("needs the pip package jupyterlab (in requirements.txt)")
    folder = Path(tempfile.mkdtemp(prefix="mldyn-lab-"))
    work = folder / "notebooks"
    for name in PANELS:
        target = work / Path(name).relative_to("notebooks")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    port = free_port()
    env = {**os.environ, **lab_config(folder), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PLOTLY_RENDERER", None)  # as in a reader's JupyterLab (dev.py sets it for the book build)
    env.pop("PYTHONPATH", None)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={work}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(folder / "lab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(folder / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, work
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def browser():
    """A fresh headless Chromium for each notebook (a clean page: no tab, dialog or prompt left over)."""
    if not (CHROMIUM and Path(CHROMIUM).exists() and CHROMEDRIVER and Path(CHROMEDRIVER).exists()):
        skip_or_fail("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        skip_or_fail("needs the pip package selenium (in requirements.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("unhandledPromptBehavior", "accept")  # "leave the page?" after a run
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def shut_down_kernels(url: str) -> None:
    """End every session and kernel, so that the next notebook starts alone."""
    for kind in ("sessions", "kernels"):
        for item in json.loads(urllib.request.urlopen(f"{url}/api/{kind}", timeout=30).read()):
            request = urllib.request.Request(f"{url}/api/{kind}/{item['id']}", method="DELETE")
            try:
                urllib.request.urlopen(request, timeout=30).read()
            except OSError:
                pass  # already gone with its session


def wait_for(driver, condition, timeout: float, what: str, poll: float = 0.5, detail=None):
    """Poll ``condition`` until it is truthy; on timeout fail, with ``detail()`` (what the page shows)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f": {detail()}" if detail else ""))
        time.sleep(poll)


# --- what the page shows -------------------------------------------------------------------------

NOTEBOOK_STATE = """
const cells = Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell'));
const code = cells.filter(c => c.classList.contains('jp-CodeCell'));
const indicator = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
const errors = Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
  .map(e => e.textContent).filter(t => /Traceback \\(most recent call last\\)|^\\s*\\w*Error\\b/m.test(t));
return {
  cells: cells.length,
  prompts: code.map(c => (c.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent.trim()),
  status: indicator ? indicator.getAttribute('data-status') : null,
  kernel: (document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName') || {textContent: ''})
    .textContent.trim(),
  errors: errors.map(t => t.slice(-1500)),
};
"""

PANEL_STATE = """
const cell = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')[arguments[0]];
const outputs = Array.from(cell.querySelectorAll('.widget-output'));
const text = outputs.map(o => o.innerText).join('\\n');
const images = outputs.flatMap(o => Array.from(o.querySelectorAll('img')).map(i => i.getAttribute('src') || ''));
let hash = 0;
for (const s of images.concat([text])) {
  for (let i = 0; i < s.length; i += 7) { hash = (hash * 31 + s.charCodeAt(i)) | 0; }
}
const stderr = outputs.flatMap(o => Array.from(o.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.textContent));
return {
  sliders: Array.from(cell.querySelectorAll('.widget-slider')).map(s => ({
    label: (s.querySelector('.widget-label') || {textContent: ''}).textContent,
    value: (s.querySelector('.noUi-handle') || {getAttribute: () => null}).getAttribute('aria-valuenow'),
    readout: (s.querySelector('.widget-readout') || {textContent: ''}).textContent})),
  toggles: Array.from(cell.querySelectorAll('.widget-toggle-buttons')).map(t => ({
    label: (t.querySelector('.widget-label') || {textContent: ''}).textContent,
    buttons: Array.from(t.querySelectorAll('button')).map(b => b.textContent),
    active: Array.from(t.querySelectorAll('button')).findIndex(b => b.classList.contains('mod-active'))})),
  images: images.length,
  text: text.slice(0, 300),
  content: images.length + text.trim().length,
  hash: hash,
  stderr: stderr,
};
"""


def run_all(driver, url: str, name: str) -> dict:
    from selenium.webdriver.common.by import By

    # a workspace of its own, reset: JupyterLab opens this notebook alone
    workspace = re.sub(r"\W", "-", Path(name).stem)
    driver.get(f"{url}/lab/workspaces/{workspace}/tree/{Path(name).relative_to('notebooks').as_posix()}?reset")
    cells = len(nbformat.read(ROOT / name, as_version=4).cells)

    def ready():
        state = driver.execute_script(NOTEBOOK_STATE)
        kernels = json.loads(urllib.request.urlopen(f"{url}/api/kernels", timeout=30).read())
        return (
            state["cells"] == cells
            and state["status"] == "idle"
            and state["kernel"] not in ("", "No Kernel")
            and len(kernels) == 1
            and kernels[0]["execution_state"] == "idle"
        )

    wait_for(
        driver,
        ready,
        180,
        f"{name} to open with an idle kernel",
        poll=1.0,
        detail=lambda: {k: v for k, v in driver.execute_script(NOTEBOOK_STATE).items() if k != "prompts"},
    )
    menu = next(m for m in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text.strip() == "Run")
    menu.click()
    wait_for(
        driver,
        lambda: driver.find_elements(By.CSS_SELECTOR, '.lm-Menu-item[data-command="runmenu:run-all"]'),
        30,
        "the Run menu",
    )[0].click()
    start = time.monotonic()

    def finished():
        state = driver.execute_script(NOTEBOOK_STATE)
        busy = any(p.startswith("[*]") for p in state["prompts"]) or state["status"] != "idle"
        return None if busy or time.monotonic() - start < 2 else state

    state = wait_for(driver, finished, RUN_TIMEOUT, f"{name} to run", poll=1.0)
    assert not state["errors"], f"{name}: a cell failed:\n" + "\n".join(state["errors"])
    unrun = [i for i, p in enumerate(state["prompts"]) if not re.match(r"\[\d+\]", p)]
    assert not unrun, f"{name}: code cells {unrun} did not run (prompts {state['prompts']})"
    return state


def move_and_check(driver, name: str, cell: int, control: str, act) -> None:
    before = driver.execute_script(PANEL_STATE, cell)
    act()

    def updated():
        state = driver.execute_script(PANEL_STATE, cell)
        done = (
            state["hash"] != before["hash"]
            and state["content"] > 0
            and not driver.execute_script(
                "return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) "
                ".jp-Notebook-ExecutionIndicator').getAttribute('data-status') !== 'idle'"
            )
        )
        return state if done or state["stderr"] else None

    after = wait_for(driver, updated, UPDATE_TIMEOUT, f"{name}: the panel to change after moving {control}")
    assert not after["stderr"], f"{name}: moving {control} printed an error:\n" + "\n".join(after["stderr"])


@pytest.mark.parametrize("name", sorted(PANELS))
def test_panel_responds_to_every_slider(lab, browser, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, _ = lab
    try:
        run_all(browser, url, name)
        for cell in PANELS[name]:
            state = browser.execute_script(PANEL_STATE, cell)
            assert state["sliders"], f"{name}: no slider drawn in the panel of cell {cell}"
            assert state["content"] > 0, f"{name}: the panel of cell {cell} shows nothing before any move"
            assert not state["stderr"], f"{name}: the panel shows an error:\n" + "\n".join(state["stderr"])
            root = browser.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-Notebook .jp-Cell")[cell]
            for k, slider in enumerate(state["sliders"]):
                handle = root.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[k]
                at_end = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
                key = Keys.ARROW_LEFT if at_end else Keys.ARROW_RIGHT
                label = f"slider {slider['label']!r} from {slider['readout']}"
                move_and_check(browser, name, cell, label, lambda h=handle, key=key: h.send_keys(key))
                moved = browser.execute_script(PANEL_STATE, cell)["sliders"][k]
                assert moved["value"] != slider["value"], f"{name}: {label} did not move"
            for k, toggle in enumerate(state["toggles"]):
                group = root.find_elements(By.CSS_SELECTOR, ".widget-toggle-buttons")[k]
                buttons = group.find_elements(By.TAG_NAME, "button")
                other = next(b for i, b in enumerate(buttons) if i != toggle["active"])
                move_and_check(browser, name, cell, f"toggle {toggle['label']!r} to {other.text}", other.click)
    finally:
        shut_down_kernels(url)
