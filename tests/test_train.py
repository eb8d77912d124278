"""The train stage's capabilities, both engines: same contract, resume after a kill or Ctrl-C,
early stopping, gradient accumulation, multi-process evaluation, reproducibility."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import copy_work, read, set_params, stage_run, tool_env
from tests.test_params import defaults
from textclf.engines.base import is_better
from textclf.engines.loop import warmup_steps
from textclf.errors import InputError
from textclf.model import param_groups
from textclf.params import parse_params
from textclf.precision import choose_precision

ENGINES = ["trainer", "accelerate"]


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_share_one_contract(prepared, tmp_path, engine):
    work = copy_work(prepared, tmp_path / engine)
    stage_run(work, "train", engine=engine)
    assert read(work, "metrics/curves/train.tsv")[0] == "step\tepoch\ttrain_loss\tlr"
    assert (
        read(work, "metrics/curves/eval.tsv")[0]
        == "step\tepoch\tval_loss\tval_accuracy\tval_f1\ttrain_sample_loss\ttrain_sample_accuracy"
    )
    # eval_steps 0.1 (the default): every 4 of the 40 steps
    assert [r.split("\t")[0] for r in read(work, "metrics/curves/eval.tsv")[1:]] == [str(4 * i) for i in range(1, 11)]
    progress = read(work, "metrics/progress.json")
    assert progress["done"] is True and progress["step"] == 40 and progress["of_steps"] == 40
    train = read(work, "metrics/train.json")
    assert train["engine"] == engine and train["steps"] == 2 * 20  # 160 pairs / batch 8, 2 epochs
    expected_keys = {"train_loss", "train_runtime_s", "evaluation_s", "train_samples_per_s", "steps", "epochs_run"}
    more = {"best_epoch", "stopped_early", "engine", "precision", "resumed_from", "started_at", "finished_at"}
    assert expected_keys | more | {"frozen_layers_cached"} == set(train)
    assert train["frozen_layers_cached"] == 1  # the tiny model's one frozen layer, run once per row
    assert 0 < train["evaluation_s"] < train["train_runtime_s"]  # 10 evaluations, each of both sets, timed
    files = sorted(p.name for p in (work / "data/trained").iterdir())
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]
    assert not (work / "data/checkpoints").exists()  # cleaned up once the run is complete
    stage_run(work, "evaluate")
    assert {"accuracy", "f1", "loss", "precision", "recall"} == set(read(work, "metrics/eval.json"))


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_metrics(prepared, tmp_path, engine):
    runs = []
    for i in range(2):
        work = copy_work(prepared, tmp_path / f"run{i}")
        stage_run(work, "train", engine=engine)
        runs.append((read(work, "metrics/curves/eval.tsv"), read(work, "metrics/curves/train.tsv")))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("grad_accum", [1, 3])
def test_both_engines_train_on_the_same_batches_every_epoch(prepared, tmp_path, grad_accum):
    # The same seed gives both engines the same batch order in each epoch, a new one per epoch: their
    # curves agree to float noise. (The loop once replayed epoch 0's order in every epoch; with grad_accum
    # it grouped rows by length per batch, the Trainer per optimizer step, and counted epochs in steps.)
    # logging_steps 3 in a 40-step run: the last, shorter window (steps 40) is logged too, by both.
    curves = {}
    for engine in ENGINES:
        work = copy_work(prepared, tmp_path / engine)
        stage_run(work, "train", engine=engine, eval_steps=5, logging_steps=3, grad_accum=grad_accum)
        curves[engine] = [[float(x) for x in r.split("\t")] for r in read(work, "metrics/curves/train.tsv")[1:]]
        assert read(work, "metrics/train.json")["train_loss"] == curves[engine][-1][2]
    steps = [*range(3, 40, 3), 40] if grad_accum == 1 else [*range(3, 14, 3), 14]  # 14: ceil(20 / 3) = 7 per epoch
    assert [r[0] for r in curves["trainer"]] == [r[0] for r in curves["accelerate"]] == steps
    for a, b in zip(curves["trainer"], curves["accelerate"], strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)  # step, epoch, train loss, lr


@pytest.mark.parametrize("engine", ENGINES)
def test_early_stopping_keeps_the_best_epoch(prepared, tmp_path, engine):
    # lr so small that accuracy cannot move: no epoch after the first improves on it.
    work = copy_work(prepared, tmp_path / engine)
    out = stage_run(
        work,
        "train",
        engine=engine,
        epochs=5,
        lr=1e-9,
        early_stopping_patience=1,
        metric_for_best_model="accuracy",
        eval_steps=0,  # once per epoch
    )
    train = read(work, "metrics/train.json")
    assert train["stopped_early"] is True and train["epochs_run"] == 2.0 and train["best_epoch"] == 1.0
    said = out.stdout + out.stderr
    assert "early stopping is disabled" not in said  # the stock callback's line at the train sample's evaluation
    assert "early stopping: no better validation accuracy in 1 evaluation(s); the best one is the model" in said
    assert len(read(work, "metrics/curves/eval.tsv")) == 1 + 2


@pytest.mark.parametrize("engine", ENGINES)
def test_early_stopping_on_step_evaluations_keeps_the_best(prepared, tmp_path, engine):
    work = copy_work(prepared, tmp_path / engine)
    params = {"epochs": 3, "lr": 1e-9, "early_stopping_patience": 2, "metric_for_best_model": "accuracy"}
    stage_run(work, "train", engine=engine, eval_steps=5, **params)
    train = read(work, "metrics/train.json")
    # The first evaluation (step 5) is the best; two more without gain stop the run at step 15 of 60.
    assert train["stopped_early"] is True and train["best_epoch"] == 0.25 and train["steps"] == 15
    assert [r.split("\t")[0] for r in read(work, "metrics/curves/eval.tsv")[1:]] == ["5", "10", "15"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tie_on_the_metric_keeps_the_evaluation_with_the_lower_loss(prepared, tmp_path, engine):
    # Two validation rows: accuracy can only be 0, 0.5 or 1, so evaluations tie while the loss moves.
    work = copy_work(prepared, tmp_path / engine)
    params = {"max_eval_samples": 2, "lr": 1e-3, "eval_steps": 5, "metric_for_best_model": "accuracy"}
    stage_run(work, "tokenize", **params)
    stage_run(work, "train", engine=engine, **params)
    rows = [r.split("\t") for r in read(work, "metrics/curves/eval.tsv")[1:]]  # step epoch loss accuracy ...
    top = [r for r in rows if float(r[3]) == max(float(r[3]) for r in rows)]
    kept = min(top, key=lambda r: float(r[2]))
    assert len(top) > 1 and kept is not top[0], "the tiny run no longer ties at a falling loss: change its lr"
    assert read(work, "metrics/train.json")["best_epoch"] == float(kept[1])
    stage_run(work, "evaluate")
    assert read(work, "metrics/eval.json")["loss"] == pytest.approx(float(kept[2]), abs=1e-5)  # that model


def test_a_resumed_run_says_best_so_far_only_above_the_evaluations_before_it(capsys, tmp_path, monkeypatch):
    """After a resume the console called every evaluation "best so far", the ones before the
    interruption forgotten (the kept model was right: only the line misled)."""
    from types import SimpleNamespace

    from textclf.engines.trainer import ReportProgress

    report = ReportProgress(parse_params(defaults()))
    before = [
        {"eval_validation_f1": 0.82, "eval_validation_loss": 0.6, "step": 2, "epoch": 0.1},
        {"loss": 0.5, "step": 3, "epoch": 0.15},
    ]
    state = SimpleNamespace(max_steps=20, global_step=4, is_world_process_zero=True, log_history=before, epoch=0.2)
    monkeypatch.chdir(tmp_path)  # each evaluation rewrites metrics/progress.json
    report.on_train_begin(None, state, None)
    for f1 in (0.81, 0.83):
        report.on_evaluate(None, state, None, metrics={"eval_validation_f1": f1, "eval_validation_loss": 0.5})
    lines = [line for line in capsys.readouterr().out.splitlines() if "validation" in line]
    assert "f1 0.810" in lines[0] and "best so far" not in lines[0]
    assert "f1 0.830 (best so far)" in lines[1]


def test_is_better_breaks_a_tie_by_the_lower_loss():
    assert is_better(0.8, None, True) and is_better(0.9, 0.8, True, 0.5, 0.1)  # a better metric, whatever the loss
    assert not is_better(0.7, 0.8, True, 0.1, 0.5)
    assert is_better(0.8, 0.8, True, 0.4, 0.5) and not is_better(0.8, 0.8, True, 0.5, 0.5)
    assert not is_better(0.8, 0.8, True, 0.6, 0.5) and not is_better(0.8, 0.8, True)  # no losses: no tie-break
    assert is_better(0.4, 0.5, False, 0.4, 0.5) and not is_better(0.5, 0.5, False, 0.5, 0.5)  # by loss itself


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("eval_steps, steps", [(15, ["15", "30", "40"]), (0, ["20", "40"])])
def test_eval_steps_sets_the_evaluation_points(prepared, tmp_path, engine, eval_steps, steps):
    work = copy_work(prepared, tmp_path / engine)
    stage_run(work, "train", engine=engine, eval_steps=eval_steps, train_eval_rows=32)
    rows = [r.split("\t") for r in read(work, "metrics/curves/eval.tsv")[1:]]
    assert [r[0] for r in rows] == steps  # the end of the run is always evaluated
    assert all(0 <= float(r[-1]) <= 1 and float(r[-2]) > 0 for r in rows)  # train-sample accuracy and loss


@pytest.mark.parametrize("engine", ENGINES)
def test_gradient_accumulation_counts_optimizer_steps(prepared, tmp_path, engine):
    work = copy_work(prepared, tmp_path / engine)
    stage_run(work, "train", engine=engine, grad_accum=4, epochs=1, logging_steps=1)
    assert read(work, "metrics/train.json")["steps"] == 5  # 20 batches / 4


def wait_for(root: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(pattern)):
        assert proc.poll() is None, "train ended before a checkpoint appeared"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("engine, how", [("trainer", "kill"), ("accelerate", "kill"), ("trainer", "ctrl-c")])
def test_interrupted_run_resumes(prepared, tmp_path, engine, how):
    work = copy_work(prepared, tmp_path / engine)
    set_params(work, engine=engine, epochs=6)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.train"],
        cwd=work,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    marker = "trainer_state.json" if engine == "trainer" else "loop_state.json"
    wait_for(work, f"data/checkpoints/*-[0-9]*/{marker}", proc)
    proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode != 0, output[-2000:]
    assert not (work / "data/trained").exists()  # no half-written model for DVC to cache
    if how == "ctrl-c":
        assert "saving a checkpoint" in output and "again to resume" in output

    out = stage_run(work, "train")
    assert "train: resuming from" in out.stdout
    assert "do not match" not in out.stdout + out.stderr  # the Trainer's eval_steps 0.1 != 12 false alarm
    for curve in ("train.tsv", "eval.tsv"):  # no row lost or repeated
        steps = [int(r.split("\t")[0]) for r in read(work, f"metrics/curves/{curve}")[1:]]
        assert steps == sorted(set(steps)) and steps[-1] == 120, (curve, steps)
    every = [int(r.split("\t")[0]) for r in read(work, "metrics/curves/eval.tsv")[1:]]
    assert every == list(range(12, 121, 12))
    assert read(work, "metrics/train.json")["resumed_from"]


def test_changed_params_do_not_resume_a_stale_checkpoint(prepared, tmp_path):
    work = copy_work(prepared, tmp_path / "w")
    stale = work / "data/checkpoints/checkpoint-5"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    (work / "data/checkpoints/run.json").write_text(json.dumps({"fingerprint": "another run"}))
    out = stage_run(work, "train", epochs=1)
    assert "resuming" not in out.stdout
    assert "checkpoint-5 is of a run with other train params, data or starting model: starting afresh" in out.stdout


def test_every_train_param_decides_whether_a_checkpoint_resumes():
    """A train param missing from the fingerprint let a run resume a checkpoint made under another value
    of it (label_smoothing did): each is either fingerprinted or listed with why it may differ."""
    import yaml

    from textclf.checkpoints import NOT_TRAIN_KEYS, TRAIN_KEYS

    stage = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"]["train"]
    params = {p for p in stage["params"] if isinstance(p, str)}
    assert params == set(TRAIN_KEYS) | set(NOT_TRAIN_KEYS) and not set(TRAIN_KEYS) & set(NOT_TRAIN_KEYS)


def test_two_process_evaluation_equals_one_process(prepared, tmp_path):
    work = copy_work(prepared, tmp_path / "w")
    out = stage_run(work, "train", launcher="torchrun --nproc_per_node 2", epochs=1)
    # One main process that knows of two: on a CPU, Accelerate needs cpu=True to see a torchrun launch.
    assert out.stdout.count("train: engine") == 1 and "2 process(es)" in out.stdout, out.stdout
    # A mean loss near ln 2 at the start; transformers 5 doubled it under DDP before the fix in load_model.
    assert float(read(work, "metrics/curves/train.tsv")[1].split("\t")[2]) < 0.8
    stage_run(work, "evaluate", launcher="python")
    single = read(work, "metrics/eval.json")
    single_predictions = read(work, "metrics/test_predictions.tsv")
    # accelerate's multi-GPU launcher runs its processes on the CPU (gloo) where there is no GPU; the main
    # one alone reports (both did, their lines run together).
    out = stage_run(work, "evaluate", launcher="accelerate launch --multi_gpu --num_processes 2")
    assert out.stdout.count("evaluate: predictions took") == 1 and "s, 2 process(es)" in out.stdout, out.stdout
    assert read(work, "metrics/eval.json") == pytest.approx(single)
    assert read(work, "metrics/test_predictions.tsv") == single_predictions  # 9 rows, none doubled
    assert len(read(work, "metrics/confusion.csv")) == 1 + 41


def test_fp16_on_cpu_is_refused_and_auto_picks_bf16():
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        choose_precision("fp16", cuda=False, bf16_ok=True)
    assert choose_precision("auto", cuda=False, bf16_ok=True) == "bf16"
    assert choose_precision("auto", cuda=False, bf16_ok=False) == "fp32"
    assert choose_precision("auto", cuda=True, bf16_ok=False) == "fp16"


def test_no_weight_decay_on_biases_and_layernorm():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2))
    decay, no_decay = param_groups(model, parse_params(defaults() | {"weight_decay": 0.01}))
    names = {id(w): n for n, w in model.named_parameters()}
    assert all("bias" in names[id(w)] or "LayerNorm" in names[id(w)] for w in no_decay["params"])
    assert not any("bias" in names[id(w)] or "LayerNorm" in names[id(w)] for w in decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_head_lr_scale_and_layer_lr_decay_set_each_groups_lr():
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2))
    p = parse_params(defaults() | {"lr": 1e-4, "head_lr_scale": 10, "layer_lr_decay": 0.5, "freeze_layers": 0})
    groups = param_groups(model, p)
    lr_of = {id(w): g["lr"] for g in groups for w in g["params"]}
    named = dict(model.named_parameters())
    expected = {
        "classifier.weight": 1e-3,
        "bert.pooler.dense.weight": 1e-3,  # the pooler sits under the new head
        "bert.encoder.layer.2.output.dense.weight": 1e-4,  # the top layer trains at lr
        "bert.encoder.layer.1.output.dense.weight": 5e-5,
        "bert.encoder.layer.0.output.dense.weight": 2.5e-5,
        "bert.embeddings.word_embeddings.weight": 1.25e-5,
    }
    for name, lr in expected.items():
        assert lr_of[id(named[name])] == pytest.approx(lr), name
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_warmup_ratio_or_steps():
    assert warmup_steps(0.1, 100) == 10 and warmup_steps(7, 100) == 7 and warmup_steps(0, 100) == 0


def test_trainer_arguments_follow_the_params():
    from tests.test_params import defaults
    from textclf.engines.trainer import training_args
    from textclf.params import parse_params

    p = parse_params(defaults() | {"max_grad_norm": 0.5, "warmup": 7, "lr_scheduler": "cosine", "grad_accum": 3})
    args = training_args(p, "bf16", Path("unused"))
    assert (args.max_grad_norm, args.warmup_steps, args.gradient_accumulation_steps) == (0.5, 7, 3)
    assert args.lr_scheduler_type == "cosine" and args.bf16 and not args.fp16
    assert args.load_best_model_at_end and args.metric_for_best_model == "validation_f1" and args.greater_is_better
    assert args.eval_strategy == args.save_strategy == "steps" and args.eval_steps == args.save_steps == 0.1
    assert args.train_sampling_strategy == "group_by_length"


class NoInterrupt:
    requested = False

    def everywhere(self) -> bool:
        return False


def run_loop_in_process(work: Path, monkeypatch, **params):
    """The Accelerate loop called directly, so a test can spy on what it does."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    from textclf.engines.base import Job
    from textclf.engines.loop import train_with_accelerate
    from textclf.model import load_model
    from textclf.params import load_params

    set_params(work, **params)
    monkeypatch.chdir(work)
    p = load_params()
    data = load_from_disk("data/tokenized")
    model = load_model(p, data["train"].features["label"].names)
    tokenizer = AutoTokenizer.from_pretrained("data/pretrained")
    job = Job(p, "fp32", data, tokenizer, model, work / "data/checkpoints", None, NoInterrupt())
    return train_with_accelerate(job)


@pytest.mark.parametrize("max_grad_norm, calls", [(0.25, 20), (0.0, 0)])
def test_loop_clips_gradients_once_per_optimizer_step(prepared, tmp_path, monkeypatch, max_grad_norm, calls):
    from accelerate import Accelerator

    seen = []
    real = Accelerator.clip_grad_norm_
    monkeypatch.setattr(
        Accelerator,
        "clip_grad_norm_",
        lambda self, ps, max_norm, **kw: seen.append(max_norm) or real(self, ps, max_norm),
    )
    work = copy_work(prepared, tmp_path / "w")
    run_loop_in_process(work, monkeypatch, epochs=1, max_grad_norm=max_grad_norm, grad_accum=1)
    assert seen == [max_grad_norm] * calls  # 160 pairs / batch 8 = 20 optimizer steps


@pytest.mark.parametrize("scheduler", ["constant", "linear", "cosine"])
def test_loop_follows_the_lr_schedule(prepared, tmp_path, monkeypatch, scheduler):
    work = copy_work(prepared, tmp_path / "w")
    out = run_loop_in_process(work, monkeypatch, epochs=1, lr_scheduler=scheduler, warmup=0, logging_steps=1, lr=1e-3)
    lrs = [r["learning_rate"] for r in out.log_history if "learning_rate" in r]
    assert len(lrs) == 20
    if scheduler == "constant":
        assert lrs == pytest.approx([1e-3] * 20)
    else:
        assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] == pytest.approx(0, abs=1e-4)


def test_freeze_bottom_layers():
    from transformers import BertConfig, BertForSequenceClassification

    from textclf.model import freeze_bottom_layers

    config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    model = BertForSequenceClassification(config)
    freeze_bottom_layers(model, 1, freeze_embeddings=True)
    trainable = {n for n, w in model.named_parameters() if w.requires_grad}
    assert not [n for n in trainable if n.startswith(("bert.embeddings", "bert.encoder.layer.0."))]
    assert any(n.startswith("bert.encoder.layer.1.") for n in trainable) and "classifier.weight" in trainable
    with pytest.raises(InputError, match="exceeds the model's 2 layers"):
        freeze_bottom_layers(model, 3, freeze_embeddings=False)


def test_dropout_param_sets_every_rate_of_the_architecture():
    from transformers import BertConfig, DistilBertConfig

    from textclf.model import dropout_overrides

    assert dropout_overrides(BertConfig(), None) == {}  # null: the checkpoint's own rates
    assert dropout_overrides(BertConfig(), 0.0) == {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    assert dropout_overrides(DistilBertConfig(), 0.2) == {
        "dropout": 0.2,
        "attention_dropout": 0.2,
        "seq_classif_dropout": 0.2,
        "qa_dropout": 0.2,
    }


def test_dropout_reaches_the_model(prepared, tmp_path, monkeypatch):
    from textclf.model import load_model
    from textclf.params import load_params

    work = copy_work(prepared, tmp_path / "w")
    set_params(work, dropout=0.0)
    monkeypatch.chdir(work)
    model = load_model(load_params(), ["not_equivalent", "equivalent"])
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(rates) == 1 + 2 * 3 + 1 and set(rates) == {0.0}  # embeddings, 3 per layer, classifier


@pytest.mark.parametrize("engine", ENGINES)
def test_ema_evaluates_and_keeps_the_averaged_weights(prepared, tmp_path, engine):
    runs = {}
    for ema in (0, 0.9):
        work = copy_work(prepared, tmp_path / f"{engine}-{ema}")
        stage_run(work, "train", engine=engine, ema=ema, eval_steps=0)
        stage_run(work, "evaluate")
        runs[ema] = [read(work, f"metrics/{name}") for name in ("curves/eval.tsv", "eval.json", "train.json")]
    curves, scores, train = runs[0.9]
    assert curves != runs[0][0]  # the evaluations saw other weights than the step's own
    header, *rows = [r.split("\t") for r in curves]
    best = next(dict(zip(header, r, strict=True)) for r in rows if float(r[1]) == train["best_epoch"])
    # The saved model is the one that was evaluated: the average at the best evaluation.
    assert float(best["val_accuracy"]) == pytest.approx(scores["accuracy"])
    assert float(best["val_loss"]) == pytest.approx(scores["loss"], abs=2e-3)


def test_the_trainer_flop_estimate_counts_parameters_once_and_agrees(tmp_path):
    from transformers import Trainer, TrainingArguments

    from tests.test_class_weights import PARAMS, batch, tiny_classifier
    from textclf.engines.trainer import PipelineTrainer

    model, inputs = tiny_classifier(), batch()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    ours, theirs = PipelineTrainer(model=model, args=args, pipeline_params=PARAMS), Trainer(model=model, args=args)
    assert ours.floating_point_ops(inputs) == theirs.floating_point_ops(inputs) > 0
    longer = {**inputs, "input_ids": torch.cat([inputs["input_ids"]] * 2, dim=1)}
    assert ours.floating_point_ops(longer) == theirs.floating_point_ops(longer) == 2 * theirs.floating_point_ops(inputs)
    assert ours.floating_point_ops({"labels": inputs["labels"]}) == 0


def test_the_trainer_evaluates_rows_in_the_order_given(tmp_path):
    """Evaluated sets come sorted by length; length-grouped training must not regroup them at random."""
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import DataCollatorWithPadding, PreTrainedTokenizerFast, TrainingArguments

    from tests.test_class_weights import PARAMS, tiny_classifier
    from textclf.engines.trainer import PipelineTrainer

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0, "a": 1})))
    tokenizer.pad_token = "[PAD]"
    rows = Dataset.from_dict({"input_ids": [[1] * n for n in range(1, 33)], "labels": [0] * 32})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        per_device_eval_batch_size=4,
        train_sampling_strategy="group_by_length",
    )
    trainer = PipelineTrainer(
        model=tiny_classifier(),
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        pipeline_params=PARAMS,
    )
    widths = [batch["input_ids"].shape[1] for batch in trainer.get_eval_dataloader(rows)]
    assert widths == list(range(4, 33, 4))  # rows 1-4, 5-8, ...: each batch padded only to its own rows
