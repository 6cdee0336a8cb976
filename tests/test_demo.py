"""`make demo`'s script runs end to end at smoke size and writes its outputs."""

import json

from pyrostruct import demo


def test_demo_runs_every_section_and_writes_its_outputs(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--smoke"]) == 0
    out = capsys.readouterr().out
    for i, (title, _) in enumerate(demo.SECTIONS, 1):
        assert f"[{i}/{len(demo.SECTIONS)}] {title}" in out
    assert "demo finished" in out
    assert (tmp_path / "gmm_evidence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert len(graph["nodes"]) == 20
