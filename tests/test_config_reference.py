"""The config schema documents every key, its documented defaults are the library's and the rules' own, and
config/README.md's table is generated from it (scripts/config_reference.py)."""

import ast
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts/config_reference.py")
config_reference = sys.modules["config_reference"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_reference)

SCHEMA = config_reference.load()
KEYS = {path: key for key in config_reference.keys(SCHEMA) for path in key.paths}
MISSING = config_reference.MISSING


def library(*candidates):
    """The first of `module:attribute` that imports (the library's modules are being moved into subpackages)."""
    for candidate in candidates:
        module, _, attribute = candidate.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
    pytest.fail(f"none of {', '.join(candidates)} imports")


def documented_default(path):
    return KEYS[path].node.get("x-default", MISSING)


def test_config_readme_is_up_to_date_with_the_schema():
    assert config_reference.is_up_to_date(), f"config/README.md is out of date: run {config_reference.FIX}"


def test_a_stale_readme_is_found(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(config_reference.README.read_text().replace("SGD iterations", "SGD steps"))
    assert not config_reference.is_up_to_date(stale)
    assert config_reference.main(["--check"]) == 0


def test_every_property_has_a_description():
    assert config_reference.undocumented(SCHEMA) == []


def test_a_missing_description_is_found_wherever_it_is():
    """Each property in turn loses its description: the check names exactly that one (definitions included)."""
    pointers = []

    def collect(node, pointer):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "properties":
                    pointers.extend(f"{pointer}/properties/{name}" for name in v)
                collect(v, f"{pointer}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                collect(v, f"{pointer}/{i}")

    collect(SCHEMA, "#")
    assert "#/definitions/train/properties/adapt/properties/ndf" in pointers and len(pointers) > 80
    for pointer in pointers:
        schema = copy.deepcopy(SCHEMA)
        node = schema
        for part in pointer.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node["description"]
        assert config_reference.undocumented(schema) == [pointer]


def test_train_defaults_are_the_library_s():
    """TrainConfig's defaults, and its fields without one are the schema's required training keys."""
    train_config = library(
        "esl.train:TrainConfig", "esl.stages.training:TrainConfig", "esl.stages.train_loop:TrainConfig"
    )
    checked = 0
    for f in dataclasses.fields(train_config):
        paths = [p for p in (f"pretrain.{f.name}", f"selftrain.{f.name}") if p in KEYS]
        for path in paths:
            if f.default is dataclasses.MISSING:
                assert KEYS[path].required and documented_default(path) is MISSING, path
            else:
                assert documented_default(path) == f.default, (path, documented_default(path), f.default)
            checked += 1
    assert checked >= 15
    save_every = library("esl.stages.train_job:DEFAULT_SAVE_EVERY")
    assert documented_default("pretrain.save_every") == documented_default("selftrain.save_every") == save_every


def test_adaptation_defaults_are_the_library_s():
    defaults = library("esl.adapt:DEFAULTS", "esl.models.adapters:DEFAULTS")
    for name in ("lambda_main", "lambda_aux", "lr_d", "ndf"):
        assert documented_default(f"pretrain.adapt.{name}") == defaults[name], name


def test_pseudo_label_defaults_are_the_library_s():
    methods = library("esl.pseudo_labels:METHODS", "esl.ops.thresholds:METHODS")
    assert set(KEYS["pseudo_labels.methods"].node["items"]["enum"]) == set(methods)
    checked = 0
    for name, method in methods.items():
        section = KEYS.get(f"pseudo_labels.{name}")
        for key, value in method.defaults.items():
            if f"pseudo_labels.{name}.{key}" in KEYS:
                assert documented_default(f"pseudo_labels.{name}.{key}") == value, (name, key)
                checked += 1
        for key, value in (section.node.get("default", {}) if section else {}).items():
            assert value == method.defaults[key], (name, key)  # the section Snakemake fills in
    assert checked == 3  # esl.floor, mpsl.cap, cbst.p


def test_the_selection_default_is_the_library_s():
    choose = library("esl.snapshots:choose", "esl.stages.snapshots:choose")
    assert documented_default("evaluate.selection") == inspect.signature(choose).parameters["selection"].default


def test_the_rules_fallbacks_are_the_documented_defaults():
    """`config["section"].get("key", value)` in the Snakefile and the rules falls back to the schema's x-default."""
    pattern = re.compile(r'config\["(\w+)"\]\.get\(\s*"(\w+)"\s*,\s*([^()]+?)\s*\)')
    found = []
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]:
        for section, key, value in pattern.findall(path.read_text()):
            found.append((f"{section}.{key}", ast.literal_eval(value), path.name))
    assert len(found) >= 5
    for key, value, where in found:
        assert key in KEYS, (key, where)
        assert documented_default(key) == value, (key, where, documented_default(key), value)


def test_used_by_names_rules_of_the_workflow():
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")])
    rules = set(re.findall(r"^\s*rule (\w+):", text, re.M))
    for path, key in KEYS.items():
        assert key.used_by, path
        for name in key.used_by:
            assert name in config_reference.GROUPS or name in rules, (path, name)


@pytest.mark.parametrize("overlay", [None, "gta5_to_cityscapes.yaml", "synthia_to_cityscapes.yaml"])
def test_schema_defaults_add_nothing_to_a_shipped_config(overlay):
    """Snakemake's validate writes every JSON Schema `default` into the config, and the rules' params are sections of
    it: a `default` the shipped configs do not already hold would change those params and re-run finished stages.
    Hence documented defaults are `x-default`; and no required key has a `default` (it would become optional)."""
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    if overlay:  # as Snakemake does: the Snakefile's configfile, extended by --configfile
        update_config(config, yaml.safe_load((REPO / "config" / overlay).read_text()))
    before = copy.deepcopy(config)
    validate(config, str(config_reference.SCHEMA))
    assert config == before
    assert not [p for p, key in KEYS.items() if key.required and "default" in key.node]
