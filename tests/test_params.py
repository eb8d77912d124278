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


@pytest.mark.parametrize("text, expected", [("3e-05", 3e-05), ("1e-4", 1e-4), (".5", 0.5), ("5.0e-05", 5e-05)])
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
        ("labels", ["ham", "spam", "spam "], "distinct label names"),  # one name once trimmed
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


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("lerning_rate", "lr"),  # a typo of the Trainer's name
        ("learning_rate", "lr"),
        ("num_train_epochs", "epochs"),
        ("per_device_train_batch_size", "batch_size"),
        ("gradient_accumulation_steps", "grad_accum"),
        ("max_seq_length", "max_length"),
        ("label_smoothing_factor", "label_smoothing"),
        ("seeed", "seed"),
    ],
)
def test_familiar_names_get_a_did_you_mean(key, suggestion):
    with pytest.raises(ParamsError, match=rf"unknown key '{key}'. Did you mean '{suggestion}'"):
        parse_params(defaults() | {key: 1})


@pytest.mark.parametrize(
    "key, value, suggestion",
    [
        ("lr_scheduler", "cosin", "cosine"),
        ("precision", "bf61", "bf16"),
        ("engine", "acelerate", "accelerate"),
    ],
)
def test_mistyped_choices_get_a_did_you_mean(key, value, suggestion):
    with pytest.raises(ParamsError, match=rf"is not one of .*Did you mean '{suggestion}'"):
        parse_params(defaults() | {key: value})


def committed_repo(tmp_path, **changes):
    import subprocess

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    for cmd in (
        ["init", "-q"],
        ["add", "params.yaml"],
        ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(defaults() | changes))
    return tmp_path / "params.yaml"


def test_a_refused_value_says_params_yaml_holds_it_and_how_to_set_it_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = committed_repo(tmp_path, lr="abc")
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert "params.yaml now holds 'lr: abc': set it back with the next run (dvc exp run -S 'lr=0.0001')" in str(e.value)
    assert "git show HEAD:params.yaml > params.yaml" in str(e.value)


def test_an_unknown_key_says_to_delete_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = committed_repo(tmp_path, lerning_rate=1e-4)
    with pytest.raises(ParamsError) as e:
        load_params(path)
    assert "Did you mean 'lr'? params.yaml now holds 'lerning_rate: 0.0001' (DVC wrote it there): delete" in str(
        e.value
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        # peft reads the empty list of layers above freeze_layers as every layer: LoRA on the frozen ones
        ({"freeze_layers": 2}, "freeze_layers: 2 freezes all 2 layers of the model, so peft: lora has no layer left"),
        # peft adapted `query` and dropped the misspelt name without a word
        ({"lora_targets": ["query", "vlaue"]}, "lora_targets: 'vlaue' names no module of model"),
        ({"lora_targets": ["qkv", "v"]}, "lora_targets: 'qkv', 'v' name no module of model"),
    ],
)
def test_lora_settings_that_adapt_something_else_are_refused_before_work(tiny_model, settings, message):
    from textclf.errors import InputError
    from textclf.preflight import check_model

    p = parse_params(defaults() | {"model": str(tiny_model), "peft": "lora", "freeze_layers": 1} | settings)
    with pytest.raises(InputError, match=message) as refused:
        check_model(p)
    if "lora_targets" in settings:  # the names it could take
        assert "its layers' matrices are dense, key, query, value." in str(refused.value)
    check_model(parse_params(defaults() | {"model": str(tiny_model), "peft": "lora", "freeze_layers": 1}))
    check_model(parse_params(defaults() | {"model": str(tiny_model), "freeze_layers": 2}))  # without peft: head only


def test_mean_pooling_on_an_encoder_it_has_no_head_for_is_refused_before_work(tmp_path):
    """A local decoder checkpoint with the default pooling: mean was refused only when the train stage
    loaded it, after download and tokenize; now the first stage refuses it, naming the way out."""
    from textclf.errors import InputError
    from textclf.preflight import check_model

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2}')
    with pytest.raises(InputError, match="pooling: mean is built for these encoders: bert, .*'gpt2'. Set pooling: cls"):
        check_model(parse_params(defaults() | {"model": str(folder), "pooling": "mean"}))
    check_model(parse_params(defaults() | {"model": str(folder), "pooling": "cls"}))
    (folder / "config.json").write_text('{"model_type": "mpnet", "num_hidden_layers": 2}')
    check_model(parse_params(defaults() | {"model": str(folder), "pooling": "mean"}))


def test_lora_targets_are_checked_on_a_hub_model_too_and_a_pointer_file_is_no_crash(tiny_model, tmp_path):
    """preflight reads a local checkpoint's safetensors header; a Hub model is checked once loaded. A Git
    LFS pointer where the weights should be (a clone without git-lfs) is left to the later stages."""
    import shutil

    from textclf.errors import InputError
    from textclf.model import load_model
    from textclf.preflight import check_model, weight_shapes

    pytest.importorskip("peft", reason="the lora extra is not installed (pip install -e '.[lora]')")
    p = parse_params(defaults() | {"peft": "lora", "freeze_layers": 1, "lora_targets": ["query", "vlaue"]})
    with pytest.raises(InputError, match="lora_targets: 'vlaue' names no module of model .* key, query, value"):
        load_model(p, ["no", "yes"], pretrained=tiny_model)
    pointer = shutil.copytree(tiny_model, tmp_path / "pointer")
    (pointer / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    assert weight_shapes(pointer) == {}
    check_model(parse_params(defaults() | {"model": str(pointer), "peft": "lora", "freeze_layers": 1}))
