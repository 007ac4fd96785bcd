"""movielib: shot-level scene tags, features, encoders and served models for movie catalogs, on Ray."""

import importlib
from collections.abc import Callable

__version__ = "0.1.0"


def lazy_exports(package: str, public: dict[str, str]) -> tuple[list[str], Callable]:
    """`__all__` and a module `__getattr__` for a package whose public names live in its submodules, each imported
    on first use: a light submodule (a config the CLI reads) does not pull in torch with its package."""

    def __getattr__(name: str):
        if name in public:
            return getattr(importlib.import_module(public[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(public), __getattr__
