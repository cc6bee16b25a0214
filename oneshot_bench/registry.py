"""Name -> class registries, so a method or a search space is added in one file (like timm's register_model)."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError
from .names import check_name, shown

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of classes, filled by a decorator at import time of `package`'s modules."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, type[T]] = {}
        self._imported = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        # the name begins run ids and names cache folders: a plugin with a name that is not a plain file name is
        # refused when its module is imported, before any run uses it
        check_name(f"{self.kind} name", name, f'@register_{self.kind}("my_{self.kind}")',
                   becomes=f"part of run ids and folder names, and what {self.kind}=<name> selects")

        def decorate(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice ({self._entries[name]} and {cls})")
            cls.name = name  # type: ignore[attr-defined]
            self._entries[name] = cls
            return cls

        return decorate

    def _import_all(self) -> None:
        # Importing every module of the package runs its @register decorators; done lazily so that
        # importing one space does not pull in every method.
        if self._imported:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        self._imported = True

    def names(self) -> list[str]:
        self._import_all()
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        self._import_all()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {shown(name)}. Valid choices: {', '.join(self.names())}. "
                f"Pick one with `{self.kind}=<name>`."
            )
        return self._entries[name]
