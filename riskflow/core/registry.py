"""One way to extend RiskFlow: one file in a package, found by importing every module of it.

Rule kinds (``detectors/rules/``), anomaly detectors (``detectors/anomaly/``), store dialects
(``riskflow/store/``), alert sinks (``riskflow/sinks/``) and CLI commands
(``riskflow/commands/``) are each one module in their package. :func:`import_modules`
imports every module of a package; a :class:`Registry` is the classes of one extension
point by name, which a base class fills from ``__init_subclass__`` as its subclasses are
defined, and which imports its package the first time it is read. So nothing lists the
implementations: a new file is found, and the contract tests that iterate a registry test it.

This module is on the ground floor: ``detectors/`` uses it, so it imports nothing of RiskFlow
(it imports a package only by the name it is given).

>>> class Shape:
...     def __init_subclass__(cls, **kw):
...         super().__init_subclass__(**kw)
...         SHAPES.add(cls.__dict__.get("kind", ""), cls)
>>> SHAPES = Registry[Shape]("riskflow.core", "shape")  # any package: this one holds no shapes
>>> class Square(Shape):
...     kind = "square"
>>> sorted(SHAPES), SHAPES["square"] is Square
(['square'], True)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Generic, TypeVar

T = TypeVar("T")


def import_modules(package: str) -> list[ModuleType]:
    """Every module of ``package`` whose name does not start with ``_``, imported, by name.

    A module that fails to import fails here, loudly: an extension that is silently left
    out would be worse (a rule kind a pack names, missing).

    >>> [m.__name__ for m in import_modules("riskflow.core")][:2]
    ['riskflow.core.alerts', 'riskflow.core.deadletter']
    """
    pkg = importlib.import_module(package)
    names = sorted(info.name for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_"))
    return [importlib.import_module(f"{package}.{name}") for name in names]


class Registry(Mapping[str, type[T]], Generic[T]):
    """The classes of one extension point by name (a rule's ``kind``, a dialect's ``name``, ...).

    Subclasses join with :meth:`add` when they are defined (from the base's
    ``__init_subclass__``); the first read imports every module of ``package`` (then
    :meth:`refresh` scans it again, for a module added while running). Two unrelated
    classes under one name are refused: the second would silently replace the first.
    """

    def __init__(self, package: str, what: str) -> None:
        self.package = package
        self.what = what
        self._classes: dict[str, type[T]] = {}
        self._loaded = False
        self._loading = False

    def add(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` as ``name``; an empty name is a base or a helper, not registered."""
        if not name:
            return
        old = self._classes.get(name)
        if old is not None and old is not cls and issubclass(cls, old):
            return  # a subclass that does not name itself (a test's variant) leaves its parent's entry
        # the same class defined again (a module reloaded) replaces itself
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(
                f"two {self.what}s named {name!r}: {old.__module__}.{old.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}"
            )
        self._classes[name] = cls

    def discard(self, name: str) -> None:
        """Forget ``name`` (a test's throwaway implementation)."""
        self._classes.pop(name, None)

    def load(self) -> Registry[T]:
        """Import every module of the package once (a read does it by itself)."""
        if not self._loaded and not self._loading:
            self._loading = True  # a module that reads the registry while it is imported sees it partly filled
            try:
                import_modules(self.package)
                self._loaded = True
            finally:
                self._loading = False
        return self

    def refresh(self) -> Registry[T]:
        """Scan the package again: modules added since the first read are imported and join."""
        self._loaded = False
        return self.load()

    def __getitem__(self, name: str) -> type[T]:
        if name not in self._classes:
            self.load()
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"no {self.what} {name!r}; known: {', '.join(sorted(self._classes))}") from None

    def __contains__(self, name: object) -> bool:
        if name not in self._classes:
            self.load()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        self.load()
        return iter(sorted(self._classes))

    def __len__(self) -> int:
        self.load()
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.package!r}: {', '.join(sorted(self._classes))})"
