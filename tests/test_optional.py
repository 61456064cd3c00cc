import re
import sys
import tomllib
from pathlib import Path

import pytest

from tg_funcattn import _optional
from tg_funcattn._optional import available, require

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _requirement_names(requirements):
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_a_missing_submodule_names_its_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails
    with pytest.raises(ImportError) as error:
        require("matplotlib.pyplot", "saving pictures")
    message = str(error.value)
    assert message == ("saving pictures needs the optional package 'matplotlib': pip install "
                       "'tg-funcattn[viz]'  (or: pip install matplotlib)")
    assert not available("matplotlib.pyplot")


@pytest.mark.parametrize("module", sorted(_optional._PACKAGES))
def test_every_hint_names_a_pip_package_of_its_extra(module, monkeypatch):
    pip_name, extra = _optional._PACKAGES[module]
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError) as error:
        require(module, "a feature")
    assert re.search(r"pip install ([^ )]+)\)?$", str(error.value)).group(1) == pip_name
    assert (extra is None) == ("tg-funcattn[" not in str(error.value))
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", pip_name), pip_name  # a PyPI name, not a module
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    if extra is None:
        assert all(pip_name not in _requirement_names(r) for r in extras.values())
    else:
        assert pip_name in _requirement_names(extras[extra]), (extra, extras[extra])


def test_unknown_modules_and_broken_installs(monkeypatch):
    with pytest.raises(ValueError, match="'scipy.sparse' is not an optional dependency"):
        require("scipy.sparse", "anything")
    with pytest.raises(ValueError, match="'numpyy' is not an optional dependency"):
        available("numpyy")

    def broken(name):
        raise OSError(f"{name}: undefined symbol")  # an extension built for another torch
    monkeypatch.setattr(_optional.importlib, "import_module", broken)
    assert not available("torch_scatter")
