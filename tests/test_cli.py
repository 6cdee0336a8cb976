"""The command line: help, version, and one-line errors with exit code 2."""

import subprocess
import sys

import pytest

import pyrostruct
from pyrostruct import cli


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyrostruct {pyrostruct.__version__}"


def test_help_lists_only_registered_commands(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pyrostruct")
    for module in cli.COMMAND_MODULES:
        name = module.rsplit(".", 1)[-1].replace("_", "-")
        assert name in out


def test_no_arguments_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: pyrostruct" in capsys.readouterr().out


def test_unknown_option_is_one_line_exit_2(capsys):
    assert cli.main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pyrostruct: error: unrecognized arguments: --no-such-flag")
    assert "Traceback" not in err


def _parser_with_command(func, name="fail"):
    """A parser builder with one subcommand, ``name``, that runs ``func(args)``."""

    def build():
        parser = cli._Parser(prog="pyrostruct")
        sub = parser.add_subparsers(dest="command", parser_class=cli._Parser)
        sub.add_parser(name).set_defaults(func=func)
        return parser

    return build


def _parser_with_failing_command(error):
    """A parser with one subcommand, ``fail``, that raises ``error``."""

    def failing(args):
        raise error

    return _parser_with_command(failing)


def test_input_errors_from_a_command_are_one_line(capsys, monkeypatch):
    """A ValueError or OSError raised by a command becomes one line and exit 2."""
    error = FileNotFoundError(2, "No such file or directory", "missing.csv")
    monkeypatch.setattr(cli, "build_parser", _parser_with_failing_command(error))
    assert cli.main(["fail"]) == 2
    err = capsys.readouterr().err
    assert err == "pyrostruct: error: [Errno 2] No such file or directory: 'missing.csv'\n"


def test_multiline_error_message_is_cut_to_its_first_line(capsys, monkeypatch):
    error = ValueError("column 'x' is constant\nmore detail")
    monkeypatch.setattr(cli, "build_parser", _parser_with_failing_command(error))
    assert cli.main(["fail"]) == 2
    assert capsys.readouterr().err == "pyrostruct: error: column 'x' is constant\n"


def test_a_diverged_training_run_is_one_line_and_exit_1(capsys, monkeypatch):
    from pyrostruct.errors import NonFiniteLossError

    error = NonFiniteLossError("discover: the loss became nan at step 12; lower lr")
    monkeypatch.setattr(cli, "build_parser", _parser_with_failing_command(error))
    assert cli.main(["fail"]) == 1
    assert capsys.readouterr().err == (
        "pyrostruct: error: discover: the loss became nan at step 12; lower lr\n"
    )


def test_abbreviated_options_are_refused_not_guessed(capsys, tmp_path):
    # found by the hostile sweep: --thresh was read as --threshold, --out-... prefixes too
    argv = ["discover", str(tmp_path / "x.csv"), "--out", str(tmp_path / "g.json"),
            "--thresh", "0.5"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "unrecognized arguments: --thresh 0.5" in capsys.readouterr().err


def test_api_errors_name_the_flag_the_user_typed(capsys, tmp_path):
    # found by the hostile sweep: "expected_edges must lie ..." for --expected-edges
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n" + "".join(f"{i},{(i * 7) % 5}\n" for i in range(30)))
    argv = ["discover", str(csv), "--out", str(tmp_path / "g.json"), "--expected-edges", "100"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("pyrostruct: error: --expected-edges must lie")


def test_keyboard_interrupt_exits_130(capsys, monkeypatch):
    monkeypatch.setattr(cli, "build_parser", _parser_with_failing_command(KeyboardInterrupt()))
    assert cli.main(["fail"]) == 130
    assert capsys.readouterr().err == "pyrostruct: interrupted\n"


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "pyrostruct", "--version"],
        ["pyrostruct", "--version"],
    ],
    ids=["python-m", "console-script"],
)
def test_entry_points_run(argv):
    if argv[0] == "pyrostruct":
        import shutil

        exe = shutil.which("pyrostruct") or str(
            __import__("pathlib").Path(sys.executable).with_name("pyrostruct")
        )
        argv = [exe, *argv[1:]]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pyrostruct {pyrostruct.__version__}"


def test_bad_option_through_python_m_exits_2_without_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "pyrostruct", "--bogus"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_interrupt_message_gets_a_line_of_its_own_after_an_open_progress_bar(capsys, monkeypatch):
    """Issue 15, case 15: the message was printed on the progress bar's line."""
    from tqdm.auto import tqdm

    def interrupted(args):
        bar = tqdm(total=10, desc="work")
        bar.update(3)
        raise KeyboardInterrupt  # the bar is never closed

    monkeypatch.setattr(cli, "build_parser", _parser_with_command(interrupted, "work"))
    assert cli.main(["work"]) == 130
    err = capsys.readouterr().err
    assert "work:" in err and err.endswith("\npyrostruct: interrupted\n")


def test_warnings_are_one_line(capsys, monkeypatch):
    import warnings

    def warns(args):
        warnings.warn("few rows\nmore detail", UserWarning, stacklevel=2)
        return 0

    monkeypatch.setattr(cli, "build_parser", _parser_with_command(warns, "w"))
    assert cli.main(["w"]) == 0
    assert capsys.readouterr().err == "pyrostruct: warning: few rows\n"
