"""The plugin manager: built-ins first, entry points, duplicate and unknown names."""

import types

import pytest

import etalumis_core as et
from etalumis_core.plugins import load_plugins, make_plugin_manager


def plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, et.hookimpl(fn))
    return module


def test_builtins_register_through_the_hooks():
    plugins = load_plugins(load_entry_points=False)
    assert {"importance", "lmh", "rmh"} <= set(plugins.engines.names())
    assert {"serial", "process"} <= set(plugins.executors.names())
    assert plugins.simulators.get("gaussian").plugin == "etalumis_core"
    described = plugins.describe()
    assert "gaussian" in described["etalumis_core"]["simulators"]
    assert described["etalumis_core"]["distribution"] == "etalumis-core"


def test_each_manager_is_fresh():
    assert make_plugin_manager(False) is not make_plugin_manager(False)
    extra = plugin(etalumis_register_simulators=lambda register: register("mine", object))
    assert "mine" in load_plugins(False, [("extra", extra)]).simulators.names()
    assert "mine" not in load_plugins(False).simulators.names()


def test_duplicate_names_name_both_plugins():
    clash = plugin(etalumis_register_engines=lambda register: register("rmh", object))
    with pytest.raises(et.PluginError, match=r"'rmh' is registered twice.*'etalumis_core'.*'clash'"):
        load_plugins(False, [("clash", clash)])


def test_hook_matching_no_spec_is_an_error():
    typo = plugin(etalumis_register_simulator=lambda register: None)
    with pytest.raises(et.PluginError, match="etalumis_register_simulator"):
        make_plugin_manager(False, [("typo", typo)])


def test_unknown_names_list_installed_options_and_missing_plugins():
    plugins = load_plugins(False)
    with pytest.raises(et.PluginError, match=r"unknown simulator 'gausian'.*gaussian \(from etalumis_core\)"):
        plugins.simulators.get("gausian")
    with pytest.raises(et.PluginError, match=r"pip install \./plugins/composite_cure"):
        plugins.simulators.get("composite_cure")


def test_entry_point_plugins_are_loaded():
    plugins = load_plugins()
    names = plugins.simulators.names()
    described = plugins.describe()
    for name, entry in plugins.simulators.entries.items():
        assert name in described[entry.plugin]["simulators"]
    assert "gaussian" in names


def test_a_plugin_that_fails_to_import_is_reported_not_fatal(monkeypatch, caplog):
    import importlib.metadata as md

    broken = md.EntryPoint("broken", "no_such_module_xyz.plugin", "etalumis")
    real = md.entry_points
    monkeypatch.setattr(md, "entry_points",
                        lambda group=None: [*real(group=group), broken])
    plugins = load_plugins()
    assert "gaussian" in plugins.simulators.names()
    assert "no_such_module_xyz" in plugins.describe()["broken"]["error"]
    assert "failed to import" in caplog.text
    with pytest.raises(et.PluginError, match=r"Plugin 'broken' failed to import"):
        plugins.simulators.get("nonexistent")
