"""Params files and overrides: typed, checked, saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sleepdetect.config import Config, ConfigError, load_config, save_config, valid_keys

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_demo():
    cfg = load_config(REPO / "params" / "demo.yaml")
    assert cfg.exp_name == "demo" and cfg.data.dir == "data/synthetic"


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None,
        [
            "data.dir=/x",
            "data.synthetic.series=3",
            "data.synthetic.days=2",
            "prepare.features=[anglez, enmo]",
        ],
    )
    assert cfg.data.dir == "/x" and cfg.data.synthetic.series == 3
    assert cfg.data.synthetic.days == 2.0 and isinstance(cfg.data.synthetic.days, float)
    assert cfg.prepare.features == ["anglez", "enmo"]


def test_override_beats_file_and_sections(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("exp_name: a\ndata: {dir: from_file, synthetic: {series: 5}}\n")
    cfg = load_config(p, ["exp_name=c"], sections={"data": {"dir": "from_sections"}})
    assert cfg.exp_name == "c" and cfg.data.dir == "from_sections"
    assert cfg.data.synthetic.series == 5  # a section replaces only the keys it names


def test_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("data: {dirr: x}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'data.dirr' at data; valid keys: dir, synthetic"
    ):
        load_config(p)
    with pytest.raises(ConfigError, match=r"unknown key 'modle'.*valid keys: exp_name, seed, data"):
        load_config(None, ["modle.name=x"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.synthetic.series=abc", "data.synthetic.series must be int, got str 'abc'"),
        ("data.synthetic.series=true", "must be int, got True"),
        ("prepare.phase=valid", r"prepare.phase must be one of \['train', 'test'\]"),
        ("prepare.features=anglez", "prepare.features must be a list"),
        ("data=3", "data must be a mapping"),
        ("nokey", "not of the form key.sub=value"),
    ],
)
def test_wrong_types_fail_clearly(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_params_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(bad)


def test_saved_config_loads_back_identical(tmp_path):
    cfg = load_config(None, ["exp_name=x", "data.synthetic.seed=7"])
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg
    assert set(_flatten(yaml.safe_load(path.read_text()))) == set(valid_keys(Config))


@pytest.mark.parametrize("params", sorted((REPO / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_params_file_loads_and_builds_its_model(params):
    from sleepdetect.models import build_model

    cfg = load_config(params)
    model = build_model(cfg.model, in_channels=len(cfg.prepare.features))
    assert sum(p.numel() for p in model.parameters()) > 0


def _flatten(d: dict, prefix: str = "") -> list[str]:
    leaves = set(valid_keys(Config))  # a dict-typed key (model.params) is a leaf, not a section
    out = []
    for k, v in d.items():
        key = prefix + k
        out += _flatten(v, f"{key}.") if isinstance(v, dict) and key not in leaves else [key]
    return out
