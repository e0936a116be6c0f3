"""`oxedit.__all__` lists exactly the public names (httpx's test of the same name)."""

from __future__ import annotations

import oxedit


def test_all_is_the_public_namespace() -> None:
    # ("@..." names are pytest's assertion rewriting of the package that hosts its plugin)
    public = {n for n in dir(oxedit) if not n.startswith(("_", "@"))} | {"__version__"}
    public -= {"ray", "server", "testing", "types"}  # public submodules, imported on demand
    assert set(oxedit.__all__) == public
    assert oxedit.__all__ == sorted(oxedit.__all__)


def test_every_exception_derives_from_the_root() -> None:
    for name in oxedit.__all__:
        obj = getattr(oxedit, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, UserWarning), name  # a category to filter, never raised
        elif isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, oxedit.OxeditError), name


def test_connection_failures_are_public_under_transport_error() -> None:
    assert {"APIConnectionError", "APITimeoutError"} <= set(oxedit.__all__)
    assert issubclass(oxedit.APITimeoutError, oxedit.APIConnectionError)
    assert issubclass(oxedit.APIConnectionError, oxedit.TransportError)


def test_no_private_exception() -> None:
    # A private subclass would reach users under a name they cannot import (as the transport's
    # `ConnectionFailed` once did, and `ResponseTooLarge` of downloads until it became the
    # public `ResponseTooLargeError`).
    def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    private = {
        cls.__name__
        for cls in subclasses(oxedit.OxeditError)
        if cls.__module__.startswith("oxedit.") and getattr(oxedit, cls.__name__, None) is not cls
    }
    assert private == set()


def test_oxedit_types_is_the_home_of_every_public_type() -> None:
    import oxedit.types

    public = {n for n in dir(oxedit.types) if not n.startswith(("_", "@"))}
    assert set(oxedit.types.__all__) == public
    assert oxedit.types.__all__ == sorted(oxedit.types.__all__)
    # What the client returns or accepts and had no public name before.
    assert {"Status", "BulkStatus", "ImageInput", "BulkItem", "ImageResult", "UploadStats",
            "HttpSettings"} <= set(oxedit.types.__all__)  # fmt: skip
    # The top-level names are the same objects.
    for name in set(oxedit.types.__all__) & set(oxedit.__all__):
        assert getattr(oxedit.types, name) is getattr(oxedit, name), name
