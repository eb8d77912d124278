import pytest
import yaml

from tests.conftest import ROOT
from textclf.params import ParamsError, load_params, parse_params


def defaults() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_defaults_load_with_types():
    p = load_params(ROOT / "params.yaml")
    assert isinstance(p.lr, float) and isinstance(p.epochs, int)
    assert p.max_train_samples is None


@pytest.mark.parametrize(
    "text, expected", [("3e-05", 3e-05), ("1e-4", 1e-4), (".5", 0.5), ("5.0e-05", 5e-05)]
)
def test_dvc_yaml_number_forms_become_floats(text, expected):
    # DVC's `-S lr=3e-5` writes `lr: 3e-05`, which PyYAML reads as the string '3e-05'.
    raw = defaults() | yaml.safe_load(f"lr: {text}")
    assert parse_params(raw).lr == pytest.approx(expected)


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ParamsError, match=r"unknown key 'lerning_rate'"):
        parse_params(defaults() | {"lerning_rate": 1e-4})
    with pytest.raises(ParamsError, match=r"Did you mean 'batch_size'"):
        parse_params(defaults() | {"batch_sise": 8})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("epochs", "three", "not a number"),
        ("epochs", 2.5, "whole number"),
        ("lr", -1, "out of range"),
        ("batch_size", 0, "out of range"),
        ("max_length", 100000, "out of range"),
        ("lr_scheduler", "cosinus", "one of linear"),
        ("precision", "fp8", "one of auto"),
        ("epochs", True, "boolean"),
        ("lr", None, "empty"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ParamsError, match=message) as err:
        parse_params(defaults() | {key: value})
    assert key in str(err.value)


def test_missing_key_is_named():
    raw = defaults()
    del raw["seed"]
    with pytest.raises(ParamsError, match="missing key.*seed"):
        parse_params(raw)


def test_optional_sample_limits_accept_null_and_ints():
    p = parse_params(defaults() | {"max_train_samples": "100", "max_eval_samples": None})
    assert p.max_train_samples == 100 and p.max_eval_samples is None


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("True", True)])
def test_booleans(value, expected):
    assert parse_params(defaults() | {"group_by_length": value}).group_by_length is expected


def test_bad_boolean():
    with pytest.raises(ParamsError, match="group_by_length.*true or false"):
        parse_params(defaults() | {"group_by_length": "maybe"})


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_range(seed):
    with pytest.raises(ParamsError, match="seed"):
        parse_params(defaults() | {"seed": seed})
