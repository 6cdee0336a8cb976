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


def _mode(path):
    import stat

    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_get_the_mode_open_would_give(tmp_path, umask):
    """Issue 15, case 12: mkstemp's 0600 leaked into every output."""
    import os

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask


def test_overwriting_keeps_the_existing_files_mode(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_json(path, {"b": 2})
    assert _mode(path) == 0o640 and json.loads(path.read_text()) == {"b": 2}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_never_written(tmp_path, bad):
    from pyrostruct.errors import InputError

    path = tmp_path / "out.json"
    with pytest.raises(InputError, match=r"out.json\['x'\]\[1\] is .*non-finite"):
        atomic_write_json(path, {"x": [1.0, bad]})
    assert list(tmp_path.iterdir()) == []


def test_write_errors_name_the_users_path_not_a_temporary_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot write .*file/out.json") as info:
        atomic_write_json(blocker / "out.json", {})
    assert ".tmp" not in str(info.value)
    # mkdir's "File exists" / "Not a directory" named no culprit
    for target in (blocker / "out.json", blocker / "sub" / "out.json"):
        with pytest.raises(OSError, match=r"file is a file, not a folder"):
            atomic_write_json(target, {})


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_figures_take_their_format_from_the_suffix_and_are_reproducible(tmp_path, suffix, magic):
    """Found beyond issue 15's list: --plot graph.pdf wrote PNG bytes into a .pdf file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyrostruct._io import save_figure

    files = []
    for i in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        path = tmp_path / f"f{i}{suffix}"
        save_figure(fig, path)
        plt.close(fig)
        files.append(path.read_bytes())
    assert files[0].startswith(magic) and files[0] == files[1]


@pytest.mark.parametrize("name", ["graph.jpg", "graph", "graph.png.txt"])
def test_unknown_figure_formats_are_refused(name):
    from pyrostruct._io import figure_format
    from pyrostruct.errors import InputError

    with pytest.raises(InputError, match=r"--plot .*name the file .png, .pdf or .svg"):
        figure_format(name, flag="--plot")
