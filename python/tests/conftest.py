"""pytest setup: which salience is under test, and the shared fixtures."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

import salience

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def _imported_from() -> pathlib.Path:
    return pathlib.Path(salience.__file__).resolve().parent


def pytest_report_header(config: pytest.Config) -> str:
    return (f"salience {salience.__version__} from {_imported_from()}, "
            f"torch {torch.__version__}, numpy {np.__version__}, "
            f"{salience.get_num_threads()} threads")


def pytest_configure(config: pytest.Config) -> None:
    # An editable install of another checkout would test that checkout's
    # Python code: say so rather than pass or fail for the wrong tree.
    package = _imported_from()
    other_tree = package.parent.name == "python" and (package.parents[1] / "pyproject.toml").exists()
    if other_tree and package != CHECKOUT / "python" / "salience":
        pytest.exit(f"salience is imported from {package}, not this checkout "
                    f"({CHECKOUT}): run python/install.sh here first", returncode=4)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


@pytest.fixture(scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """One thread each for torch and salience over a module of tiny calls
    (results do not depend on it): on a busy machine, a second worker that
    is scheduled late stretches every small product."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    salience.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    salience.set_num_threads(0)
