"""stages/diagnose.py on tiny hand-written curves: each pattern shown clearly, and healthy look-alikes."""

import json
import math
import random
from statistics import median

import pytest

from textclf.diagnose import (
    UNDERFIT_FRACTION,
    balanced_accuracy,
    baseline_margin,
    check_collapsed,
    check_near_baseline,
    check_overfitting,
    check_underfitting,
    check_unstable,
    diagnose,
    find_oscillation,
    find_spikes,
    format_report,
    model_warnings,
    needed_accuracy,
    one_class_signature,
    prior_loss,
    train_loss_at,
)

MRPC_MAJORITY = 279 / 408  # positive share of MRPC dev: all-positive scores acc 0.684, F1 0.812
ALL_POSITIVE_F1 = 2 * MRPC_MAJORITY / (1 + MRPC_MAJORITY)
MRPC_PRIOR = prior_loss([1194, 2473])  # train: 2473 of 3667 pairs positive; entropy 0.63


def train(losses: list[float], epochs: float = 3, lr: float = 5e-5) -> list[dict]:
    """One row per logging step (10 steps apart), spread evenly over `epochs`, linear decay from `lr`."""
    n = len(losses)
    return [
        {
            "step": 10 * (i + 1),
            "epoch": round((i + 1) * epochs / n, 4),
            "train_loss": x,
            "lr": lr * (1 - i / n),
        }
        for i, x in enumerate(losses)
    ]


def val(losses: list[float], accuracy: list[float] | None = None, f1: list[float] | None = None) -> list[dict]:
    accuracy = accuracy or [0.8] * len(losses)
    f1 = f1 or [0.86] * len(losses)
    return [
        {"step": 100 * (i + 1), "epoch": float(i + 1), "val_loss": x, "val_accuracy": a, "val_f1": f}
        for i, (x, a, f) in enumerate(zip(losses, accuracy, f1, strict=True))
    ]


# Healthy: decays from ln 2 to ~0.16 with a little batch noise; val improves every epoch.
HEALTHY_TRAIN = [0.69 * 0.95**i + 0.02 * (-1) ** i for i in range(30)]
HEALTHY_VAL = val([0.45, 0.38, 0.36], [0.80, 0.84, 0.85], [0.86, 0.88, 0.89])
HEALTHY_FINAL = {"accuracy": 0.85, "f1": 0.89, "loss": 0.36, "precision": 0.87, "recall": 0.91}


def healthy() -> dict:
    return diagnose(train(HEALTHY_TRAIN), HEALTHY_VAL, HEALTHY_FINAL, {"0": 0.3, "1": 0.7})


def test_healthy_run_is_ok():
    d = healthy()
    assert d["verdict"] == "ok"
    assert not any(d[p] for p in ("overfitting", "underfitting", "unstable", "collapsed"))
    assert d["evidence"] == {} and d["suggestions"] == {}


def test_result_is_json_ready_and_flat():
    d = diagnose(train([0.69, math.nan, math.inf]), val([math.nan]), {"accuracy": math.nan})
    text = json.dumps(d, allow_nan=False)  # a NaN anywhere would raise here
    assert set(json.loads(text)) == {
        "verdict",
        "overfitting",
        "underfitting",
        "unstable",
        "collapsed",
        "near_baseline",
        "small_data",
        "evidence",
        "suggestions",
    }


# --- overfitting -------------------------------------------------------------------------------


def test_overfitting_flagged_with_epochs_and_numbers():
    d = diagnose(train(HEALTHY_TRAIN), val([0.35, 0.40, 0.48], [0.84, 0.83, 0.82], [0.88, 0.87, 0.86]))
    assert d["overfitting"] and d["verdict"] == "overfitting"
    evidence = d["evidence"]["overfitting"]
    assert "val loss rose from 0.35 (epoch 1) to 0.48 (epoch 3) while train loss fell from" in evidence
    assert "early_stopping_patience: 2" in d["suggestions"]["overfitting"]  # as the accuracy-gap check says
    assert "epochs: 1" in d["suggestions"]["overfitting"]
    # Not weight_decay: AdamW shrinks a weight by wd x the summed lr, ~0.3% over a default run at 0.1.
    assert "weight_decay" not in d["suggestions"]["overfitting"]


def test_overfitting_notes_when_f1_still_improves():
    # MRPC's usual case: loss up from overconfidence while F1 still climbs.
    f = check_overfitting(train(HEALTHY_TRAIN), val([0.35, 0.40, 0.48], f1=[0.86, 0.88, 0.89]))
    assert f.flagged and "F1 still went 0.86 -> 0.89" in f.evidence
    assert "select the model by F1" in f.suggestion
    assert "calibrated probabilities matter more than F1, select by loss (metric_for_best_model: loss)" in f.suggestion
    assert "early_stopping" not in f.suggestion  # stopping at the loss's best epoch would lose F1


def test_train_loss_at_uses_rows_up_to_that_epoch():
    rows = train([0.7, 0.6, 0.5, 0.4, 0.3, 0.2], epochs=2)  # three rows per epoch
    assert train_loss_at(rows, 1.0) == 0.6
    assert train_loss_at(rows, 2.0) == 0.4  # median of the last five: 0.6 0.5 0.4 0.3 0.2
    assert math.isnan(train_loss_at(rows, 0.1))


@pytest.mark.parametrize(
    "val_losses",
    [
        [0.45, 0.38, 0.36],  # still improving
        [0.35, 0.34, 0.36],  # best before last, but a 6% rise is within noise
        [0.40, 0.35, 0.35],  # flat at the end
    ],
)
def test_overfitting_not_flagged_without_a_clear_rise(val_losses):
    assert not check_overfitting(train(HEALTHY_TRAIN), val(val_losses)).flagged


def test_val_rise_with_flat_train_loss_is_not_overfitting():
    f = check_overfitting(train([0.5] * 30), val([0.35, 0.40, 0.48]))
    assert not f.flagged and "did not keep falling" in f.evidence


def test_single_epoch_cannot_be_judged_for_overfitting():
    d = diagnose(train(HEALTHY_TRAIN[:10], epochs=1), val([0.45]))
    assert not d["overfitting"]
    assert "only one validation epoch (epoch 1)" in d["evidence"]["overfitting"]
    assert "overfitting" in format_report(d)


def test_nan_val_epochs_are_skipped_for_overfitting():
    f = check_overfitting(train(HEALTHY_TRAIN), val([0.35, math.nan, 0.48]))
    assert f.flagged and "(epoch 3)" in f.evidence


# --- underfitting ------------------------------------------------------------------------------


def test_underfitting_flagged_when_loss_stays_near_ln2():
    d = diagnose(train([0.70, 0.69, 0.70, 0.68, 0.69, 0.69, 0.68, 0.69], lr=1e-6), HEALTHY_VAL)
    assert d["underfitting"] and d["verdict"] == "underfitting"
    assert (
        "final train loss 0.69 stays above 0.66 (always predicting the train label prior scores 0.69)"
        in (d["evidence"]["underfitting"])
    )
    assert "raise lr (peak 1e-6" in d["suggestions"]["underfitting"]


def test_underfitting_flagged_on_a_plateau_below_the_level():
    f = check_underfitting(train([0.50, 0.49, 0.50, 0.48, 0.49, 0.48, 0.47, 0.48, 0.47, 0.47]))
    assert f.flagged and "plateaued: 0.49 at the start, 0.47 at the end" in f.evidence


def test_two_logged_losses_or_a_fitted_train_sample_are_not_underfitting():
    # A 20-step run logs two losses: their difference is batch noise, not a plateau (it was flagged, with
    # "lower lr", for a model that classified every train and validation row right).
    assert not check_underfitting(train([0.38, 0.62])).flagged
    # A class-weighted loss can stay near the prior's level while every train-sample row is right.
    stuck = [0.69, 0.68, 0.68, 0.67, 0.67, 0.67, 0.66, 0.66, 0.66, 0.66]
    assert check_underfitting(train(stuck)).flagged
    f = check_underfitting(train(stuck), train_sample_accuracy=1.0)
    assert not f.flagged and "train sample is classified at 1.000: fitted" in f.evidence


def test_underfitting_suggests_lowering_an_already_high_lr():
    f = check_underfitting(train([0.69] * 8, lr=1e-2))
    assert f.flagged and "lower lr" in f.suggestion and "raise" not in f.suggestion


def test_underfitting_at_the_top_lr_suggests_epochs_not_a_lower_lr():
    # The default lr (1e-4) is the top of the stable range: "raise lr up to 5e-5" would lower it.
    d = diagnose(train([0.69] * 8, lr=1e-4), HEALTHY_VAL)
    assert d["underfitting"]
    assert d["suggestions"]["underfitting"].startswith("raise epochs (now 3): lr 1e-4 is already the top")
    assert "raise lr" not in d["suggestions"]["underfitting"]


def test_underfitting_judges_the_configured_lr_not_a_sparse_log():
    # A short run logs once, mid-decay (5.9e-5), though its peak was the configured 1e-4.
    rows = [{"step": 10, "epoch": 0.53, "train_loss": 0.69, "lr": 5.9e-5}]
    assert "raise lr (peak 5.9e-5; up to 1e-4)" in check_underfitting(rows).suggestion
    d = diagnose(rows, HEALTHY_VAL, lr=1e-4)
    assert "raise epochs (now 1)" in d["suggestions"]["underfitting"]


@pytest.mark.parametrize(
    "losses",
    [
        HEALTHY_TRAIN,
        [0.69, 0.4],  # two rows, a clear drop
        [0.69, 0.30, 0.90, 0.05, 0.05, 0.05, 0.05],  # a wild middle does not move the smoothed end
    ],
)
def test_underfitting_not_flagged_when_loss_falls(losses):
    assert not check_underfitting(train(losses)).flagged


def test_underfit_level_comes_from_the_task():
    # Always answering with MRPC's prior (2473 of 3667 train pairs positive) scores its entropy, 0.627,
    # and must count as underfit; so must a 3-class model stuck at ln 3 = 1.10.
    mrpc = prior_loss([3667 - 2473, 2473])
    assert 0.62 < mrpc < 0.64 and 0.59 < UNDERFIT_FRACTION * mrpc < 0.61
    assert check_underfitting(train([0.69, 0.66, 0.64, 0.63, 0.63, 0.63]), mrpc).flagged
    assert prior_loss([10, 10, 10]) == pytest.approx(math.log(3))
    assert prior_loss([90, 5, 5], class_weighted=True) == pytest.approx(math.log(3))  # balanced: uniform
    # label smoothing 0.1 on a 90/10 prior: the best constant guess is 0.9 * (0.9, 0.1) + 0.05 = (0.86, 0.14)
    assert prior_loss([90, 10], smoothing=0.1) == pytest.approx(-(0.86 * math.log(0.86) + 0.14 * math.log(0.14)))
    assert prior_loss([10, 0], smoothing=0.2) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)))
    stuck = [1.10, 1.09, 1.10, 1.08, 1.09, 1.09]
    assert check_underfitting(train(stuck), math.log(3)).flagged
    # The same curve is a learning model on a 10-class task, but never on a binary one.
    assert not check_underfitting(train([2.3, 1.9, 1.5, 1.2, 1.1, 1.09]), math.log(10)).flagged


# --- instability -------------------------------------------------------------------------------


def test_nan_loss_flags_unstable():
    rows = train([0.69, 0.6, 0.5, math.nan, math.nan])
    d = diagnose(rows, HEALTHY_VAL)
    assert d["unstable"] and "unstable" in d["verdict"]
    assert "train_loss is not finite (nan) at step 40" in d["evidence"]["unstable"]
    assert "1 more" in d["evidence"]["unstable"]
    assert "lower lr" in d["suggestions"]["unstable"] and "max_grad_norm" in d["suggestions"]["unstable"]


def test_inf_val_loss_flags_unstable():
    f = check_unstable(train(HEALTHY_TRAIN), val([0.45, math.inf, 0.4]))
    assert f.flagged and "val_loss" in f.evidence


def test_a_run_too_short_to_log_a_train_loss_is_not_judged_unstable():
    f = check_unstable([], val([0.6, 0.5]))
    assert not f.flagged and "no train loss logged (fewer optimizer steps than logging_steps)" in f.evidence


def test_late_spike_flags_unstable():
    losses = HEALTHY_TRAIN[:25] + [1.2] + HEALTHY_TRAIN[26:]
    d = diagnose(train(losses, lr=3e-4), HEALTHY_VAL)
    assert d["unstable"]
    assert "spiked to 1.20 at step 260" in d["evidence"]["unstable"]
    assert "peak 3e-4" in d["suggestions"]["unstable"]


def test_early_spike_and_small_late_wobbles_are_not_unstable():
    early = HEALTHY_TRAIN[:3] + [1.5] + HEALTHY_TRAIN[4:]
    assert not check_unstable(train(early), HEALTHY_VAL).flagged
    # Near the end a loss of 0.02 may triple by batch noise: above 2x, but below MIN_SWING.
    tiny = [0.69 * 0.7**i for i in range(20)] + [0.02, 0.06, 0.02, 0.02]
    assert tiny[-3] > 2 * tiny[-5]
    assert find_spikes(tiny) == [] and not check_unstable(train(tiny), HEALTHY_VAL).flagged


def find_spikes_before(losses):
    return [i for i in range(len(losses) // 2, len(losses))
            if losses[i] > 2 * median(losses[i - 10 : i]) and losses[i] - median(losses[i - 10 : i]) > 0.2]  # fmt: skip


def test_the_tail_of_a_long_noisy_run_is_not_a_spike():
    # All of SST-2 with the defaults: 1,263 logged losses, the late ones around 0.09, spread 0.044 around
    # their running median; its largest, 0.35, 5.3 of those spreads up, was flagged as a spike. A jump of
    # the same run to 1.0 (back to worse than chance) still is one.
    rng = random.Random(0)
    losses = [0.69 * 0.99**i + 0.06 for i in range(300)] + [max(0.01, rng.gauss(0.09, 0.044)) for _ in range(963)]
    losses[1000] = 0.33
    assert find_spikes_before(losses)  # the old rule: twice the running median and 0.2 above it
    assert not check_unstable(train(losses), HEALTHY_VAL).flagged
    losses[1000] = 1.0
    assert "spiked to 1.00" in check_unstable(train(losses), HEALTHY_VAL).evidence


def test_spike_over_a_zero_median_does_not_divide_by_zero():
    f = check_unstable(train([0.0] * 10 + [0.5]), HEALTHY_VAL)
    assert f.flagged and "spiked to 0.50" in f.evidence and "median of 0.00" in f.evidence


def test_find_spikes_reports_index_value_and_median():
    losses = [0.5] * 10 + [1.4] + [0.5] * 3
    assert find_spikes(losses) == [(10, 1.4, 0.5)]
    assert find_spikes([0.5, 2.0]) == []  # too short to have a running median


def test_oscillation_flags_unstable():
    # Swings of 0.5 around 0.7: no single value doubles its running median, so no spike either.
    losses = [0.69, 0.6, 0.55, 0.5] + [0.45, 0.95] * 5
    assert find_spikes(losses) == []
    assert find_oscillation(losses) is not None
    f = check_unstable(train(losses), HEALTHY_VAL)
    assert f.flagged and "oscillates" in f.evidence


@pytest.mark.parametrize(
    "losses",
    [
        HEALTHY_TRAIN,
        [0.63 + 0.04 * (-1) ** i for i in range(20)],  # noisy but narrow
        [0.9 - 0.08 * i for i in range(10)],  # steep but monotone
    ],
)
def test_no_oscillation_on_narrow_noise_or_monotone_moves(losses):
    assert find_oscillation(losses) is None


def test_empty_train_rows_do_not_crash():
    d = diagnose([], HEALTHY_VAL)
    assert d["verdict"] == "ok"
    assert "cannot be judged" in d["evidence"]["underfitting"]
    assert "cannot be judged" in d["evidence"]["unstable"]
    assert "not keep falling" in diagnose([], val([0.35, 0.40, 0.48]))["evidence"]["overfitting"]


def test_nothing_at_all_does_not_crash():
    d = diagnose([], [])
    assert d["verdict"] == "ok" and d["suggestions"] == {}
    assert "no validation epoch" in d["evidence"]["overfitting"]
    assert "cannot be judged" in d["evidence"]["collapsed"]
    assert format_report(d).startswith("Diagnosis: ok")


# --- collapse ----------------------------------------------------------------------------------


def mrpc_collapsed_run() -> tuple[list[dict], list[dict], dict]:
    """lr=1e-2 on MRPC: the loss sinks to the label prior (~0.63) and stays; dev scores are all-positive."""
    train_rows = train([0.70, 0.66] + [0.63 + 0.02 * (-1) ** i for i in range(28)], lr=1e-2)
    val_rows = val([0.63, 0.62, 0.62], [0.684] * 3, [0.812] * 3)
    final = {"accuracy": 0.6838, "f1": 0.8122, "loss": 0.62, "precision": 0.6838, "recall": 1.0}
    return train_rows, val_rows, final


def test_mrpc_collapsed_run_flags_collapse_from_scores():
    train_rows, val_rows, final = mrpc_collapsed_run()
    d = diagnose(train_rows, val_rows, final, majority_rate=MRPC_MAJORITY, prior=MRPC_PRIOR)
    assert d["collapsed"] and d["underfitting"]
    assert not d["unstable"] and not d["overfitting"]
    assert d["verdict"] == "collapsed, underfitting"  # most serious first
    assert "all-positive" in d["evidence"]["collapsed"] and "0.684" in d["evidence"]["collapsed"]
    assert "lower lr (peak 1e-2)" in d["suggestions"]["collapsed"]
    # "raise lr" would contradict the collapse's fix.
    assert d["suggestions"]["underfitting"] == "fix the collapse first"


def test_the_lr_advice_of_a_lora_run_follows_the_adapters_range():
    """A collapsed LoRA run at 5e-4 (the lr the README advises adapters) was told to lower it to
    2e-5..5e-5, the full update's range; at 1e-2 it is too high for adapters too."""
    train_rows, val_rows, final = mrpc_collapsed_run()
    common = {"majority_rate": MRPC_MAJORITY, "prior": MRPC_PRIOR}
    lora = diagnose(train_rows, val_rows, final, lr=5e-4, adapters=True, **common)
    assert lora["collapsed"] and "check the labels" in lora["suggestions"]["collapsed"]
    assert "2e-5" not in lora["suggestions"]["collapsed"] and "2e-4..5e-4" in lora["suggestions"]["collapsed"]
    full = diagnose(train_rows, val_rows, final, lr=5e-4, **common)
    assert "lower lr (peak 5e-4) to 2e-5..5e-5" in full["suggestions"]["collapsed"]
    high = diagnose(train_rows, val_rows, final, lr=1e-2, adapters=True, **common)
    assert "lower lr (peak 1e-2) to 2e-4..5e-4" in high["suggestions"]["collapsed"]


def test_mrpc_collapsed_run_flags_collapse_from_last_epoch_without_final():
    train_rows, val_rows, _ = mrpc_collapsed_run()
    assert diagnose(train_rows, val_rows)["collapsed"]


def test_collapse_from_predicted_share():
    train_rows, val_rows, final = mrpc_collapsed_run()
    d = diagnose(train_rows, val_rows, final, {"0": 0.0, "1": 1.0})
    assert d["collapsed"] and "predicts class 1 for 100.0% of validation examples" in d["evidence"]["collapsed"]
    assert check_collapsed(val_rows, predicted_share={"0": "0.995", "1": "0.005"}).flagged


def test_predicted_share_outranks_scores():
    # A balanced prediction share means no collapse, whatever the scores coincidentally look like.
    _, val_rows, final = mrpc_collapsed_run()
    assert not check_collapsed(val_rows, final, {"0": 0.3, "1": 0.7}).flagged


def test_all_negative_collapse():
    f = check_collapsed(val([0.64]), {"accuracy": 1 - MRPC_MAJORITY, "f1": 0.0}, majority_rate=MRPC_MAJORITY)
    assert f.flagged and "all-negative" in f.evidence


def test_collapse_suggestion_checks_labels_when_lr_is_already_low():
    f = check_collapsed(val([0.62]), {"accuracy": 0.684, "f1": 0.812}, lr=2e-5)
    assert f.flagged and f.suggestion.startswith("check the labels")


@pytest.mark.parametrize(
    ("accuracy", "f1", "majority", "expected"),
    [
        (MRPC_MAJORITY, ALL_POSITIVE_F1, None, "all-positive"),
        (0.684, 0.812, MRPC_MAJORITY, "all-positive"),  # rounded as logged
        (0.316, 0.0, MRPC_MAJORITY, "all-negative"),
        (0.5, 2 / 3, None, "all-positive"),  # a balanced set, balance unknown
        (0.85, 0.89, MRPC_MAJORITY, None),  # a real model
        (0.80, 0.889, MRPC_MAJORITY, None),  # F1 fits 2a/(1+a) but accuracy is not a class rate
        (0.70, 0.812, MRPC_MAJORITY, None),  # accuracy 1.6 pt off the majority rate
        (0.684, 0.75, MRPC_MAJORITY, None),  # majority accuracy but a mixed prediction
    ],
)
def test_one_class_signature(accuracy, f1, majority, expected):
    assert one_class_signature(accuracy, f1, majority) == expected


def test_a_collapse_on_imbalanced_train_is_told_to_weigh_the_classes():
    """95/5 train, 100% predicted as the majority: the fix is class_weights, before any lr."""
    rows = train(HEALTHY_TRAIN, lr=1e-4)
    share, final = {"0": 1.0, "1": 0.0}, {"accuracy": 0.95, "f1": 0.0}
    d = diagnose(rows, val([0.2], [0.95], [0.0]), final, share, majority_rate=0.95, train_counts={"0": 380, "1": 20})
    advice = d["suggestions"]["collapsed"]
    assert advice.startswith("train's smallest class is 5% of its rows: weigh the classes (class_weights: balanced)")
    assert "with warmup" not in advice
    weighted = diagnose(
        rows, val([0.2], [0.95], [0.0]), final, share, train_counts={"0": 380, "1": 20}, confusion=[[190, 0], [10, 0]]
    )
    assert "class_weights" not in weighted["suggestions"]["collapsed"]  # already weighed
    balanced = diagnose(rows, val([0.2], [0.95], [0.0]), final, share, train_counts={"0": 200, "1": 200})
    assert "class_weights" not in balanced["suggestions"]["collapsed"]


def test_near_baseline_defers_to_an_underfitting_that_explains_it():
    flat = [0.69] * 30  # the loss never left ln 2: lr far too low
    d = diagnose(
        train(flat, lr=1e-7), val([0.69] * 3, [0.55] * 3, [0.6] * 3), {"accuracy": 0.55, "f1": 0.6},
        majority_rate=0.525, n_validation=200, train_counts={"0": 169, "1": 231},
    )  # fmt: skip
    assert d["near_baseline"] and d["underfitting"]
    assert d["suggestions"]["near_baseline"].startswith("fix the underfitting first")
    assert "raise lr" in d["suggestions"]["underfitting"]


def test_healthy_scores_and_balanced_share_are_not_collapsed():
    assert not check_collapsed(HEALTHY_VAL, HEALTHY_FINAL, majority_rate=MRPC_MAJORITY).flagged
    assert not check_collapsed(HEALTHY_VAL, predicted_share={"0": 0.35, "1": 0.65}).flagged


# --- near the majority baseline ----------------------------------------------------------------


def mrpc_500_pairs_run() -> tuple[list[dict], list[dict], dict, dict]:
    """Defaults on 500 MRPC pairs (seed 1, benchmarks round 9): the loss falls, the model predicts both
    classes, yet its dev accuracy 0.696 is about the 0.684 that always answering "paraphrase" scores."""
    train_rows = train([0.66, 0.64, 0.62, 0.60, 0.55, 0.50, 0.44, 0.38, 0.30, 0.25], lr=1e-4)
    val_rows = val([0.60, 0.62, 0.70], [0.696, 0.690, 0.686], [0.818, 0.80, 0.79])
    final = {"accuracy": 0.696, "f1": 0.818, "loss": 0.60}
    return train_rows, val_rows, final, {"0": 0.05, "1": 0.95}


def test_a_model_near_the_majority_baseline_is_called_out():
    train_rows, val_rows, final, share = mrpc_500_pairs_run()
    d = diagnose(
        train_rows,
        val_rows,
        final,
        share,
        majority_rate=MRPC_MAJORITY,
        prior=MRPC_PRIOR,
        n_validation=408,
        train_counts={"0": 160, "1": 340},
    )
    assert d["near_baseline"] and not d["collapsed"]  # 95% of one class is not a collapse
    assert d["verdict"].startswith("near baseline")
    evidence = d["evidence"]["near_baseline"]
    # The exact binomial line at 3 standard errors' odds: 308 of 408 rows (3 normal standard errors: 0.753).
    assert "val accuracy 0.696 is not clearly above the 0.684" in evidence and "takes 0.755" in evidence
    assert "train has 500 rows" in d["suggestions"]["near_baseline"]
    assert format_report(d).splitlines()[1].startswith("  near_baseline: val accuracy 0.696")


@pytest.mark.parametrize(
    ("accuracy", "majority", "n", "flagged"),
    [
        (0.85, MRPC_MAJORITY, 408, False),  # the defaults on full MRPC
        (0.75, MRPC_MAJORITY, 408, True),  # 6.6 points up: within 3 standard errors (6.9)
        (0.76, MRPC_MAJORITY, 408, False),
        (0.60, MRPC_MAJORITY, 408, True),  # below the baseline
        (0.56, 0.51, 872, True),  # SST-2 dev: needs 0.562
        (0.57, 0.51, 872, False),
        (0.80, 0.5, 16, True),  # 16 rows cannot tell 80% from a coin: needs 15 of 16
        (0.875, 0.5, 16, True),  # the normal line's 0.875: 14 of 16 heads come up 0.2% of the time
        (0.995, 0.95, 200, False),  # 95/5 and one error: the normal line asked for 0.996 (all 200 right)
        (0.99, 0.95, 200, True),
        (0.40, 0.35, 300, True),  # three classes, the largest 35%: needs 0.433
        (0.45, 0.35, 300, False),
    ],
)
def test_baseline_margin_scales_with_the_validation_size(accuracy, majority, n, flagged):
    f = check_near_baseline([], {"accuracy": accuracy}, majority, n)
    assert f.flagged is flagged
    assert (accuracy < needed_accuracy(majority, n)) is flagged
    assert abs(needed_accuracy(majority, n) - (majority + baseline_margin(majority, n))) < 0.07  # near the normal line


def test_baseline_below_is_said_and_unknown_inputs_are_not_judged():
    assert (
        "val accuracy 0.600 is below the 0.684"
        in check_near_baseline([], {"accuracy": 0.6}, MRPC_MAJORITY, 408).evidence
    )
    assert check_near_baseline(val([0.6], [0.69]), None, MRPC_MAJORITY, 408).flagged  # from the last evaluation
    assert check_near_baseline([], {"accuracy": 0.6}, None, 408) == (False, None, None)
    assert check_near_baseline([], {"accuracy": 0.6}, MRPC_MAJORITY, None) == (False, None, None)
    assert check_near_baseline([], {}, MRPC_MAJORITY, 408) == (False, None, None)
    assert not check_near_baseline([], {"accuracy": 1.0}, 1.0, 408).flagged  # one class in validation


# 100 validation rows, 10 of the positive class: a class-weighted model that finds 9 of them with 11
# false alarms is useful (recall 0.90 and 0.88) but scores accuracy 0.88, below the 0.90 majority rate.
MINORITY_DETECTOR = [[79, 11], [1, 9]]


def test_a_class_weighted_run_is_judged_by_balanced_accuracy():
    final = {"accuracy": 0.88}
    assert check_near_baseline([], final, 0.9, 100).flagged  # by accuracy: below the majority rate
    f = check_near_baseline([], final, 0.9, 100, confusion=MINORITY_DETECTOR)
    assert not f.flagged  # balanced accuracy 0.889 against chance 0.5 (needs 0.75)
    score, level, margin = balanced_accuracy(MINORITY_DETECTOR)
    assert score == pytest.approx((79 / 90 + 9 / 10) / 2) and level == 0.5
    assert margin == pytest.approx(3 * math.sqrt(0.25 / 90 + 0.25 / 10) / 2)


def test_a_class_weighted_model_near_chance_is_flagged():
    # 500 MRPC pairs (the real run in the README): 267 of 279 positives found, 21 of 129 negatives.
    confusion = [[21, 108], [12, 267]]
    f = check_near_baseline([], {"accuracy": 288 / 408}, MRPC_MAJORITY, 408, confusion=confusion)
    assert f.flagged
    assert f.evidence.startswith("val balanced accuracy (the mean recall per class, what class_weights: balanced")
    assert "0.560 is not clearly above the 0.500 of a prediction that ignores the text" in f.evidence
    assert "on 408 validation rows that takes 0.580" in f.evidence


def test_balanced_accuracy_counts_only_the_classes_validation_holds():
    score, level, _ = balanced_accuracy([[5, 0, 5], [0, 0, 0], [0, 0, 10]])
    assert score == 0.75 and level == 0.5
    assert all(math.isnan(x) for x in balanced_accuracy([[3, 1], [0, 0]]))
    assert not check_near_baseline([], {"accuracy": 0.75}, 0.75, 4, confusion=[[3, 1], [0, 0]]).flagged


def test_a_collapse_is_not_also_reported_as_near_baseline():
    train_rows, val_rows, final = mrpc_collapsed_run()
    d = diagnose(train_rows, val_rows, final, majority_rate=MRPC_MAJORITY, prior=MRPC_PRIOR, n_validation=408)
    assert d["collapsed"] and not d["near_baseline"] and d["verdict"] == "collapsed, underfitting"
    assert "near_baseline" not in d["evidence"]


def test_healthy_mrpc_run_is_above_the_baseline():
    d = diagnose(
        train(HEALTHY_TRAIN),
        HEALTHY_VAL,
        HEALTHY_FINAL,
        {"0": 0.3, "1": 0.7},
        majority_rate=MRPC_MAJORITY,
        n_validation=408,
    )
    assert d["verdict"] == "ok" and not d["near_baseline"]


# --- inputs read back from TSV, and the report --------------------------------------------------


def test_string_values_from_tsv_are_read():
    train_rows = [{k: str(v) for k, v in r.items()} for r in train(HEALTHY_TRAIN)]
    val_rows = [{k: str(v) for k, v in r.items()} for r in val([0.35, 0.40, 0.48])]
    d = diagnose(train_rows, val_rows)
    assert d["verdict"] == "overfitting"
    nan_rows = [{"step": "10", "epoch": "0.1", "train_loss": "nan", "lr": "5e-05"}]
    assert diagnose(nan_rows, [])["unstable"]


def test_format_report_lists_problems_suggestions_and_notes():
    train_rows, _, final = mrpc_collapsed_run()
    d = diagnose(train_rows, val([0.62], [0.684], [0.812]), final, majority_rate=MRPC_MAJORITY, prior=MRPC_PRIOR)
    report = format_report(d)
    lines = report.splitlines()
    assert lines[0] == "Diagnosis: collapsed, underfitting"
    assert lines[1].startswith("  collapsed: val accuracy 0.684")
    assert lines[2].startswith("    try: lower lr")
    assert any(line.startswith("  underfitting: final train loss") for line in lines)
    assert lines[-1].startswith("  note (overfitting): only one validation epoch")


def test_format_report_for_a_healthy_run_is_one_line():
    assert format_report(healthy()) == (
        "Diagnosis: ok (no collapse, instability, underfitting or overfitting in the curves)"
    )


# --- three classes -----------------------------------------------------------------------------
# Every verdict on curves of a 3-class task (NLI-like: label names, loss starting near ln 3 = 1.10).

LN3 = math.log(3)
THREE_HEALTHY_TRAIN = [1.10 * 0.93**i + 0.02 * (-1) ** i for i in range(30)]
THREE_SHARE = {"CONTRADICTION": 0.32, "ENTAILMENT": 0.35, "NEUTRAL": 0.33}
THREE_FINAL = {"accuracy": 0.71, "f1": 0.70, "loss": 0.72, "precision": 0.71, "recall": 0.70}


def three_val(losses: list[float]) -> list[dict]:
    return val(losses, [0.62, 0.68, 0.71][: len(losses)], [0.60, 0.67, 0.70][: len(losses)])


def test_three_classes_healthy_is_ok():
    d = diagnose(train(THREE_HEALTHY_TRAIN), three_val([0.85, 0.76, 0.72]), THREE_FINAL, THREE_SHARE, prior=LN3)
    assert d["verdict"] == "ok", d


def test_three_classes_underfitting_is_judged_against_ln3():
    stuck = [1.11, 1.10, 1.09, 1.10, 1.09, 1.10, 1.09, 1.09]
    d = diagnose(train(stuck, lr=1e-6), three_val([1.09, 1.09, 1.09]), THREE_FINAL, THREE_SHARE, prior=LN3)
    assert (
        d["verdict"] == "underfitting"
        and "always predicting the train label prior scores 1.10" in (d["evidence"]["underfitting"])
    )
    # A loss of 0.85 is a coin flip's level for a binary task but real learning for three classes.
    learning = [1.10, 1.05, 1.0, 0.95, 0.9, 0.88, 0.86, 0.85, 0.85, 0.85]
    assert not check_underfitting(train(learning), LN3).flagged
    assert check_underfitting(train(learning), math.log(2)).flagged


def test_three_classes_collapse_names_the_class():
    share = {"CONTRADICTION": 0.0, "ENTAILMENT": 0.995, "NEUTRAL": 0.005}
    d = diagnose(train(THREE_HEALTHY_TRAIN), three_val([1.1, 1.1, 1.1]), THREE_FINAL, share, prior=LN3)
    assert (
        d["collapsed"] and "predicts class ENTAILMENT for 99.5% of validation examples" in (d["evidence"]["collapsed"])
    )


def test_three_classes_unstable_and_overfitting():
    spiky = THREE_HEALTHY_TRAIN[:24] + [2.4] + THREE_HEALTHY_TRAIN[25:]
    d = diagnose(train(spiky), three_val([0.85, 0.76, 0.72]), THREE_FINAL, THREE_SHARE, prior=LN3)
    assert d["verdict"] == "unstable" and "spiked to 2.40" in d["evidence"]["unstable"]
    d = diagnose(train(THREE_HEALTHY_TRAIN), three_val([0.70, 0.78, 0.90]), THREE_FINAL, THREE_SHARE, prior=LN3)
    assert (
        d["verdict"] == "overfitting"
        and "val loss rose from 0.70 (epoch 1) to 0.90 (epoch 3)" in (d["evidence"]["overfitting"])
    )


# --- too little data ---------------------------------------------------------------------------


def test_tiny_splits_are_flagged_even_when_the_curves_look_fine():
    # 3 train rows and 2 validation rows used to train to "Diagnosis: ok" without a word.
    d = diagnose(train(HEALTHY_TRAIN), HEALTHY_VAL, HEALTHY_FINAL, n_validation=2, train_counts={"a": 2, "b": 1})
    assert d["verdict"] == "small data" and d["small_data"]
    evidence = d["evidence"]["small_data"]
    assert "validation has 2 rows: one row moves accuracy by 50.0 points" in evidence
    assert "fewer than 10 rows of class(es) a (2), b (1)" in evidence
    assert "anecdotes" in d["suggestions"]["small_data"]
    assert format_report(d).startswith("Diagnosis: small data")
    many = {f"topic_{i:02}": 4 for i in range(40)}  # 40 small classes: five named, the rest counted
    d = diagnose(train(HEALTHY_TRAIN), HEALTHY_VAL, HEALTHY_FINAL, n_validation=200, train_counts=many)
    assert (
        "class(es) topic_00 (4), topic_01 (4), topic_02 (4), topic_03 (4), topic_04 (4) and 35 more"
        in (d["evidence"]["small_data"])
    )


def test_mrpc_sized_splits_are_not_small():
    d = diagnose(
        train(HEALTHY_TRAIN),
        HEALTHY_VAL,
        HEALTHY_FINAL,
        n_validation=408,
        train_counts={"a": 1194, "b": 2473},
    )
    assert d["verdict"] == "ok" and not d["small_data"]


def test_a_short_run_that_collapsed_is_told_it_was_short():
    # 39 steps at lr 3e-5 with warmup: "try lr 2e-5..5e-5 with warmup" would repeat what was done.
    rows = train([0.70, 0.68, 0.66, 0.65], lr=3e-5)
    rows[-1]["step"] = 39
    d = diagnose(rows, val([0.64], [0.684], [0.812]), {"accuracy": 0.684, "f1": 0.812}, {"0": 0.0, "1": 1.0})
    assert d["collapsed"] and "only 39 optimizer steps" in d["suggestions"]["collapsed"]
    assert "2e-5..5e-5" not in d["suggestions"]["collapsed"]


# --- the train/validation accuracy gap ---------------------------------------------------------


def gap_rows(train_acc: list[float], val_acc: list[float]) -> list[dict]:
    rows = val([0.45] * len(val_acc), val_acc, [0.86] * len(val_acc))
    for row, t in zip(rows, train_acc, strict=True):
        row["train_sample_accuracy"] = t
    return rows


def test_train_accuracy_pulling_away_while_validation_falls_is_overfitting():
    d = diagnose(train(HEALTHY_TRAIN), gap_rows([0.85, 0.93, 0.99], [0.82, 0.84, 0.81]))
    assert d["overfitting"] and "train-sample accuracy 0.99 against validation 0.81" in d["evidence"]["overfitting"]
    assert "fell from 0.84" in d["evidence"]["overfitting"]


def test_a_gap_alone_is_not_overfitting():
    d = diagnose(train(HEALTHY_TRAIN), gap_rows([0.85, 0.93, 0.99], [0.80, 0.82, 0.84]))
    assert not d["overfitting"] and "not overfitting yet" in d["evidence"]["overfitting"]


# --- a validation split too small or too imbalanced for the baseline check to judge ------------
# 30 validation rows, 29 of one class and 1 of the other (an exploratory tester's split).
TINY_IMBALANCED = {"majority_rate": 29 / 30, "n_validation": 30, "train_counts": {"ham": 261, "spam": 9}}


def test_a_perfect_class_weighted_model_on_one_minority_row_is_not_called_near_baseline():
    # class_weights: balanced, every row right: the balanced-accuracy line is 1.26, above any score.
    d = diagnose(
        train(HEALTHY_TRAIN), val([0.3, 0.2, 0.1], [1.0] * 3, [1.0] * 3), {"accuracy": 1.0, "f1": 1.0},
        {"ham": 29 / 30, "spam": 1 / 30}, confusion=[[29, 0], [0, 1]], **TINY_IMBALANCED,
    )  # fmt: skip
    assert not d["near_baseline"] and "near baseline" not in d["verdict"]
    note = d["evidence"]["near_baseline"]
    assert note.startswith("val balanced accuracy (the mean recall per class, what class_weights: balanced trains")
    assert "1.000 against the 0.500 of a prediction that ignores the text cannot be judged" in note
    assert "30 validation rows, only 1 in the smallest class" in note
    assert "more than every row right (1.263)" in note
    assert "a larger validation_split, or a validation file" in note
    assert "learned little" not in note and "do not rely" not in note
    # Not "ok" either: too little data is flagged, and says why.
    assert d["small_data"] and d["verdict"] == "small data"
    assert "validation's smallest class has 1 row: too few to tell" in d["evidence"]["small_data"]
    assert "validation_split" in d["suggestions"]["small_data"]
    assert "near_baseline" not in model_warnings(d)  # predict repeats no warning on no evidence
    assert "  note (near_baseline): val balanced accuracy" in format_report(d)


def test_a_detector_of_the_only_minority_row_is_not_called_near_baseline():
    # No class weights: it finds the one positive with 2 false alarms, accuracy 28/30 = 0.933 against 0.967.
    # Even every row right is reached by chance by a predictor right 29 times in 30 (0.967^30 = 36%).
    d = diagnose(
        train(HEALTHY_TRAIN), val([0.3, 0.2, 0.1], [0.933] * 3, [0.5] * 3), {"accuracy": 28 / 30, "f1": 0.5},
        {"ham": 0.9, "spam": 0.1}, **TINY_IMBALANCED,
    )  # fmt: skip
    assert not d["near_baseline"] and d["verdict"] == "small data"
    note = d["evidence"]["near_baseline"]
    assert note.startswith(
        "val accuracy 0.933 against the 0.967 of always predicting the majority class cannot be judged: "
        "30 validation rows, only 1 outside the majority class"
    )
    assert "more than every row right" in note and "learned little" not in note
    assert "validation holds only 1 row outside its majority class: too few to tell" in d["evidence"]["small_data"]
    assert model_warnings(d) == {}


def test_a_line_that_needs_every_row_right_cannot_judge_either():
    # 30 rows, 6 outside the majority: only all 30 right clears the line, so one wrong row decides.
    assert needed_accuracy(0.8, 30) == 1.0
    f = check_near_baseline([], {"accuracy": 29 / 30}, 0.8, 30)
    assert not f.flagged and "cannot be judged" in f.evidence and "takes every row right" in f.evidence
    assert not check_near_baseline([], {"accuracy": 1.0}, 0.8, 30).evidence  # a perfect score clears it
    # Where one wrong row still clears the line, the check judges as before: 16 balanced rows need 15.
    assert check_near_baseline([], {"accuracy": 14 / 16}, 0.5, 16).flagged


def test_a_balanced_accuracy_line_with_no_room_for_a_minority_error_cannot_judge():
    # 3 rows of the smaller class: one missed costs 1/6 of balanced accuracy, and the line is 0.93.
    f = check_near_baseline([], {"accuracy": 0.9}, 0.97, 100, confusion=[[95, 2], [1, 2]])
    assert not f.flagged and "only 3 in the smallest class" in f.evidence
    assert "takes every row right" not in f.evidence  # a perfect score would clear it, one error not
    assert "one wrong row of the smallest class" in f.evidence


# --- an accuracy drop of one validation row, and overfitting beside underfitting ----------------


def three_class_24_rows() -> tuple[list[dict], list[dict]]:
    """3 balanced classes, 24 validation rows: validation accuracy 9/24 at step 6, 8/24 at the end (one
    row), while validation loss fell the whole run and the train loss never left ln 3."""
    train_rows = train([1.12, 1.11, 1.10, 1.10, 1.09, 1.10, 1.09, 1.09, 1.10, 1.09], lr=1e-4)
    val_rows = [
        {"step": 2 * (i + 1), "epoch": 0.5 * (i + 1), "val_loss": loss, "val_accuracy": right / 24,
         "val_f1": right / 24, "train_sample_accuracy": sample}
        for i, (loss, right, sample) in enumerate(zip(
            [1.113, 1.110, 1.106, 1.102, 1.099, 1.097], [8, 8, 9, 9, 8, 8], [0.40, 0.45, 0.48, 0.50, 0.53, 0.56],
            strict=True,
        ))
    ]  # fmt: skip
    return train_rows, val_rows


def test_a_one_row_accuracy_drop_on_24_rows_is_not_overfitting():
    train_rows, val_rows = three_class_24_rows()
    d = diagnose(train_rows, val_rows, prior=LN3, n_validation=24, train_counts={"a": 72, "b": 72, "c": 72})
    assert not d["overfitting"], d["evidence"]["overfitting"]
    assert d["underfitting"] and "overfitting" not in d["verdict"]
    note = d["evidence"]["overfitting"]
    assert "train-sample accuracy 0.56 against validation 0.33" in note
    assert "validation accuracy fell from 0.38 at step 6 (epoch 1.5) by 1 row of 24, within the noise" in note


def test_accuracy_drop_must_exceed_the_noise_of_the_validation_size():
    # A gap of 15 points, validation accuracy 0.84 -> 0.81: 12 rows of MRPC's 408 is beyond one standard
    # error of the difference (2.6 points), the same 3 points on 100 rows (5.2) is not.
    rows = gap_rows([0.85, 0.93, 0.96], [0.82, 0.84, 0.81])
    assert diagnose(train(HEALTHY_TRAIN), rows, n_validation=408)["overfitting"]
    d = diagnose(train(HEALTHY_TRAIN), rows, n_validation=100)
    assert not d["overfitting"] and "by 3 rows of 100, within the noise" in d["evidence"]["overfitting"]
    # A drop of 8 rows of 24 (0.71 -> 0.38) is beyond it.
    assert diagnose(train(HEALTHY_TRAIN), gap_rows([0.8, 0.9, 0.95], [0.6, 17 / 24, 9 / 24]), n_validation=24)[
        "overfitting"
    ]


def test_overfitting_is_not_reported_beside_a_train_loss_stuck_at_the_prior():
    # The train loss never left ln 3 (underfitting), yet validation accuracy fell by 8 rows of 24: the
    # model has not fitted its training set, so the fall is not it memorising that set.
    train_rows, _ = three_class_24_rows()
    rows = gap_rows([0.8, 0.9, 0.95], [0.6, 17 / 24, 9 / 24])
    d = diagnose(train_rows, rows, prior=LN3, n_validation=24)
    assert d["underfitting"] and not d["overfitting"] and d["verdict"] == "underfitting, small data"
    assert d["evidence"]["overfitting"].startswith("not reported beside the underfitting")
    assert "train-sample accuracy 0.95 against validation 0.38" in d["evidence"]["overfitting"]


def test_a_plateau_below_the_prior_gives_way_to_overfitting():
    # Starting from a checkpoint already tuned on the task: the train loss sits at 0.2 from the first steps
    # (a plateau, far below ln 2) while validation accuracy falls 84 -> 76 on 408 rows. The model did fit
    # train; "raise lr or epochs" would feed the overfitting.
    rows, share = gap_rows([0.93, 0.95, 0.97], [0.82, 0.84, 0.76]), {"0": 0.35, "1": 0.65}
    d = diagnose(train([0.2] * 10), rows, None, share, n_validation=408)
    assert d["overfitting"] and not d["underfitting"] and d["verdict"] == "overfitting"
    assert d["evidence"]["underfitting"].startswith("not reported beside the overfitting")
    assert "train loss plateaued: 0.20 at the start, 0.20 at the end" in d["evidence"]["underfitting"]
