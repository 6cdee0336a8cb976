"""Top-level API: lazy re-exports, and no heavy import for ``pyrostruct --version``."""

import subprocess
import sys

import pytest

import pyrostruct


@pytest.mark.parametrize(
    "name, module",
    [
        ("relax", "pyrostruct.handlers"),
        ("auto_guide", "pyrostruct.infer.autoguide.structural"),
        ("fit", "pyrostruct.infer.fit"),
        ("discover", "pyrostruct.causal.discover"),
        ("select", "pyrostruct.selection.select"),
    ],
)
def test_top_level_names_are_the_library_functions(name, module):
    obj = getattr(pyrostruct, name)
    assert obj.__module__ == module
    assert name in pyrostruct.__all__ and name in dir(pyrostruct)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pyrostruct.nope  # noqa: B018


def test_importing_the_package_does_not_import_torch():
    code = "import sys, pyrostruct; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _lower_bounds() -> dict[str, str]:
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    bounds = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(,.*)?", requirement.replace(" ", ""))
        assert match, f"{requirement!r} has no lower bound"
        bounds[match.group(1).lower()] = match.group(2)
    return bounds


def test_the_minimum_constraints_pin_every_lower_bound_of_pyproject():
    """`make test-min` must test exactly the lower bounds we publish (issue 15, case 5)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "constraints-min.txt").read_text()
    pins = dict(line.split("==") for line in text.splitlines() if line and not line.startswith("#"))
    pins = {name.lower(): version for name, version in pins.items()}
    bounds = _lower_bounds()
    bounds.pop("ruff")  # the linter runs in `make test` only
    from packaging.version import Version  # a dependency of pytest

    for name, version in bounds.items():
        assert name in pins and Version(pins[name]) == Version(version), (name, pins.get(name))


def test_pyro_ppl_has_an_upper_bound_that_the_installed_pyro_meets():
    """pyrostruct uses Pyro internals (pyrostruct/_pyro_compat.py), so pyro-ppl is bounded
    above by the next minor release nobody has tested (issue 17, item 6). Raising the bound
    means running tests/test_pyro_compat.py on that release first."""
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement  # a dependency of pytest
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    (requirement,) = [
        Requirement(r) for r in project["dependencies"] if Requirement(r).name == "pyro-ppl"
    ]
    upper = [spec for spec in requirement.specifier if spec.operator == "<"]
    assert len(upper) == 1, f"pyro-ppl needs one '<' bound, got {requirement}"
    bound = Version(upper[0].version)
    assert bound.micro == 0 and len(bound.release) == 2, f"bound a minor release: {bound}"
    installed = version("pyro-ppl")
    assert requirement.specifier.contains(installed), (installed, str(requirement))
    # the bound is the next minor release after the newest one tested, not a later one
    assert Version(installed).release[:2] == (bound.major, bound.minor - 1), (installed, bound)
