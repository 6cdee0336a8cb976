"""Run every benchmark script in this folder: ``python benchmarks/run_all.py [--quick]``.

Each script is run in its own process (so peak-memory numbers do not mix)
and writes its table to ``benchmarks/results/``.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"harness.py", "run_all.py", "ssvi_prior_sweep.py"}  # a helper, not a benchmark


def main(argv: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in NOT_BENCHMARKS)
    if not scripts:
        print("no benchmarks yet")
        return 0
    failed = []
    for script in scripts:
        print(f"== {script.name} {' '.join(argv)}", flush=True)
        if subprocess.call([sys.executable, str(script), *argv]) != 0:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
