"""Names a package exports but imports on first use (PEP 562), so importing the package stays light."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names in ``table`` are imported when first read.

    :param package: the package's ``__name__``
    :param table: exported name -> the module defining it, relative to ``package`` (``".core"``)
    :return: ``(__getattr__, __dir__)`` to assign in the package's ``__init__``
    """
    namespace = vars(import_module(package))

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(table[name], package), name)
        namespace[name] = value  # later reads find it without this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
