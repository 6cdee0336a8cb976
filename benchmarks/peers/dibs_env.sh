#!/usr/bin/env bash
# Creates .venv-dibs at the repository root: the environment of the DiBS peer runner
# (benchmarks/peers/dibs_marginals.py). DiBS: Lorch, Rothfuss, Schoelkopf, Krause,
# "DiBS: Differentiable Bayesian Structure Learning", NeurIPS 2021 (PyPI dibs-lib).
#
# dibs-lib 1.3.3 (Nov 2023) goes in with --no-deps: it lists jupyter and tqdm, which it
# never imports; it does import igraph, scikit-learn, matplotlib and imageio. jax/jaxlib
# 0.4.23 (its era, numpy < 2) were tested; jax 0.10.2 also runs it, about 2x slower on CPU.
# Usage: bash benchmarks/peers/dibs_env.sh   (PYTHON=python3.11 to pick the interpreter;
# tested with CPython 3.11.7). Re-running rebuilds the environment from scratch.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-dibs"
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" jax==0.4.23 jaxlib==0.4.23 numpy==1.26.4 scipy==1.11.4 ml_dtypes==0.5.4 \
    opt_einsum==3.4.0 igraph==1.0.0 texttable==1.7.2 scikit-learn==1.9.1 joblib==1.6.0 \
    threadpoolctl==3.8.0 matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 \
    fonttools==4.69.1 kiwisolver==1.5.1 packaging==26.4 pillow==13.0.0 pyparsing==3.3.3 \
    python-dateutil==4.0.0 imageio==2.38.2
"${pip[@]}" --no-deps dibs-lib==1.3.3
JAX_PLATFORMS=cpu "$venv/bin/python" -c "
import jax, dibs.inference, dibs.models
from importlib.metadata import version
print('ok: dibs-lib', version('dibs-lib'), 'jax', jax.__version__, 'at $venv')"
