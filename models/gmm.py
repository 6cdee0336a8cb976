"""How many components? A Gaussian mixture's K chosen by the log evidence.

Model (``K`` components, diagonal covariances, data standardized per column)::

    pi     ~ Dirichlet(1_K)
    mu_k   ~ Normal(0, 3^2 I)                 k = 1..K
    sigma_k ~ LogNormal(-1, 1)  (per dimension)
    x_i    ~ sum_k pi_k Normal(mu_k, diag sigma_k^2)   (assignments summed out)

Each K in 1..--max is fitted by SVI (AutoNormal guide, k-means++ initial
locations, restarts, successive halving) with ``pyrostruct.selection``; its
log evidence is bounded by the ELBO and the importance-weighted bound, with
Monte Carlo error bars. scikit-learn's ``GaussianMixture`` + BIC is printed
beside it when scikit-learn is installed.

Usage::

    python models/gmm.py                        # 5-D, 4 clusters, n=1000, K = 1..8
    python models/gmm.py --k 3 --dim 2 --separation 4 --executor process
    python models/gmm.py --smoke                # tiny, a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import time

import torch

from pyrostruct.selection import make_gmm_data, select_components


def sklearn_bic(x, max_k: int, seed: int = 0):
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        return None
    bics = [
        GaussianMixture(k, covariance_type="diag", n_init=2, random_state=seed).fit(x).bic(x)
        for k in range(1, max_k + 1)
    ]
    return 1 + min(range(max_k), key=bics.__getitem__)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="rows")
    parser.add_argument("--k", type=int, default=4, help="true number of clusters")
    parser.add_argument("--dim", type=int, default=5, help="dimensions")
    parser.add_argument("--separation", type=float, default=6.0, help="cluster separation (sd)")
    parser.add_argument("--max", type=int, default=8, help="largest K to try")
    parser.add_argument("--steps", type=int, default=600, help="SVI steps per restart")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--executor", default="serial", choices=["serial", "process", "ray"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save the evidence plot here (PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.k, args.dim, args.max, args.steps, args.restarts = 150, 2, 2, 3, 100, 1
    torch.set_num_threads(1)
    x, _ = make_gmm_data(args.n, args.k, args.dim, separation=args.separation, seed=args.seed)
    tic = time.perf_counter()
    result = select_components(
        x,
        "gmm",
        args.max,
        steps=args.steps,
        num_restarts=args.restarts,
        executor=args.executor,
        seed=args.seed,
        progress=True,
        **({"elbo_particles": 200, "iwae_particles": 50, "iwae_repeats": 4} if args.smoke else {}),
    )
    seconds = time.perf_counter() - tic
    print(result)
    print(f"true K = {args.k}; evidence picks K = {result.best} in {seconds:.1f} s "
          f"(successive halving saved {100 * result.savings['fraction_saved']:.0f}% of steps)")
    bic = sklearn_bic(x, args.max, args.seed)
    if bic is not None:
        print(f"scikit-learn GaussianMixture + BIC picks K = {bic}")
    if args.plot:
        result.plot(args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
