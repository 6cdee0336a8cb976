"""Which rank? Probabilistic PCA's number of components chosen by the log evidence.

Model (rank ``r``, ``d`` columns, data centered and scaled by one overall sd)::

    W     ~ Normal(0, 1)   (d x r loadings)
    m     ~ Normal(0, I)
    sigma ~ LogNormal(-1, 1.5)
    x_i   ~ Normal(m, W W^T + sigma^2 I)     (latent scores integrated out)

Tipping & Bishop, "Probabilistic principal component analysis" (1999); the
rank is chosen by maximizing the ELBO, which is consistent ("Consistency of
ELBO maximization for model selection", Chérief-Abdellatif 2019, illustrated
on exactly this problem). Loadings start from PCA. Minka's
``PCA(n_components="mle")`` is printed beside it when scikit-learn is installed.

Usage::

    python models/ppca.py                       # d=20, rank 5, n=500, ranks 1..12
    python models/ppca.py --rank 3 --noise 2
    python models/ppca.py --smoke               # tiny, a few seconds (used by the tests)
"""

from __future__ import annotations

import argparse
import time

import torch

from pyrostruct.selection import make_ppca_data, select_components


def minka_rank(x):
    try:
        from sklearn.decomposition import PCA
    except ImportError:
        return None
    return int(PCA(n_components="mle").fit(x).n_components_)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="rows")
    parser.add_argument("--dim", type=int, default=20, help="columns")
    parser.add_argument("--rank", type=int, default=5, help="true rank")
    parser.add_argument("--noise", type=float, default=1.0, help="noise sd")
    parser.add_argument("--max", type=int, default=12, help="largest rank to try")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--executor", default="serial", choices=["serial", "process", "ray"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save the evidence plot here (PNG)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.dim, args.rank, args.max, args.steps = 100, 6, 2, 3, 100
    torch.set_num_threads(1)
    x = make_ppca_data(args.n, args.dim, args.rank, noise=args.noise, seed=args.seed)
    tic = time.perf_counter()
    result = select_components(
        x,
        "ppca",
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
    print(f"true rank = {args.rank}; evidence picks rank {result.best} in {seconds:.1f} s")
    minka = minka_rank(x)
    if minka is not None:
        print(f"scikit-learn PCA(n_components='mle') (Minka) picks rank {minka}")
    if args.plot:
        result.plot(args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
