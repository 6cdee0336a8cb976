"""Import a reference model of ``models/`` (scripts, not a package) in a test."""

import importlib.util
import pathlib

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"


def load_model(name: str):
    """The module ``models/<name>.py``."""
    spec = importlib.util.spec_from_file_location(name, MODELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
