"""The benchmark harness: timing, memory, tables and result files."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import harness  # noqa: E402


def test_time_call_runs_warmup_and_repeats():
    calls = []
    t = harness.time_call(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5
    assert len(t.times) == 3 and t.min <= t.median


def test_time_call_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        harness.time_call(lambda: None, repeats=0)


_PEAK_TWICE = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import harness
harness.use_exact_memory_accounting()
n = 2000  # 16 MB of float32, freed before returning
def alloc():
    x = torch.ones(n, n)
    y = x * 2
    return float(y[0, 0])
alloc()  # torch's own first-call allocations are not the function's
print(harness.peak_memory(alloc), harness.peak_memory(alloc))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_tensor_allocation():
    """In a child process: the malloc setting is process-wide and slows allocation."""
    bench = str(Path(__file__).resolve().parents[2] / "benchmarks")
    out = subprocess.run([sys.executable, "-c", _PEAK_TWICE, bench], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    first, second = (int(v) for v in out.split())
    assert 12e6 < first < 40e6
    assert 12e6 < second < 40e6  # measured again: the freed memory was returned


def test_markdown_table_and_report_file(tmp_path):
    report = harness.Report("unit", quick=True, command="python benchmarks/unit.py --quick")
    report.add_row({"d": 10, "ours ms": 1.23456, "peer ms": 250.0})
    report.add_row({"d": 100, "ours ms": 0.5, "peer ms": float("nan")})
    path = report.write(headline="ratio 3x", directory=tmp_path)
    text = path.read_text()
    assert path.name == "unit-quick.md"
    assert "| d | ours ms | peer ms |" in text
    assert "| 10 | 1.23 | 250 |" in text
    assert "| 100 | 0.5 | n/a |" in text
    assert "**ratio 3x**" in text
    assert "torch" in text and "cores" in text
    assert "python benchmarks/unit.py --quick" in text


def test_rewriting_a_report_keeps_its_hand_written_notes(tmp_path):
    report = harness.Report("unit", quick=False, command="python benchmarks/unit.py")
    report.add_row({"d": 10})
    path = report.write(directory=tmp_path)
    path.write_text(path.read_text() + "\n## Notes moved from docstrings\n\n- a note\n")
    report.write(directory=tmp_path)
    text = path.read_text()
    assert text.count("| d |") == 1
    assert text.endswith("## Notes moved from docstrings\n\n- a note\n")


@pytest.mark.slow
def test_discover_scale_runs_to_its_table(tmp_path, monkeypatch):
    """benchmarks/discover_scale.py ran every size and then failed on its headline (a renamed
    column, 'setup s (order search)'), writing nothing: the quick run must write its table."""
    import importlib

    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(sys, "argv", ["discover_scale.py", "--quick", "--threads", "1"])
    module = importlib.import_module("discover_scale")
    module.main()
    text = (tmp_path / "discover_scale-quick.md").read_text()
    assert "**d = 100:" in text and "order search" in text


def test_in_fresh_process_returns_the_result_stops_at_the_timeout_and_reports_errors():
    """Issue 19: discover_scale timed discover under use_exact_memory_accounting (4-5x slower
    order search); each size now runs in its own process with the normal allocator."""
    import math
    import time

    assert harness.in_fresh_process(math.factorial, 5, threads=1) == 120
    started = time.perf_counter()
    assert harness.in_fresh_process(time.sleep, 60, timeout=5) is None
    assert time.perf_counter() - started < 30
    with pytest.raises(RuntimeError, match="math domain error"):
        harness.in_fresh_process(math.sqrt, -1.0)
