"""The public names: the top level is what a training loop and a plugin author use, the plugin
machinery is in gradbalance.plugins. Growing either list is a deliberate edit here."""

import pytest

import gradbalance
import gradbalance.plugins

TOP_LEVEL = [
    # the buffer, the combiner contract and what a combiner declares
    "TaskGradients", "GradientCombiner", "GramianCombiner", "Combination", "Property",
    # the built-in combiners and regularizers
    "Sum", "Mean", "PCGrad", "GradVac", "IMTLG", "MGDA", "AlignedMTL", "UPGrad", "CAGrad", "NashMTL", "FairGrad",
    "SmoothnessRegularizer", "BregmanProximalPoint",
    # building by name, and the marker a plugin's hooks carry
    "available", "create", "options", "register", "hookimpl",
    # the errors a training loop catches
    "GradbalanceError", "NonFiniteGradientError", "UnknownCombinerError",
]  # fmt: skip

PLUGINS = [
    "Registry", "PluginKind", "PluginEntry", "default_registry", "plugin_entries",
    "load_entry_points", "ENTRY_POINT_GROUP", "hookspec",
    "UnknownPluginError", "PluginConflictError", "PluginLoadWarning",
]  # fmt: skip


def test_the_top_level_names_are_pinned():
    assert sorted(gradbalance.__all__) == sorted(TOP_LEVEL)
    assert all(hasattr(gradbalance, name) for name in TOP_LEVEL)


def test_the_plugin_machinery_names_are_pinned():
    assert sorted(gradbalance.plugins.__all__) == sorted(PLUGINS)
    assert all(hasattr(gradbalance.plugins, name) for name in PLUGINS)
    assert gradbalance.plugins.ENTRY_POINT_GROUP == "gradbalance"  # what third-party packages declare
    assert gradbalance.plugins.default_registry.available() == gradbalance.available()


@pytest.mark.parametrize("name", ["Registry", "PluginLoadWarning", "load_entry_points", "hookspecs"])
def test_a_name_that_moved_says_where_it_went(name):
    with pytest.raises(AttributeError, match=rf"^gradbalance\.{name} is now gradbalance\.plugins\.{name}$"):
        getattr(gradbalance, name)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        gradbalance.no_such_name  # noqa: B018
