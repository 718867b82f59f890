"""One error tree: everything the service raises on purpose is a ``WhatsAppError``, importable from ``whatsapp``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import whatsapp
from whatsapp import WhatsAppError

PACKAGE = Path(whatsapp.__file__).parent
#: Not the service's errors: the agent runtime knows nothing of WhatsApp, whatsapp.testing holds the fakes tests and
#: benchmarks use, and whatsapp.cloud_api plays Meta (its GraphFailure becomes an error answer of a fake Graph API).
OUTSIDE_THE_TREE = ("whatsapp.agents_runtime", "whatsapp.testing", "whatsapp.cloud_api")


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages([str(PACKAGE)], prefix="whatsapp."):
        if module_info.name.startswith(OUTSIDE_THE_TREE) or module_info.name == "whatsapp.pdf_reader":
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


def _tree(root: type[BaseException]) -> set[type[BaseException]]:
    below = set(root.__subclasses__())
    for cls in list(below):
        below |= _tree(cls)
    return below


def test_every_error_the_service_defines_descends_from_whatsapp_error():
    defined = _exception_classes()
    assert len(defined) >= 10  # the walk found the modules
    strays = [f"{cls.__module__}.{cls.__name__}" for cls in defined if not issubclass(cls, WhatsAppError)]
    assert strays == []


def test_every_error_of_the_tree_is_imported_from_whatsapp():
    for cls in {WhatsAppError, *_tree(WhatsAppError)}:
        if cls.__module__.startswith("whatsapp."):
            assert cls.__name__ in whatsapp.__all__
            assert getattr(whatsapp, cls.__name__) is cls
    assert "GraphClient" in whatsapp.__all__


def test_errors_keep_the_builtin_kind_callers_caught():
    assert issubclass(whatsapp.ReplyError, ValueError)
    assert issubclass(whatsapp.MediaRefused, whatsapp.GraphAPIError)
    assert not whatsapp.MediaRefused("media URL refused: no host").retryable


def test_the_worker_depends_on_its_job_handler_protocol_not_on_the_handler():
    tree = ast.parse((PACKAGE / "worker.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "handler" not in imported and "whatsapp.handler" not in imported
    assert {"errors", "failures"} <= imported  # the walk saw the worker's relative imports
