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
