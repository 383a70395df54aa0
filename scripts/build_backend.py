"""PEP 517 build backend: setuptools, with its scratch folders outside the checkout.

setuptools writes ``build/`` and ``seamcut.egg-info`` into the directory it builds in,
and pip builds a checkout in place, so ``pip install .`` or ``pip wheel .`` would leave
both in the user's tree. This wrapper points setuptools' ``build_base`` and
``egg_base`` at a temporary folder (through ``DIST_EXTRA_CONFIG``, setuptools' own hook
for an extra config file) for the duration of each hook (asking for the build
requirements runs ``egg_info`` too), then removes it. A ``DIST_EXTRA_CONFIG`` of the
caller's is set aside meanwhile. Imports the stdlib and setuptools only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from setuptools import build_meta as _setuptools

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

_T = TypeVar("_T")


@contextmanager
def _scratch_outside_checkout() -> Iterator[None]:
    previous = os.environ.get("DIST_EXTRA_CONFIG")
    with tempfile.TemporaryDirectory(prefix="seamcut-build-") as tmp:
        cfg = Path(tmp) / "setup.cfg"
        cfg.write_text(f"[build]\nbuild_base = {tmp}/build\n\n[egg_info]\negg_base = {tmp}\n")
        os.environ["DIST_EXTRA_CONFIG"] = str(cfg)
        try:
            yield
        finally:
            if previous is None:
                del os.environ["DIST_EXTRA_CONFIG"]
            else:
                os.environ["DIST_EXTRA_CONFIG"] = previous


def _outside(hook: Callable[..., _T]) -> Callable[..., _T]:
    def run(*args: Any, **kwargs: Any) -> _T:
        with _scratch_outside_checkout():
            return hook(*args, **kwargs)

    run.__name__ = hook.__name__
    run.__doc__ = hook.__doc__
    return run


build_wheel = _outside(_setuptools.build_wheel)
build_sdist = _outside(_setuptools.build_sdist)
build_editable = _outside(_setuptools.build_editable)
get_requires_for_build_wheel = _outside(_setuptools.get_requires_for_build_wheel)
get_requires_for_build_sdist = _outside(_setuptools.get_requires_for_build_sdist)
get_requires_for_build_editable = _outside(_setuptools.get_requires_for_build_editable)
prepare_metadata_for_build_wheel = _outside(_setuptools.prepare_metadata_for_build_wheel)
prepare_metadata_for_build_editable = _outside(_setuptools.prepare_metadata_for_build_editable)
