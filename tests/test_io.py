"""Atomic writes leave either the old file or the complete new one."""

import json

import pytest

from pyrostruct._io import atomic_open, atomic_save, atomic_write_json


def test_atomic_write_json_roundtrip(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write("half of the new")
            raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_save_is_loadable(tmp_path):
    import torch

    path = tmp_path / "ckpt.pt"
    atomic_save(path, {"step": 3, "x": torch.arange(3)})
    loaded = torch.load(path)
    assert loaded["step"] == 3 and loaded["x"].tolist() == [0, 1, 2]


def test_atomic_open_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
