"""Built-in CLI commands, registered through the same hook as third-party ones.

Each module in this package that defines ``register(cli)`` is a command module; it is found
automatically, so adding a command is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..plugins import hookimpl, warn_once


@hookimpl(tryfirst=True)
def greentrack_register_commands(cli: Any) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        name = f"{__name__}.{info.name}"
        try:
            mod = importlib.import_module(name)
        except Exception as exc:
            warn_once(name, "import", exc)
            continue
        reg = getattr(mod, "register", None)
        if reg is not None:
            reg(cli)
