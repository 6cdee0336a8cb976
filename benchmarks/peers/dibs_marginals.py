"""DiBS edge marginals for the posterior-accuracy benchmark, run in its own environment.

Peer method: DiBS, Lorch, Rothfuss, Schoelkopf, Krause, "DiBS: Differentiable Bayesian
Structure Learning", NeurIPS 2021 (PyPI ``dibs-lib``). Run with the interpreter of
``.venv-dibs`` (made by ``dibs_env.sh``)::

    .venv-dibs/bin/python benchmarks/peers/dibs_marginals.py IN.npz OUT.npz

IN.npz: ``x`` (n, d) data; ``model``: "linear-gaussian" (MarginalDiBS + BGe, weights
integrated out), "linear-joint" (JointDiBS + LinearGaussian) or "nonlinear" (JointDiBS +
DenseNonlinearGaussian, one hidden layer of 5); ``n_particles``; ``steps``; ``seed``;
``edge_prob`` p. Optional: ``standardize`` (default False: ``x`` is used as given),
``bge_df`` (BGe Wishart degrees of freedom, default d + 2), ``bge_scale`` c (emulate an
inverse-Wishart ``IW(df, c I)`` scale, see below), ``obs_noise`` (noise variance of the
joint models, DiBS default 0.1).

OUT.npz: ``edge_marginals`` (d, d), ``A[i, j] = P(i -> j)`` (the convention of DiBS too:
its BGe takes ``g[:, j]`` as the parents of ``j``), from the particles' hard graphs
(``u_i . v_j > 0``) that are acyclic (all of them if none is), each
distinct graph weighted by its unnormalized posterior ``p(G) p(D | G)`` (joint models:
``p(G) p(theta | G) p(D | G, theta)``); ``edge_marginals_empirical`` (acyclic particles
weighted equally); ``edge_marginals_dibs_mixture`` (DiBS's own ``get_mixture``: no graph
prior in the weights, duplicates not merged, cyclic particles kept); ``n_cyclic``;
``seconds`` (model set-up, SVGD incl. jit compile, marginals; not the jax import);
``compile_seconds`` (first SVGD chunk minus a later one; NaN when ``steps`` has no
suitable divisor); ``n_particles``, ``steps``, ``dibs_version``, ``jax_version``.

Prior: DiBS's ``ErdosReniDAGDistribution`` has ``p = 2 n_edges_per_node / (d - 1)``, so
``n_edges_per_node = edge_prob (d - 1) / 2`` gives ``log p(G) = |G| logit(p) + const``
on DAGs (no linear-extension factor, unlike an order-then-edges prior).

BGe: DiBS uses ``T = t I``, ``t = alpha_mu (df - d - 1) / (alpha_mu + 1)`` (0.5 with
``alpha_mu = 1``, ``df = d + 2``) and a Normal prior on the mean (``mean_obs = 0``), so
pass centred data. Scaling the data by ``s`` equals using ``t / s**2``, so ``bge_scale = c``
multiplies ``x`` by ``sqrt(t / c)``; on centred data DiBS's BGe then equals the
inverse-Wishart ``IW(df, c I)`` BGe up to a constant. DiBS computes in float32.
"""

import sys
import time
from importlib.metadata import version

import numpy as np

MODELS = ("linear-gaussian", "linear-joint", "nonlinear")


def fail(msg):
    print(f"dibs_marginals: {msg}", file=sys.stderr)
    sys.exit(2)


def read_input(path):
    try:
        f = dict(np.load(path, allow_pickle=False))
    except Exception as e:  # noqa: BLE001 - any unreadable file is a bad input
        fail(f"cannot read {path}: {e}")
    missing = {"x", "model", "n_particles", "steps", "seed", "edge_prob"} - set(f)
    if missing:
        fail(f"{path} lacks {sorted(missing)}")
    try:
        x = np.asarray(f["x"], dtype=np.float64)
        a = dict(
            model=str(f["model"]),
            n_particles=int(f["n_particles"]),
            steps=int(f["steps"]),
            seed=int(f["seed"]),
            edge_prob=float(f["edge_prob"]),
            standardize=bool(f.get("standardize", False)),
            bge_df=float(f["bge_df"]) if "bge_df" in f else None,
            bge_scale=float(f["bge_scale"]) if "bge_scale" in f else None,
            obs_noise=float(f.get("obs_noise", 0.1)),
        )
    except (TypeError, ValueError) as e:
        fail(f"bad value in {path}: {e}")
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        fail(f"x must be a finite (n, d) array with n, d >= 2, got shape {x.shape}")
    if a["model"] not in MODELS:
        fail(f"model must be one of {MODELS}, got {a['model']!r}")
    if a["n_particles"] < 1 or a["steps"] < 1 or not 0 < a["edge_prob"] < 1:
        fail("need n_particles >= 1, steps >= 1 and 0 < edge_prob < 1")
    d = x.shape[1]
    if a["bge_df"] is not None and not a["bge_df"] > d + 1:
        fail(f"bge_df must exceed d + 1 = {d + 1}")
    if a["standardize"]:
        sd = x.std(axis=0)
        if not (sd > 0).all():
            fail("a column of x is constant")
        x = (x - x.mean(axis=0)) / sd
    return x, a


def chunk_size(steps):
    """Largest divisor of ``steps`` in ``[steps / 20, steps / 2]`` (SVGD runs in chunks)."""
    for c in range(steps // 2, max(1, -(-steps // 20)) - 1, -1):
        if c >= 1 and steps % c == 0:
            return c
    return None


def is_dag(g):
    m = np.eye(g.shape[0]) + g / g.shape[0]
    return np.trace(np.linalg.matrix_power(m, g.shape[0])) - g.shape[0] < 1e-6


def marginals(gs, logw):
    """Weighted mean of graphs; ``logw`` None means equal weights."""
    w = np.ones(len(gs)) if logw is None else np.exp(logw - logw.max())
    return np.einsum("k,kij->ij", w / w.sum(), gs)


def run(x, a):
    import jax
    import jax.numpy as jnp
    from dibs.inference import JointDiBS, MarginalDiBS
    from dibs.models import BGe, DenseNonlinearGaussian, ErdosReniDAGDistribution, LinearGaussian

    t0 = time.perf_counter()
    d = x.shape[1]
    graph = ErdosReniDAGDistribution(d, n_edges_per_node=a["edge_prob"] * (d - 1) / 2)
    if a["model"] == "linear-gaussian":
        lik = BGe(n_vars=d, alpha_lambd=a["bge_df"])
        if a["bge_scale"] is not None:
            t = lik.alpha_mu * (lik.alpha_lambd - d - 1) / (lik.alpha_mu + 1)
            x = x * np.sqrt(t / a["bge_scale"])
        dibs = MarginalDiBS(x=jnp.asarray(x, jnp.float32), graph_model=graph, likelihood_model=lik)
    else:
        lik = (
            LinearGaussian(n_vars=d, obs_noise=a["obs_noise"])
            if a["model"] == "linear-joint"
            else DenseNonlinearGaussian(n_vars=d, hidden_layers=(5,), obs_noise=a["obs_noise"])
        )
        dibs = JointDiBS(x=jnp.asarray(x, jnp.float32), graph_model=graph, likelihood_model=lik)

    stamps = []

    def callback(zs, **_):
        jax.block_until_ready(zs)
        stamps.append(time.perf_counter())

    chunk = chunk_size(a["steps"])
    t1 = time.perf_counter()
    out = dibs.sample(
        key=jax.random.PRNGKey(a["seed"]),
        n_particles=a["n_particles"],
        steps=a["steps"],
        callback=callback if chunk else None,
        callback_every=chunk,
    )
    joint = a["model"] != "linear-gaussian"
    gs, theta = out if joint else (out, None)
    gs = np.asarray(gs)
    mix = dibs.get_mixture(gs, theta) if joint else dibs.get_mixture(gs)
    dibs_mixture = marginals(gs, np.asarray(mix.logp, np.float64))

    dag = np.array([is_dag(g) for g in gs])
    keep = dag if dag.any() else np.ones(len(gs), bool)
    if joint:  # every (G, theta) particle is distinct; mix.logp = log p(theta, D | G) + const
        uniq, loglik = gs[keep], np.asarray(mix.logp, np.float64)[keep]
    else:
        uniq = np.unique(gs[keep], axis=0)
        loglik = np.asarray(
            dibs.eltwise_log_marginal_likelihood_observ(jnp.asarray(uniq), dibs.x), np.float64
        )
    logw = loglik + uniq.sum(axis=(1, 2)) * np.log(graph.p / (1 - graph.p))  # + log p(G)
    result = dict(
        edge_marginals=marginals(uniq, logw),
        edge_marginals_empirical=marginals(gs[keep], None),
        edge_marginals_dibs_mixture=dibs_mixture,
        n_cyclic=int((~dag).sum()),
        seconds=time.perf_counter() - t0,
        compile_seconds=(stamps[0] - t1) - (stamps[-1] - stamps[-2]) if len(stamps) > 1 else np.nan,
    )
    return result


def main(argv):
    if len(argv) != 3:
        fail("usage: dibs_marginals.py IN.npz OUT.npz")
    x, a = read_input(argv[1])
    import jax

    result = run(x, a)
    np.savez(
        argv[2],
        n_particles=a["n_particles"],
        steps=a["steps"],
        model=a["model"],
        dibs_version=version("dibs-lib"),
        jax_version=jax.__version__,
        **{k: np.asarray(v, np.float64) if k.startswith("edge") else v for k, v in result.items()},
    )


if __name__ == "__main__":
    main(sys.argv)
