"""The API reference (book/api/): each object documented once, napoleon for functions and classes only.

* **Re-exports.** A module may re-export a name of another public module (``flows`` exports
  ``numerics.integrate``). ``automodule`` would document it again, under the second name; instead the
  re-exported names are left out of the members and listed, with links to where they are documented,
  at the end of the module's docstring ("Also exported here: ..."), so every name of ``__all__`` is on
  its module's page (tests/test_api_reference.py) and every object is described once. A docstring may
  still name an object by a re-exported name (``mldyn_lite.fit``, ``integrate`` in ``flows``): such a
  reference resolves to where the object is documented.
* **Constants.** autodoc documents a module-level constant only when it has a ``#:`` doc comment; here
  every constant of ``__all__`` is documented (with its value, when the value is short).
* **Napoleon** also parses the docstring of every attribute, constant and property, taking the text
  before the first colon as a *type* ("``#: The published box: ...``" would show the sentence as a type
  and link it, a broken reference under ``-n``). Here napoleon reads the numpy-style sections of
  functions, methods, classes and modules only, and leaves the other docstrings as written.
"""

import importlib
import inspect

from sphinx.ext.autodoc import DataDocumenter, ModuleDocumenter
from sphinx.ext.napoleon import _process_docstring
from sphinx.util.inspect import object_description

SKIPPED = {"attribute", "data", "property"}
PACKAGE = "mldyn_lite"


def _public_home(name: str) -> str:
    """``mldyn_lite.selfcheck._framework`` -> ``mldyn_lite.selfcheck``: the module whose page documents it."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[0] == PACKAGE else name


def home_of(obj) -> str | None:
    """The public module that documents ``obj`` (a function or class of the package), else None."""
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return None
    module = getattr(obj, "__module__", None) or ""
    home = _public_home(module)
    if not home.startswith(PACKAGE + ".") or home.split(".")[1].startswith("_"):
        return None
    return home


def reexports(module) -> list[tuple[str, str]]:
    """[(name, target)] for the names of ``module.__all__`` that another public module documents."""
    found = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name, None)
        home = home_of(obj)
        if home is not None and home != _public_home(module.__name__):
            found.append((name, f"{obj.__module__}.{obj.__qualname__}"))
    return found


def _process(app, what, name, obj, options, lines):
    if what == "module":
        app.env.temp_data["api_docs_module"] = obj
        names = reexports(obj)
        if names:
            links = ", ".join(f":py:obj:`{n} <{target}>`" for n, target in names)
            lines += ["", f"Also exported here (each documented in its own module): {links}.", ""]
    if what not in SKIPPED:
        _process_docstring(app, what, name, obj, options, lines)


def _skip(app, what, name, obj, skip, options):
    module = app.env.temp_data.get("api_docs_module")
    if what == "module" and module is not None and any(n == name for n, _ in reexports(module)):
        return True  # documented in its own module, linked from the docstring
    return None


class ExportedDataDocumenter(DataDocumenter):
    """A constant named in its module's ``__all__`` without a ``#:`` doc comment."""

    objtype = "exporteddata"
    directivetype = "data"
    priority = DataDocumenter.priority + 1

    @classmethod
    def can_document_member(cls, member, membername, isattr, parent):
        return (
            isinstance(parent, ModuleDocumenter)
            and not isattr
            and membername in (getattr(parent.object, "__all__", None) or ())
            and not (inspect.isclass(member) or inspect.isroutine(member) or inspect.ismodule(member))
        )

    def get_doc(self):
        comment = self.get_module_comment(self.objpath[-1])
        return [comment] if comment else []  # not the docstring of the value's type (int, dict, ...)

    def should_suppress_value_header(self):
        return len(object_description(self.object)) > 120 or super().should_suppress_value_header()


def _alias(app, env, node, contnode):
    """Resolve a reference by a re-exported name (``mldyn_lite.fit``) to the documented object."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    candidates = [target] + ([f"{node['py:module']}.{target}"] if node.get("py:module") else [])
    for full in candidates:
        module_name, _, attribute = full.rpartition(".")
        if not module_name.startswith(PACKAGE):
            continue
        try:
            obj = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError:
            continue
        real = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        if home_of(obj) is not None and real != full:
            return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], real, node, contnode)
    return None


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _process)
    app.connect("autodoc-skip-member", _skip)
    app.connect("missing-reference", _alias)
    app.add_autodocumenter(ExportedDataDocumenter)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
