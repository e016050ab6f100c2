"""Dataclasses without the cost of generating their methods at import.

``@dataclass`` writes each class's ``__init__``, ``__repr__`` and ``__eq__`` (and, frozen, its
``__setattr__``, ``__delattr__`` and ``__hash__``) as source text and compiles it with ``exec``: about
0.8 ms per class on a CI runner, paid by every process that imports the class. The result types of a
run (``RunResult``, ``DeviceResult``, ``PhaseResult``), a source's ``Device`` and the grid's
``Intensity`` are imported at every session's start, the pytest plugin's included.

:func:`lean_dataclass` keeps them dataclasses (``dataclasses.fields``, ``asdict``, ``replace`` and
``is_dataclass`` work as before) but compiles nothing: the class writes its own ``__init__`` (as fast
as the generated one; ``tests/test_lean_dataclass.py`` checks that it takes the same arguments, with
the same defaults, as ``@dataclass`` would generate), and ``__repr__``, ``__eq__`` (and, frozen, the
read-only attributes and ``__hash__``) are shared functions that behave as the generated ones.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

T = TypeVar("T", bound=type)


def _repr(self: Any) -> str:
    return f"{type(self).__qualname__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__lean_repr__)})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        names = self.__lean_eq__
        return tuple(getattr(self, k) for k in names) == tuple(getattr(other, k) for k in names)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, k) for k in self.__lean_eq__))


def _frozen_setattr(self: Any, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class LeanDataclass:
    """The base of a lean dataclass: what type checkers need to see it as a dataclass instance (for
    ``dataclasses.asdict`` and ``replace``), and the attributes :func:`lean_dataclass` sets."""

    __slots__ = ()
    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Any]]
        __lean_repr__: ClassVar[tuple[str, ...]]
        __lean_eq__: ClassVar[tuple[str, ...]]
        __lean_frozen__: ClassVar[bool]


def lean_dataclass(cls: T | None = None, *, frozen: bool = False) -> Any:
    """``@dataclass`` (or ``@dataclass(frozen=True)``) for a :class:`LeanDataclass` that defines its own
    ``__init__``.

    A frozen class's ``__init__`` sets its fields with ``object.__setattr__``, as the generated one does.
    """

    def wrap(c: T) -> T:
        if not issubclass(c, LeanDataclass):
            raise TypeError(f"{c.__qualname__}: a lean dataclass derives from LeanDataclass")
        if "__init__" not in c.__dict__:
            raise TypeError(f"{c.__qualname__}: lean_dataclass needs the class's own __init__")
        for name in ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
            if name in c.__dict__:
                raise TypeError(f"{c.__qualname__}: lean_dataclass writes {name} itself")
        out: Any = dataclass(init=False, repr=False, eq=False)(c)
        fs = fields(out)
        out.__lean_repr__ = tuple(f.name for f in fs if f.repr)
        out.__lean_eq__ = tuple(f.name for f in fs if f.compare)
        out.__repr__ = _repr
        out.__eq__ = _eq
        if frozen:
            out.__setattr__ = _frozen_setattr
            out.__delattr__ = _frozen_delattr
            out.__hash__ = _hash
        else:
            out.__hash__ = None  # mutable with __eq__: unhashable, as @dataclass makes it
        out.__lean_frozen__ = frozen
        return out

    return wrap(cls) if cls is not None else wrap


__all__ = ["lean_dataclass", "LeanDataclass"]
