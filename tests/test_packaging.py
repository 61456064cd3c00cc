"""What the installed package carries besides its modules."""
import importlib.resources
import tomllib

from helpers import ROOT


def test_type_checkers_read_the_annotations():
    """PEP 561: ``py.typed`` in the package and in the wheel's package data."""
    assert importlib.resources.files("tg_funcattn").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["tg_funcattn"]
