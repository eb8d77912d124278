"""Read a run's learning curves and name what went wrong: overfitting, underfitting, instability,
collapse, a model no better than always predicting the majority class, too little data.

Pure functions on the rows that stages/train.py `curves()` produces (train: step, epoch, train_loss,
lr per logging step; validation: step, epoch, val_loss, val_accuracy, val_f1 per epoch), so every
check is unit-testable without a model. `diagnose()` returns a JSON-ready dict whose flat keys become
`dvc exp show` columns; `format_report()` turns it into a few lines to print at the end of a run.

Values may be numbers or strings (rows read back from the TSV curves); anything unreadable is NaN.
Losses are cross-entropy in nats. Nothing assumes two classes: the underfitting level comes from the
task (`prior_loss`: what always predicting the train label prior scores), and collapse is read from
the share of the most predicted class. The majority-class baseline is the most common validation label's
share, whatever the number of classes.
"""

import math
from collections.abc import Mapping, Sequence
from statistics import mean, median
from typing import Any, NamedTuple

from textclf.errors import first_few

Row = Mapping[str, Any]

# --- overfitting -------------------------------------------------------------------------------
# Validation loss on MRPC's 408 dev pairs moves a few percent between epochs by chance; a rise of
# more than 10% above its best value is beyond that noise.
OVERFIT_VAL_RISE = 0.10
# Over the same epochs the train loss must still fall by 10%: a val loss that rises while the train
# loss is flat is not the model memorising its training set (more likely a schedule or data issue).
OVERFIT_TRAIN_FALL = 0.10

# The recipe's symptom: training accuracy far above validation. A gap alone is normal in fine-tuning
# (the model fits its own data better); it is overfitting once validation accuracy also falls from its
# best while the gap stands.
OVERFIT_ACC_GAP = 0.10
# The fall counts once it is beyond the noise of the validation size: one standard error of the
# difference of two accuracies on n rows, sqrt(2 p (1 - p) / n) at the best accuracy p (MRPC dev, 408
# rows at 0.84: 2.6 points, 10 rows; 24 rows at 0.38: 14 points, 3.4 rows, so one row's 4.2 is noise).
# The two evaluations score the same rows and agree on most of them, so their difference varies less
# than that of independent samples: the line is on the safe side, as it should be for a best value
# picked out of about ten evaluations. Never less than a point (OVERFIT_ACC_DROP), the whole line where
# the number of rows is unknown.
OVERFIT_ACC_DROP = 0.01

# --- underfitting ------------------------------------------------------------------------------
# A model that learned nothing from the text can still predict the train label prior, and scores its
# entropy (MRPC, 68% positive: 0.627; a balanced binary task: ln 2 = 0.693; 3 balanced classes: ln 3 =
# 1.099). A final train loss above 95% of that means little was learned beyond the prior. (For MRPC
# that is 0.60, the fixed level this check used when the pipeline knew only MRPC.)
UNDERFIT_FRACTION = 0.95
# A train loss that ends less than 10% below where it started has plateaued from the first steps. It
# takes two full smoothing windows of logged losses to say so: two single logged values (a run of 20
# steps) differ by batch noise alone.
UNDERFIT_MIN_DROP = 0.10
# A train sample classified this well has been fitted, whatever its loss (a class-weighted loss may
# stay near the prior's level while every row is on its right side): not underfitting.
UNDERFIT_FITTED_ACCURACY = 0.99

# One logged train loss averages only `logging_steps` batches, so "the loss at some point" is the
# median of up to this many logged values: the median ignores a lone spike (reported as instability).
SMOOTH_WINDOW = 5

# --- instability -------------------------------------------------------------------------------
# Only the second half is searched: early on the loss moves fast by design (fresh head, warmup),
# whereas late spikes mean the optimiser cannot settle.
SPIKE_FACTOR = 2.0  # a logged loss above twice the median of the ...
RUNNING_WINDOW = 10  # ... this many logged values before it
# Swings smaller than this are batch noise, not instability: one confidently wrong pair in a logging
# window of 32 adds ~0.15 nats, and near the end a loss of 0.02 can double without anything wrong.
MIN_SWING = 0.2
# A long run logs hundreds of losses, and per-window losses have a long right tail (a few confidently
# wrong rows), so its largest values pass any fixed factor by chance: all of SST-2 (1,263 logged losses,
# median 0.09) had one at 0.35, the top of a continuum (0.24, 0.25, 0.26, 0.28, 0.28, 0.35): 5.3 robust
# standard deviations (1.4826 x the median absolute deviation, 0.044) of the second half's losses around
# their running median. A spike must also stand this many of them above that median: far past what
# Gaussian noise reaches among thousands of values, still short of a jump back towards chance (0.09 to
# 0.69 there is 14 of them).
SPIKE_SIGMAS = 6.0
# Oscillation: the mean step-to-step change exceeds half the loss level (and MIN_SWING), and the
# direction flips at least every other step. Independent noise flips ~2/3 of the time, so the sign
# test only rules out steep monotone moves; the amplitude does the real work.
OSC_AMPLITUDE = 0.5
OSC_SIGN_CHANGES = 0.5

# --- collapse ----------------------------------------------------------------------------------
# 99% rather than 100%: four pairs of MRPC's 408 on the other side is still a one-class model.
COLLAPSE_SHARE = 0.99
# Half a point: one pair of 408 moves accuracy by 0.25 pt, and logged metrics may be rounded.
COLLAPSE_TOL = 0.005

# --- near the majority baseline ----------------------------------------------------------------
# A model that predicts both classes can still be no better than always predicting the majority one
# (500 MRPC pairs: validation accuracy 0.70 against 0.684, held-out 0.67 against 0.675). Its accuracy
# must clear the majority rate m by this many standard errors of an accuracy at m on the n validation
# rows, sqrt(m (1 - m) / n): two would be the usual one-sided 98%, but the kept model is the best of
# about ten evaluations on these same rows, which lifts its accuracy by chance alone. Measured on this
# project's benchmark runs (benchmarks/README.md, "Near the majority baseline"): the 25 runs on 500
# MRPC pairs stood 0.5 to 1.9 standard errors above m, every run on MRPC's full or carved train 3.9 or
# more, every SST-2 run 15 or more (MRPC dev, 408 rows: 3 standard errors are 6.9 points; SST-2 dev,
# 872 rows: 5.1 points). A run with class_weights: balanced gives up accuracy for the smaller classes
# on purpose, so it is judged by balanced accuracy against chance (1/k) instead (balanced_accuracy): a
# useful detector of a 10% class can have an accuracy below 90%. The line itself is an exact binomial
# test at those odds (needed_accuracy): the normal approximation asks too much where n (1 - m) is small.
# A score under the line is evidence of learning little only where an imperfect model could clear it.
# On a tiny or very imbalanced validation split the line is above 1 (30 rows, 1 of them positive: even
# every row right is what a predictor right 29 times in 30 scores 36% of the time), or only every row
# right clears it, so one row decides: there the check does not judge (baseline_judged) and says that
# validation is too small, and small_data is flagged instead of the model being called near baseline.
# The test for "an imperfect model could clear it" is one wrong row: of any class for accuracy, of the
# smallest class (the costliest row) for balanced accuracy.
BASELINE_Z = 3.0

# Above this, BERT-style fine-tuning tends to diverge or collapse; 2e-5..5e-5 is the usual range. This
# project's default lr is this value (with dropout 0 and frozen bottom layers, measured best in
# benchmarks/README.md), so it is also the top that an underfitting run is told to raise lr to.
HIGH_LR = 1e-4
GOOD_LR = "2e-5..5e-5"


class LrRange(NamedTuple):
    """The top of the stable lr range (above it: told to lower lr), and the range advised."""

    high: float
    good: str


FULL_UPDATE = LrRange(HIGH_LR, GOOD_LR)
# Low-rank adapters learn more slowly than a full update and take a larger lr: the LoRA paper's GLUE runs
# used 4e-4..5e-4; on MRPC here 5e-4 beat 1e-4 by 3 F1 points (README, "Bigger models").
ADAPTERS = LrRange(1e-3, "2e-4..5e-4")
# A new classification head needs a few hundred optimizer steps; after fewer, a model that predicts
# only the majority class has mostly not had time to learn, whatever its lr.
FEW_STEPS = 100
# A collapse on a train split whose smallest class has less than this share is told about class_weights.
IMBALANCED_SHARE = 0.2

# --- too little data ---------------------------------------------------------------------------
# Below 100 validation rows one row moves accuracy by a point or more, and chance alone moves it by
# about 5 (one standard error at 50%); a class with fewer than 10 train rows is barely learnable.
MIN_VALIDATION_ROWS = 100
MIN_TRAIN_PER_CLASS = 10

# Verdict order: most serious first, since one cause often explains the next (a collapsed model's
# loss also sits flat at the prior, so it looks underfit too; it also scores the majority baseline,
# which its collapse already says). Too little data comes last: it is about how far to trust all the
# others.
PATTERNS = ("collapsed", "near_baseline", "unstable", "underfitting", "overfitting", "small_data")


# Findings that make the model's predictions untrustworthy, not just its training improvable: they are
# saved with the model (its textclf.json) and repeated by `textclf predict` every time it is used.
UNRELIABLE = ("collapsed", "near_baseline")


class Finding(NamedTuple):
    """One check's result. Evidence may be set without a flag: a note that the check could not run."""

    flagged: bool
    evidence: str | None = None
    suggestion: str | None = None


# --- small helpers -----------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A float from a number or a TSV string; NaN for anything missing or unreadable."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _column(rows: Sequence[Row], key: str) -> list[float]:
    return [_num(r.get(key)) for r in rows]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _fmt(x: float) -> str:
    # Two decimals reads best for losses and scores; tiny values keep two significant digits instead.
    return f"{x:.2f}" if x == 0 or abs(x) >= 0.01 else f"{x:.2g}"


def _lr_text(lr: float) -> str:
    """Learning rates as params.yaml users write them: 1e-2, 3.5e-5 (not 0.01, 3.5e-05)."""
    if not math.isfinite(lr) or lr <= 0:
        return "unknown" if not math.isfinite(lr) else f"{lr:g}"
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _where(row: Row) -> str:
    return f"step {row.get('step', '?')} (epoch {round(_num(row.get('epoch')), 2):g})"


def peak_lr(train_rows: Sequence[Row]) -> float:
    """The highest logged learning rate (NaN if none): the scheduler's peak, up to logging granularity."""
    lrs = _finite(_column(train_rows, "lr"))
    return max(lrs) if lrs else math.nan


def train_loss_at(train_rows: Sequence[Row], epoch: float) -> float:
    """Smoothed train loss over the logging steps up to `epoch` (NaN if none were logged by then)."""
    upto = [_num(r.get("train_loss")) for r in train_rows if _num(r.get("epoch")) <= epoch + 1e-6]
    recent = _finite(upto)[-SMOOTH_WINDOW:]
    return median(recent) if recent else math.nan


# --- overfitting -------------------------------------------------------------------------------


def _val_points(val_rows: Sequence[Row]) -> list[tuple[float, float, float]]:
    """(epoch, val_loss, val_f1) per epoch with a finite loss, in logged order."""
    columns = (_column(val_rows, key) for key in ("epoch", "val_loss", "val_f1"))
    points = zip(*columns, strict=True)
    return [p for p in points if math.isfinite(p[1])]


def check_overfitting(train_rows: Sequence[Row], val_rows: Sequence[Row]) -> Finding:
    """Validation loss ends well above its best epoch while the train loss keeps falling."""
    points = _val_points(val_rows)
    if len(points) < 2:
        n = "no validation epoch" if not points else f"only one validation epoch (epoch {points[0][0]:g})"
        return Finding(False, f"{n}: overfitting needs two epochs to compare")
    (best_epoch, best, best_f1), (last_epoch, last, last_f1) = min(points, key=lambda p: p[1]), points[-1]
    if best_epoch >= last_epoch or last <= best * (1 + OVERFIT_VAL_RISE):
        return Finding(False)
    rose = f"val loss rose from {_fmt(best)} (epoch {best_epoch:g}) to {_fmt(last)} (epoch {last_epoch:g})"
    t_best, t_last = train_loss_at(train_rows, best_epoch), train_loss_at(train_rows, last_epoch)
    train = f"train loss {_fmt(t_best)} -> {_fmt(t_last)}"
    if not t_last < t_best * (1 - OVERFIT_TRAIN_FALL):  # also true when either is NaN (no train rows)
        return Finding(False, f"{rose}, but the train loss did not keep falling ({train}): not overfitting")
    evidence = f"{rose} while train loss fell from {_fmt(t_best)} to {_fmt(t_last)}"
    if math.isfinite(best_f1) and math.isfinite(last_f1) and last_f1 >= best_f1:
        # MRPC often shows this: the model grows overconfident (loss up) while it still ranks better.
        # Stopping at the loss's best epoch would then throw away F1.
        evidence += f"; val F1 still went {_fmt(best_f1)} -> {_fmt(last_f1)}"
        suggestion = (
            "F1 still improved, so select the model by F1 (metric_for_best_model: f1), not by loss;"
            " if calibrated probabilities matter more than F1, select by loss (metric_for_best_model: loss)"
        )
    else:
        suggestion = f"stop at the best epoch (epochs: {math.ceil(best_epoch)}) or add early_stopping_patience: 2"
    return Finding(True, evidence, suggestion)


def accuracy_drop_noise(best: float, n_validation: int | None) -> float:
    """How far validation accuracy may fall from its best `best` by chance on n rows (OVERFIT_ACC_DROP)."""
    if not n_validation:
        return OVERFIT_ACC_DROP
    p = (best * n_validation + 1) / (n_validation + 2)  # Laplace's rule: a best of 20/20 is no certainty
    return max(OVERFIT_ACC_DROP, math.sqrt(2 * p * (1 - p) / n_validation))


def check_accuracy_gap(val_rows: Sequence[Row], n_validation: int | None = None) -> Finding:
    """Train-sample accuracy far above validation while validation accuracy falls from its best, by more
    than chance moves it on `n_validation` rows (accuracy_drop_noise)."""
    rows = [
        (r, _num(r.get("train_sample_accuracy")), _num(r.get("val_accuracy")))
        for r in val_rows
        if math.isfinite(_num(r.get("train_sample_accuracy"))) and math.isfinite(_num(r.get("val_accuracy")))
    ]
    if len(rows) < 2:
        return Finding(False)
    last, train_acc, val_acc = rows[-1]
    best_row, _, best = max(rows, key=lambda x: x[2])
    gap = train_acc - val_acc
    if gap < OVERFIT_ACC_GAP:
        return Finding(False)
    seen = f"train-sample accuracy {train_acc:.2f} against validation {val_acc:.2f} at {_where(last)}"
    drop, noise = best - val_acc, accuracy_drop_noise(best, n_validation)
    if drop < OVERFIT_ACC_DROP - 1e-9:
        return Finding(False, f"{seen}, but validation accuracy is still at its best: not overfitting yet")
    if drop < noise - 1e-9:
        rows = round(drop * n_validation)
        fell = f"fell from {best:.2f} at {_where(best_row)} by {rows} row{'' if rows == 1 else 's'} of {n_validation}"
        return Finding(
            False,
            f"{seen}, but validation accuracy {fell}, within the noise of {n_validation} rows (one standard "
            f"error of the difference: {100 * noise:.1f} points): not overfitting",
        )
    evidence = (
        f"{seen} (a gap of {100 * gap:.0f} points) while validation accuracy fell from {best:.2f} at {_where(best_row)}"
    )
    suggestion = "stop earlier (early_stopping_patience: 2 with eval_steps), or give it more training data"
    return Finding(True, evidence, suggestion)


# --- underfitting ------------------------------------------------------------------------------


def _raise_lr_or_epochs(train_rows: Sequence[Row], lr: float = math.nan, lrs: LrRange = FULL_UPDATE) -> str:
    """More lr, or more epochs where the lr (the configured peak; else the highest logged) is already
    at the top of the range."""
    if not math.isfinite(lr):
        lr = peak_lr(train_rows)
    if math.isfinite(lr) and lr > lrs.high:
        # Raising an already too-high lr makes things worse: at this size it stops learning, not crawls.
        return f"lower lr: peak lr {_lr_text(lr)} is too high to learn, not too low; try {lrs.good}"
    epochs = _finite(_column(train_rows, "epoch"))
    now = f" (now {math.ceil(max(epochs))})" if epochs else ""
    if math.isfinite(lr) and lr >= lrs.high:
        top = f"lr {_lr_text(lr)} is already the top of the stable range"
        return f"raise epochs{now}: {top}; check warmup is not most of the run"
    up_to = f"peak {_lr_text(lr)}; up to {_lr_text(lrs.high)}"
    return f"raise lr ({up_to}) or epochs{now}; check warmup is not most of the run"


def prior_loss(label_counts: Sequence[int], class_weighted: bool = False, smoothing: float = 0.0) -> float:
    """The train loss of a model that ignores the text: always predicting the label prior scores the
    prior's entropy. With balanced class weights every class weighs the same, so the best constant
    guess is uniform and scores ln k. With label smoothing the targets, and so the best guess, are the
    prior mixed with the uniform: (1 - smoothing) * prior + smoothing / k."""
    total = sum(label_counts)
    if class_weighted or not total:
        return math.log(max(len(label_counts), 2))
    guess = [(1 - smoothing) * c / total + smoothing / len(label_counts) for c in label_counts]
    return -sum(q * math.log(q) for q in guess if q > 0)


def train_loss_ends(train_rows: Sequence[Row]) -> tuple[float, float, int] | None:
    """(smoothed train loss at the start, at the end, finite values logged); None if none were."""
    losses = _finite(_column(train_rows, "train_loss"))
    if not losses:
        return None
    window = max(1, min(SMOOTH_WINDOW, len(losses) // 2))  # start and end windows never overlap
    return median(losses[:window]), median(losses[-window:]), len(losses)


def check_underfitting(
    train_rows: Sequence[Row],
    prior: float = math.log(2),
    lr: float = math.nan,
    train_sample_accuracy: float = math.nan,
    lrs: LrRange = FULL_UPDATE,
) -> Finding:
    """Train loss ends near the level of predicting the label prior, or barely moves from its start,
    unless the train sample (its accuracy at the last evaluation) is classified all but perfectly.
    `lr`: the configured peak lr (params' lr), for the suggestion; NaN: the highest logged one."""
    ends = train_loss_ends(train_rows)
    if ends is None:
        return Finding(False, "no finite train loss logged: underfitting cannot be judged")
    start, end, count = ends
    level = UNDERFIT_FRACTION * prior
    if end > level:
        why = (
            f"final train loss {_fmt(end)} stays above {_fmt(level)} (always predicting the train label "
            f"prior scores {_fmt(prior)})"
        )
    elif count >= 2 * SMOOTH_WINDOW and end > start * (1 - UNDERFIT_MIN_DROP):
        why = f"train loss plateaued: {_fmt(start)} at the start, {_fmt(end)} at the end"
    else:
        return Finding(False)
    if train_sample_accuracy >= UNDERFIT_FITTED_ACCURACY:
        return Finding(
            False,
            f"{why}, over {count} logged steps, but the train sample is classified at "
            f"{train_sample_accuracy:.3f}: fitted, not underfitting",
        )
    return Finding(True, f"{why}, over {count} logged steps", _raise_lr_or_epochs(train_rows, lr, lrs))


# --- instability -------------------------------------------------------------------------------


def find_spikes(losses: Sequence[float]) -> list[tuple[int, float, float]]:
    """(index, loss, running median) for each second-half loss far above the median just before it."""
    late = range(max(len(losses) // 2, 3), len(losses))  # 3: a median needs a few values behind it
    medians = {i: median(losses[max(0, i - RUNNING_WINDOW) : i]) for i in late}
    residuals = [losses[i] - medians[i] for i in late]
    centre = median(residuals) if residuals else 0.0
    spread = 1.4826 * median(abs(r - centre) for r in residuals) if residuals else 0.0
    swing = max(MIN_SWING, SPIKE_SIGMAS * spread)
    return [
        (i, losses[i], medians[i])
        for i in late
        if losses[i] > SPIKE_FACTOR * medians[i] and losses[i] - medians[i] > swing
    ]


def find_oscillation(losses: Sequence[float]) -> tuple[float, float] | None:
    """(mean step-to-step change, median level) when the second half swings up and down widely."""
    tail = list(losses[len(losses) // 2 :])
    if len(tail) < 4:
        return None
    steps = [b - a for a, b in zip(tail, tail[1:], strict=False)]
    amplitude, level = mean(abs(d) for d in steps), median(tail)
    flips = sum(a * b < 0 for a, b in zip(steps, steps[1:], strict=False)) / (len(steps) - 1)
    if amplitude > max(OSC_AMPLITUDE * level, MIN_SWING) and flips >= OSC_SIGN_CHANGES:
        return amplitude, level
    return None


def _non_finite(rows: Sequence[Row], key: str) -> list[Row]:
    return [r for r in rows if not math.isfinite(_num(r.get(key)))]


def check_unstable(train_rows: Sequence[Row], val_rows: Sequence[Row]) -> Finding:
    """A NaN/inf loss anywhere, or late spikes or wide oscillation in the train loss."""
    lr = _lr_text(peak_lr(train_rows))
    tip = f"lower lr (peak {lr}), raise warmup (e.g. 0.1-0.2), keep max_grad_norm: 1.0"
    for key, rows in (("train_loss", train_rows), ("val_loss", val_rows)):
        bad = _non_finite(rows, key)
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            return Finding(True, f"{key} is not finite ({bad[0].get(key)}) at {_where(bad[0])}{more}", tip)
    if not train_rows:
        # The train loss is logged every logging_steps optimizer steps: a shorter run logs none.
        return Finding(
            False, "no train loss logged (fewer optimizer steps than logging_steps): instability cannot be judged"
        )
    losses = _column(train_rows, "train_loss")
    spikes = find_spikes(losses)
    if spikes:
        i, loss, med = max(spikes, key=lambda s: s[1] - s[2])  # a difference: the median may be 0
        evidence = f"train loss spiked to {_fmt(loss)} at {_where(train_rows[i])} over a running median"
        return Finding(True, f"{evidence} of {_fmt(med)} ({len(spikes)} spike(s) in all)", tip)
    wobble = find_oscillation(losses)
    if wobble:
        amplitude, level = wobble
        evidence = f"train loss oscillates in the second half: mean swing {_fmt(amplitude)} around {_fmt(level)}"
        return Finding(True, evidence, tip)
    return Finding(False)


# --- collapse ----------------------------------------------------------------------------------


def one_class_signature(accuracy: float, f1: float, majority_rate: float | None = None) -> str | None:
    """Which one-class predictor ("all-positive", "all-negative") binary scores betray, or None.

    Predicting class 1 everywhere makes accuracy the positive rate p and F1 = 2p / (1 + p) (MRPC dev:
    0.684 and 0.812), so the pair betrays it even with the label balance unknown. F1 = 0 means no
    positive pair is ever found. A known majority rate m must match too: accuracy is then m or 1 - m.
    """
    if (
        majority_rate is not None
        and min(abs(accuracy - majority_rate), abs(accuracy + majority_rate - 1)) > COLLAPSE_TOL
    ):
        return None
    if f1 <= COLLAPSE_TOL:
        return "all-negative"
    if abs(f1 - 2 * accuracy / (1 + accuracy)) <= COLLAPSE_TOL:
        return "all-positive"
    return None


def final_scores(val_rows: Sequence[Row], final: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """(accuracy, F1) of the kept model: the final metrics, else the last evaluation's (NaN if neither)."""
    last = val_rows[-1] if val_rows else {}
    scores = {"accuracy": last.get("val_accuracy"), "f1": last.get("val_f1"), **(final or {})}
    return _num(scores.get("accuracy")), _num(scores.get("f1"))


def last_step(train_rows: Sequence[Row]) -> int | None:
    steps = _finite(_column(train_rows, "step"))
    return int(max(steps)) if steps else None


def _fix_collapse(
    lr: float, steps: int | None = None, smallest_share: float | None = None, lrs: LrRange = FULL_UPDATE
) -> str:
    """What to try against a one-class model; `smallest_share` (the smallest class's share of train)
    is given for a run that does not weigh its classes yet."""
    high = math.isfinite(lr) and lr > lrs.high
    weigh = (
        f"train's smallest class is {smallest_share:.0%} of its rows: weigh the classes (class_weights: balanced); "
        if smallest_share is not None and smallest_share < IMBALANCED_SHARE
        else ""
    )
    if steps is not None and steps < FEW_STEPS and not high:
        return weigh + (
            f"only {steps} optimizer steps: too few for a new head to learn more than the majority class; "
            "train on more rows (max_train_samples) or for more epochs, aiming at a few hundred steps"
        )
    if not high:
        return weigh + f"check the labels (every class in train, mapped right); then try a lower lr ({lrs.good})"
    return weigh + f"lower lr (peak {_lr_text(lr)}) to {lrs.good}; check the train labels hold every class"


def check_collapsed(
    val_rows: Sequence[Row],
    final: Mapping[str, Any] | None = None,
    predicted_share: Mapping[str, Any] | None = None,
    majority_rate: float | None = None,
    lr: float = math.nan,
    steps: int | None = None,
    smallest_share: float | None = None,
    lrs: LrRange = FULL_UPDATE,
) -> Finding:
    """The model predicts one class: from the predicted shares if given, else from accuracy and F1."""
    if predicted_share:
        label, share = max(((k, _num(v)) for k, v in predicted_share.items()), key=lambda kv: kv[1])
        if share >= COLLAPSE_SHARE:
            return Finding(
                True,
                f"predicts class {label} for {share:.1%} of validation examples",
                _fix_collapse(lr, steps, smallest_share, lrs),
            )
        return Finding(False)
    accuracy, f1 = final_scores(val_rows, final)
    if not (math.isfinite(accuracy) and math.isfinite(f1)):
        return Finding(False, "no validation accuracy and F1: collapse cannot be judged")
    kind = one_class_signature(accuracy, f1, majority_rate)
    if kind is None:
        return Finding(False)
    rate = f", at the majority-class rate {majority_rate:.3f}" if majority_rate is not None else ""
    evidence = f"val accuracy {accuracy:.3f} and F1 {f1:.3f} are what an {kind} predictor scores{rate}"
    return Finding(True, evidence, _fix_collapse(lr, steps, smallest_share, lrs))


# --- near the majority baseline ----------------------------------------------------------------


def baseline_margin(majority_rate: float, n_validation: int) -> float:
    """How far above the majority rate an accuracy on n rows must be to count as learned (BASELINE_Z SEs)."""
    return BASELINE_Z * math.sqrt(majority_rate * (1 - majority_rate) / n_validation)


def needed_accuracy(majority_rate: float, n_validation: int) -> float:
    """The lowest accuracy on n rows that always predicting the majority class (right with probability
    m per row) reaches by chance no more often than BASELINE_Z standard errors would allow (one-sided,
    0.13%): an exact binomial test. Where n (1 - m) is large it is the normal line, m + baseline_margin;
    where it is small (a 95/5 split of 200 rows) the normal line asks for more than chance explains
    (0.996 instead of 0.995 there, which flagged a model with one error). Above 1, (n + 1) / n, where
    even every row right is that likely by chance: no score on these rows can clear the line."""
    alpha = 0.5 * math.erfc(BASELINE_Z / math.sqrt(2))
    m, n = majority_rate, n_validation
    log_m, log_rest, log_n = math.log(m), math.log1p(-m), math.lgamma(n + 1)
    tail = 0.0
    for k in range(n, -1, -1):  # P(X >= k), adding the terms from the top
        log_pmf = log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_m + (n - k) * log_rest
        tail += math.exp(log_pmf)
        if tail > alpha:
            return (k + 1) / n
    return 0.0


def balanced_accuracy(confusion: Sequence[Sequence[int]]) -> tuple[float, float, float]:
    """(balanced accuracy, its chance level, the margin it must clear) from a confusion matrix (rows: the
    true class, columns: the predicted one). Balanced accuracy is the mean recall over the k classes that
    validation holds; any prediction that ignores the text scores 1/k on average. The margin is BASELINE_Z
    standard errors of it for a predictor that picks a class uniformly at random: sqrt(sum over classes of
    (1/k)(1 - 1/k) / n_c) / k."""
    rows = [(row[c], sum(row)) for c, row in enumerate(confusion) if sum(row)]
    k = len(rows)
    if k < 2:
        return math.nan, math.nan, math.nan
    recall = mean(hit / n for hit, n in rows)
    se = math.sqrt(sum((1 / k) * (1 - 1 / k) / n for _, n in rows)) / k
    return recall, 1 / k, BASELINE_Z * se


class BaselineTest(NamedTuple):
    """What check_near_baseline compares: a score, what ignoring the text scores, and the line between."""

    what: str  # "accuracy", or balanced accuracy for a class-weighted run
    baseline: str  # the predictor that ignores the text
    score: float
    level: float  # that predictor's score
    needed: float  # the line: the lowest score as unlikely by chance as BASELINE_Z standard errors (may be > 1)
    n: int  # validation rows
    smallest: int  # rows outside the majority class (accuracy), or in the smallest class (balanced accuracy)
    one_miss: float  # the best score with one row wrong: any row (accuracy), one of the smallest class (balanced)
    no_miss_elsewhere: bool  # balanced accuracy: even one wrong row of the largest class falls under the line


def baseline_test(
    val_rows: Sequence[Row],
    final: Mapping[str, Any] | None = None,
    majority_rate: float | None = None,
    n_validation: int | None = None,
    confusion: Sequence[Sequence[int]] | None = None,
) -> BaselineTest | None:
    """The near-baseline comparison for these inputs; None where a score, a level or a line is missing."""
    if confusion is not None:
        score, level, margin = balanced_accuracy(confusion)
        sizes = [sum(row) for row in confusion if sum(row)]
        if len(sizes) < 2:
            return None
        needed, k = level + margin, len(sizes)
        what = "balanced accuracy (the mean recall per class, what class_weights: balanced trains for)"
        baseline, n, smallest = "a prediction that ignores the text", sum(sizes), min(sizes)
        one_miss, other_miss = 1 - 1 / (k * smallest), 1 - 1 / (k * max(sizes))
    else:
        score, _ = final_scores(val_rows, final)
        level = majority_rate if majority_rate is not None else math.nan
        n = n_validation or 0
        if not (n and 0 < level < 1):
            return None
        needed = needed_accuracy(level, n)
        what, baseline, smallest = "accuracy", "always predicting the majority class", n - round(level * n)
        one_miss = other_miss = (n - 1) / n
    if not (math.isfinite(score) and math.isfinite(needed)):
        return None
    return BaselineTest(what, baseline, score, level, needed, n, smallest, one_miss, other_miss < needed - 1e-9)


def baseline_judged(test: BaselineTest) -> bool:
    """Whether a score under the line says anything: it does where a model with one wrong row could clear
    the line, not where only every row right clears it (one row decides) or nothing can (the line above 1).
    A score on or above the line is judged in any case: it is as unlikely by chance as the line asks."""
    # The same k/n, computed here and in the metrics, may differ in the last bit.
    return test.score >= test.needed - 1e-9 or test.one_miss >= test.needed - 1e-9


def _too_few(test: BaselineTest) -> str:
    """The small_data problem of a validation split on which the baseline check cannot judge."""
    plural = "row" if test.smallest == 1 else "rows"
    if test.what == "accuracy":
        return f"validation holds only {test.smallest} {plural} outside its majority class: too few to tell"
    return f"validation's smallest class has {test.smallest} {plural}: too few to tell"


def check_near_baseline(
    val_rows: Sequence[Row],
    final: Mapping[str, Any] | None = None,
    majority_rate: float | None = None,
    n_validation: int | None = None,
    n_train: int | None = None,
    confusion: Sequence[Sequence[int]] | None = None,
) -> Finding:
    """Validation accuracy not clearly above what always predicting the majority class scores; given the
    confusion matrix (a run trained for balanced accuracy: class_weights: balanced), balanced accuracy
    not clearly above chance, since such a run gives up plain accuracy for the smaller classes. Where the
    validation split is too small for the line to tell a model from the baseline (baseline_judged), a note
    says so instead, and flags nothing."""
    return judge_near_baseline(baseline_test(val_rows, final, majority_rate, n_validation, confusion), n_train)


def judge_near_baseline(test: BaselineTest | None, n_train: int | None = None) -> Finding:
    """check_near_baseline's finding from its comparison (baseline_test), which diagnose also hands to
    check_small_data."""
    if test is None or test.score >= test.needed - 1e-9:
        return Finding(False)
    what, score, level, n, needed = test.what, test.score, test.level, test.n, test.needed
    if not baseline_judged(test):
        held = "outside the majority class" if what == "accuracy" else "in the smallest class"
        if needed > 1 + 1e-9:
            shown = f" ({needed:.3f})" if what != "accuracy" else ""  # (n + 1) / n is no score: not shown
            takes = f"more than every row right{shown}: no score on these rows can clear it"
        elif what == "accuracy" or test.no_miss_elsewhere:
            takes = "every row right: one wrong row decides"
        else:
            takes = "every row of the smallest class right: one wrong row of the smallest class decides"
        return Finding(
            False,
            f"val {what} {score:.3f} against the {level:.3f} of {test.baseline} cannot be judged: {n} validation "
            f"rows, only {test.smallest} {held}, and a line as unlikely by chance as {BASELINE_Z:g} standard "
            f"errors takes {takes}; whether the model learned more than the label balance is unknown until "
            "validation holds more rows, above all of its smaller classes (a larger validation_split, or a "
            "validation file)",
        )
    where = "below" if score < level else "not clearly above"
    evidence = (
        f"val {what} {score:.3f} is {where} the {level:.3f} of {test.baseline}: on {n} validation rows "
        f"that takes {needed:.3f} (as unlikely by chance as {BASELINE_Z:g} standard errors)"
    )
    rows = f" (train has {n_train} rows)" if n_train else ""
    return Finding(
        True,
        evidence,
        f"the model has learned little beyond the label balance: add labeled training rows{rows}, and check "
        "that each label belongs to its text (shifted or shuffled labels look like this); until then do not "
        "rely on its predictions",
    )


# --- too little data ---------------------------------------------------------------------------


def check_small_data(
    n_validation: int | None, train_counts: Mapping[str, int] | None, baseline: BaselineTest | None = None
) -> Finding:
    """Splits too small for their scores and curves to mean anything; given `baseline`, the near-baseline
    comparison, also a validation split with too few rows of its smaller classes for that to judge."""
    problems, fixes = [], []
    if n_validation is not None and n_validation < MIN_VALIDATION_ROWS:
        move = 100 / n_validation if n_validation else math.inf
        problems.append(f"validation has {n_validation} rows: one row moves accuracy by {move:.1f} points")
    if baseline is not None and not baseline_judged(baseline):
        problems.append(f"{_too_few(baseline)} a model from {baseline.baseline}")
    if problems:
        fixes.append(
            f"hold out more validation rows, at least {MIN_VALIDATION_ROWS} and more than a few of each class "
            "(a larger validation_split, or a validation file)"
        )
    few = {name: n for name, n in (train_counts or {}).items() if n < MIN_TRAIN_PER_CLASS}
    if few:
        listed = first_few([f"{name} ({n})" for name, n in few.items()], show=str)
        problems.append(f"train has fewer than {MIN_TRAIN_PER_CLASS} rows of class(es) {listed}")
        fixes.append(f"add labeled train rows ({MIN_TRAIN_PER_CLASS}+ per class)")
    if not problems:
        return Finding(False)
    return Finding(
        True,
        "; ".join(problems),
        "; ".join(fixes) + "; until then read these scores and curves as anecdotes, not evidence",
    )


# --- public entry points -----------------------------------------------------------------------


def overfitting(train_rows: Sequence[Row], val_rows: Sequence[Row], n_validation: int | None = None) -> Finding:
    """Either symptom: the validation loss rising, or the train-sample accuracy pulling away."""
    by_loss, by_gap = check_overfitting(train_rows, val_rows), check_accuracy_gap(val_rows, n_validation)
    if by_loss.flagged or not by_gap.evidence:
        return by_loss
    if by_gap.flagged:
        return by_gap
    return by_loss._replace(evidence="; ".join(e for e in (by_loss.evidence, by_gap.evidence) if e))


def diagnose(
    train_rows: Sequence[Row],
    val_rows: Sequence[Row],
    final: Mapping[str, Any] | None = None,
    predicted_share: Mapping[str, Any] | None = None,
    *,
    majority_rate: float | None = None,
    prior: float = math.log(2),
    n_validation: int | None = None,
    train_counts: Mapping[str, int] | None = None,
    lr: float | None = None,
    confusion: Sequence[Sequence[int]] | None = None,
    adapters: bool = False,
) -> dict:
    """Flags, evidence and suggestions for one run, JSON-ready (no NaN: only strings and booleans).

    `prior` is the loss of always predicting the train label prior (see prior_loss); the default, ln 2,
    is a balanced binary task's. `n_validation` and `train_counts` (rows per class), when given, are
    checked for being too small to judge by. `lr` is the configured peak lr (params' lr); without it,
    the highest logged one, which a short run's sparse logging can put well below the peak. `confusion`
    (validation, rows: true class) is given for a run trained for balanced accuracy (class_weights:
    balanced): its baseline check then reads balanced accuracy instead of accuracy. `adapters`: trained
    with LoRA (peft: lora), whose stable lr range is higher: the lr advice follows it.
    """
    lrs = ADAPTERS if adapters else FULL_UPDATE
    peak = lr if lr is not None else peak_lr(train_rows)
    counts = [c for c in (train_counts or {}).values() if c]
    # The smallest class's share of train, for a run that does not weigh classes (confusion is None).
    unweighted_share = min(counts) / sum(counts) if len(counts) > 1 and confusion is None else None
    baseline = baseline_test(val_rows, final, majority_rate, n_validation, confusion)  # near_baseline, small_data
    findings = {
        "collapsed": check_collapsed(
            val_rows, final, predicted_share, majority_rate, peak, last_step(train_rows), unweighted_share, lrs
        ),
        "near_baseline": judge_near_baseline(baseline, sum(train_counts.values()) if train_counts else None),
        "unstable": check_unstable(train_rows, val_rows),
        "underfitting": check_underfitting(
            train_rows, prior, peak, _num(val_rows[-1].get("train_sample_accuracy")) if val_rows else math.nan, lrs
        ),
        "overfitting": overfitting(train_rows, val_rows, n_validation),
        "small_data": check_small_data(n_validation, train_counts, baseline),
    }
    under, over = findings["underfitting"], findings["overfitting"]
    if under.flagged and over.flagged:
        # Overfitting is fitting train beyond what carries over to validation; underfitting is not fitting
        # train. Both at once tell the user to train more and to stop earlier, so one is kept, and the
        # train loss decides which: still near the level of ignoring the text, the model has not fitted
        # train (a validation score that gets worse is noise or another cause, not memorising); well
        # below it and flat (a plateau), it has, and more lr or epochs would feed the overfitting.
        ends = train_loss_ends(train_rows)
        if ends is not None and ends[1] > UNDERFIT_FRACTION * prior:
            findings["overfitting"] = Finding(
                False,
                "not reported beside the underfitting: the train loss stayed near the level of ignoring the "
                f"text, so training has barely fitted train as a whole; {over.evidence}",
            )
        else:
            findings["underfitting"] = Finding(
                False,
                "not reported beside the overfitting: the train loss is well below the level of ignoring the "
                f"text, so the model fitted train, and more lr or epochs would feed the overfitting; {under.evidence}",
            )
    if findings["collapsed"].flagged:
        # A one-class model scores the majority rate by definition: the collapse says it all.
        findings["near_baseline"] = Finding(False)
    if findings["collapsed"].flagged and findings["underfitting"].flagged:
        # The flat loss is the collapse's symptom: "more lr or epochs" would contradict its fix.
        findings["underfitting"] = findings["underfitting"]._replace(suggestion="fix the collapse first")
    if findings["near_baseline"].flagged and findings["underfitting"].flagged:
        # Training that has not fitted train explains a score near the baseline: its fix comes first.
        findings["near_baseline"] = findings["near_baseline"]._replace(
            suggestion="fix the underfitting first; if the score stays near the baseline, add labeled training "
            "rows and check that each label belongs to its text"
        )
    problems = [p for p in PATTERNS if findings[p].flagged]
    return {
        "verdict": ", ".join(p.replace("_", " ") for p in problems) or "ok",
        **{p: findings[p].flagged for p in PATTERNS},
        "evidence": {p: f.evidence for p, f in findings.items() if f.evidence},
        "suggestions": {p: f.suggestion for p, f in findings.items() if f.flagged and f.suggestion},
    }


def format_report(diagnosis: Mapping[str, Any]) -> str:
    """A few lines for the end of a run: the verdict, then each problem's evidence and suggestion."""
    evidence, suggestions = diagnosis.get("evidence", {}), diagnosis.get("suggestions", {})
    flagged = [p for p in PATTERNS if diagnosis.get(p)]
    if not flagged:
        lines = ["Diagnosis: ok (no collapse, instability, underfitting or overfitting in the curves)"]
    else:
        lines = [f"Diagnosis: {diagnosis.get('verdict', ', '.join(flagged))}"]
    for p in flagged:
        lines.append(f"  {p}: {evidence.get(p, '(no evidence recorded)')}")
        if p in suggestions:
            lines.append(f"    try: {suggestions[p]}")
    lines += [f"  note ({p}): {evidence[p]}" for p in PATTERNS if p in evidence and p not in flagged]
    return "\n".join(lines)


def model_warnings(diagnosis: Mapping[str, Any]) -> dict[str, str]:
    """The evidence of each UNRELIABLE finding a diagnosis flagged: what the model folder carries."""
    evidence = diagnosis.get("evidence", {})
    return {p: evidence.get(p, "(no evidence recorded)") for p in UNRELIABLE if diagnosis.get(p)}
