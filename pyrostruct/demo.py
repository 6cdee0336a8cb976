"""``make demo``: a short end-to-end tour of what pyrostruct can do today.

Each section is a real (small) run on built-in synthetic data and prints what
it did. Run with ``python -m pyrostruct.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

SECTIONS: list[tuple[str, Callable[[Path], None]]] = []


def section(title: str):
    """Register a demo section (run in registration order)."""

    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        SECTIONS.append((title, fn))
        return fn

    return register


@section("Beta-Bernoulli coin fitted by Pyro SVI (sanity check of the install)")
def beta_bernoulli(out: Path) -> None:
    import pyro
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    data = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])

    def model():
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("flips", len(data)):
            pyro.sample("x", dist.Bernoulli(p), obs=data)

    def guide():
        a = pyro.param("a", torch.tensor(2.0), constraint=dist.constraints.positive)
        b = pyro.param("b", torch.tensor(2.0), constraint=dist.constraints.positive)
        pyro.sample("p", dist.Beta(a, b))

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(500):
        svi.step()
    a, b = pyro.param("a").item(), pyro.param("b").item()
    print(f"  posterior mean of the coin's bias: {a / (a + b):.3f} (exact: {9 / 12:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyrostruct.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for i, (title, fn) in enumerate(SECTIONS, 1):
        print(f"[{i}/{len(SECTIONS)}] {title}", flush=True)
        start = time.perf_counter()
        fn(args.out)
        print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"demo finished; outputs in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
