"""Write the claims ledger ``book/claims.md`` from the claims registry at the start of every book build.

A Sphinx extension, loaded from ``_config.yml`` (``sphinx.local_extensions``). The registry is the
``@pytest.mark.claim(...)`` markers of ``tests/*.py``; ``tests/claims.py`` reads them (with :mod:`ast`,
no test runs) and renders the page. The page is written at ``config-inited`` with a priority that runs
before ``sphinx_external_toc`` reads ``_toc.yml`` (priority 900), and only when its text changes, so an
unchanged registry does not make Sphinx rebuild it. ``tests/test_claims.py`` fails when the committed
page is stale, and checks that every claim's page, anchor and number exist.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # book/_ext/claims_page.py -> the repository root
REGISTRY = ROOT / "tests" / "claims.py"


def load_registry():
    """The module ``tests/claims.py`` (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("mldyn_book_claims", REGISTRY)
    if spec is None or spec.loader is None:
        raise ExtensionError(f"claims_page: cannot load {REGISTRY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_claims_page(app: Sphinx, config: Config) -> None:
    registry = load_registry()
    try:
        changed = registry.write_page(ROOT)
    except registry.ClaimError as error:
        raise ExtensionError(f"claims_page: {error}") from error
    if changed:
        logger.info(f"claims_page: wrote {registry.PAGE_FILE} ({len(registry.collect(ROOT))} claims)")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", write_claims_page, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
