"""`oxedit.__all__` lists exactly the public names (httpx's test of the same name)."""

from __future__ import annotations

import oxedit


def test_all_is_the_public_namespace() -> None:
    # ("@..." names are pytest's assertion rewriting of the package that hosts its plugin)
    public = {n for n in dir(oxedit) if not n.startswith(("_", "@"))} | {"__version__"}
    public -= {"testing"}  # a public submodule, imported on demand
    assert set(oxedit.__all__) == public
    assert oxedit.__all__ == sorted(oxedit.__all__)


def test_every_exception_derives_from_the_root() -> None:
    for name in oxedit.__all__:
        obj = getattr(oxedit, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, oxedit.OxeditError), name
