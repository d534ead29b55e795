"""The one registry type behind every plug-in point."""

import logging
import sys
import types

import pytest

from bmbench.core import registry as R


def make(**kw):
    return R.Registry("widget", "bmbench.test_widgets", error=LookupError, **kw)


def test_register_get_and_did_you_mean():
    reg = make(key="model.widget")
    reg.register("alpha", 1)

    @reg.register("beta", aliases=("b",))
    def beta():
        """Beta does things. More text."""

    assert reg.get("alpha") == 1 and reg["b"] is beta and "b" in reg and "gamma" not in reg
    assert reg.names() == ["alpha", "beta"] and reg.names("b*") == ["beta"]
    assert dict(reg.describe()) == {"alpha": "", "beta": "Beta does things"}
    with pytest.raises(LookupError, match=r"^model\.widget: unknown widget 'alpah' \(did you mean 'alpha'\?\); "
                                          r"known: alpha, beta$"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha", 2)


def test_builtins_are_imported_on_first_lookup_only(monkeypatch):
    module = types.ModuleType("bmbench_test_builtin_widgets")
    reg = make(builtins=("bmbench_test_builtin_widgets",))
    module.__dict__["loaded"] = True
    imported = []

    def fake_import(name):
        imported.append(name)
        reg.register("builtin", object())
        return module

    monkeypatch.setattr(R.importlib, "import_module", fake_import)
    assert imported == []
    assert reg.names() == ["builtin"] and imported == ["bmbench_test_builtin_widgets"]
    reg.names()
    assert imported == ["bmbench_test_builtin_widgets"]


class FakeEntryPoint:
    def __init__(self, name, value, load, dist="plugin-dist"):
        self.name, self.value, self._load = name, value, load
        self.dist = types.SimpleNamespace(name=dist, version="1.2")

    def load(self):
        return self._load()


def test_entry_points_register_modules_and_objects_and_a_broken_one_is_skipped(monkeypatch, caplog):
    reg = make()

    def module_plugin():
        reg.register("from_module", "m")
        return sys.modules[__name__]

    def broken():
        raise ImportError("no module named plugin_dep")

    eps = [FakeEntryPoint("mod", "plugin.widgets", module_plugin),
           FakeEntryPoint("obj", "plugin.widgets:OBJ", lambda: "o"),
           FakeEntryPoint("bad", "bad_plugin", broken, dist="bad-dist")]
    monkeypatch.setattr(R, "_entry_points", lambda group: eps if group == "bmbench.test_widgets" else [])
    with caplog.at_level(logging.WARNING):
        assert reg.names() == ["from_module", "obj"]
    assert "plug-in bad = bad_plugin (entry point group bmbench.test_widgets) failed to load" in caplog.text
    assert reg.origin("obj") == "plugin-dist 1.2" and reg.origin("from_module") == "plugin-dist 1.2"
    reg.register("own", 3)
    assert reg.origin("own") == "bmbench"
