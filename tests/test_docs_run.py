"""Tutorials and reference models run at smoke size, so the docs cannot rot.

Every ``tutorials/*.py`` (jupytext percent notebooks) is executed as a script
with ``PYROSTRUCT_SMOKE=1``; every ``models/*.py`` is run with ``--smoke``.
Both lists are discovered, so a new file is tested without being registered.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.py"))
MODELS = sorted(p for p in (ROOT / "models").glob("*.py") if not p.name.startswith("_"))


def _run(argv, tmp_path):
    env = dict(os.environ, PYROSTRUCT_SMOKE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    out = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, f"{argv} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs_at_smoke_size(path, tmp_path):
    _run([sys.executable, str(path)], tmp_path)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_is_a_jupytext_notebook(path):
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(path)
    kinds = {cell.cell_type for cell in notebook.cells}
    assert {"markdown", "code"} <= kinds, f"{path.name} needs markdown and code cells"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_model_runs_with_smoke_flag(path, tmp_path):
    _run([sys.executable, str(path), "--smoke"], tmp_path)
