"""The package around the functions: version, metadata, typing files."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re

import salience
from salience import _salience

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def test_version_is_the_libraries() -> None:
    header = (CHECKOUT / "include" / "salience" / "version.h").read_text()
    version = re.search(r'SALIENCE_VERSION_STRING\s+"([^"]+)"', header)
    assert version is not None
    assert salience.__version__ == _salience.__version__ == version.group(1)
    assert importlib.metadata.version("salience") == salience.__version__


def test_typing_files_are_installed() -> None:
    package = pathlib.Path(salience.__file__).parent
    assert (package / "py.typed").exists()
    stub = pathlib.Path(_salience.__file__).with_name("_salience.pyi")
    assert stub.exists() and "def forward(" in stub.read_text()


def test_public_names() -> None:
    for name in salience.__all__:
        assert hasattr(salience, name), name
    for name in ("scaled_dot_product_attention", "attention", "flash_attn_func",
                 "flash_attn_varlen_func"):
        assert getattr(salience, name).__doc__, name
