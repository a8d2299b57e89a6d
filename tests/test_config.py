"""Params files and overrides: typed, checked, saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sleepdetect.config import Config, ConfigError, load_config, save_config, to_dict, valid_keys
from sleepdetect.core.paths import bundle_folders, resolve_path

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("params", sorted((REPO / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_params_file_changes_exactly_the_keys_it_writes(params):
    """Every key written in the file has the file's value; every other key keeps its dataclass
    default (demo.yaml is applied whole, and nothing it does not name changes)."""
    written = _leaves(yaml.safe_load(params.read_text()) or {})
    loaded = _leaves(to_dict(load_config(params)))
    defaults = _leaves(to_dict(Config()))
    assert set(written) <= set(defaults), f"{params.name} writes unknown keys"
    assert set(loaded) == set(defaults)
    for key, default in defaults.items():
        if key in written:
            expected = written[key]
            # `input:` and `shipped:` paths are looked up, ensemble folders listed as members
            if key in ("data.dir", "infer.bundles", "model.init_from", "ensemble.outside"):
                expected = (
                    [f for b in expected for f in bundle_folders(resolve_path(b))]
                    if isinstance(expected, list)
                    else resolve_path(expected)
                )
            assert loaded[key] == expected, f"{params.name}: {key}"
        else:
            assert loaded[key] == default, f"{params.name}: {key} is not written but changed"
    assert written, f"{params.name} writes nothing"


def test_demo_yaml_is_the_demo_not_the_defaults():
    cfg = load_config(REPO / "params" / "demo.yaml")
    assert cfg.exp_name == "demo" and cfg.model.name == "DayGRU"
    assert Config().model.name != cfg.model.name  # the defaults alone do not run the demo


def test_defaults_are_the_reference_spec2dcnn_setup():
    """What config.py's docstring says the dataclass defaults are, and that exp001.yaml, the
    reference setup written out, agrees with them on the model, features and post-processing."""
    cfg = Config()
    m = cfg.model
    assert (m.name, m.feature_extractor, m.decoder, m.encoder_name) == (
        "Spec2DCNN",
        "CNNSpectrogram",
        "UNet1DDecoder",
        "resnet34",
    )
    assert m.encoder_weights is None and m.downsample_rate == 2
    assert cfg.prepare.features == ["anglez", "enmo", "hour_sin", "hour_cos"]
    assert (cfg.windows.length, cfg.windows.sigma) == (5760, 10.0)
    p = cfg.postprocess
    assert (p.method, p.score_th, p.distance) == ("peaks", 0.005, 40)
    assert cfg.data.dir == "data/synthetic"
    exp001 = load_config(REPO / "params" / "exp001.yaml")
    for section in ("model", "prepare", "postprocess", "augment", "tune", "infer"):
        assert getattr(exp001, section) == getattr(cfg, section), section


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


def _leaves(d: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested config dict, dict-typed keys (model.params) as leaves."""
    leaves = set(valid_keys(Config))
    out = {}
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict) and key not in leaves:
            out.update(_leaves(v, f"{key}."))
        else:
            out[key] = v
    return out
