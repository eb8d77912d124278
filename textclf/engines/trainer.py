"""The `engine: trainer` engine: the Hugging Face Trainer, configured from the params."""

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import has_length

from textclf.averaging import averaging
from textclf.console import Progress, early_stop_line, eval_line
from textclf.curves import write_progress
from textclf.engines.base import (
    LOSS_KEY,
    EpochLengthSampler,
    Interrupt,
    Job,
    Outcome,
    best_metric_key,
    is_better,
    train_sample,
)
from textclf.inference import length_order
from textclf.metrics import classification_metrics
from textclf.model import param_groups, training_loss
from textclf.params import Params
from textclf.precision import precision_args


def compute_metrics(pred: EvalPrediction) -> dict:
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return classification_metrics(np.argmax(logits, axis=-1), pred.label_ids, num_labels=logits.shape[-1])


def training_args(p: Params, precision: str, output_dir: Path) -> TrainingArguments:
    metric, greater = best_metric_key(p)
    # Evaluate (and checkpoint, so the best evaluation's weights can be kept) every eval_steps, or once
    # per epoch. The Trainer reads a value below 1 as a fraction of the run.
    strategy = "steps" if p.eval_steps else "epoch"
    steps = (p.eval_steps if p.eval_steps < 1 else int(p.eval_steps)) if p.eval_steps else None
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=p.lr,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.eval_batch_size,
        gradient_accumulation_steps=p.grad_accum,
        weight_decay=p.weight_decay,  # the Trainer exempts biases and LayerNorm weights
        warmup_steps=p.warmup,
        lr_scheduler_type=p.lr_scheduler,
        max_grad_norm=p.max_grad_norm,
        seed=p.seed,
        **precision_args(precision),
        eval_strategy=strategy,
        save_strategy=strategy,
        **({"eval_steps": steps, "save_steps": steps} if steps else {}),
        # 2, not 1: with load_best_model_at_end the best is always kept, and at 1 the Trainer deletes the
        # latest checkpoint at the end of train(), also the one an interrupt has just saved.
        save_total_limit=2,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience counter survives a resume
        load_best_model_at_end=True,
        metric_for_best_model=metric.removeprefix("eval_"),
        greater_is_better=greater,
        train_sampling_strategy="group_by_length" if p.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=p.logging_steps,
        disable_tqdm=True,  # ReportProgress below prints instead
        report_to=[t.strip() for t in p.report_to.split(",")] if p.report_to != "none" else "none",
    )


class StopOnInterrupt(TrainerCallback):
    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run restores the control flags saved with the checkpoint ("save", and "stop" after an
        # interrupt): start from clean ones, as an uninterrupted run does.
        control._new_training()
        control._new_epoch()
        control._new_step()

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupt.everywhere():
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.interrupt.requested and not whole_epoch(state.epoch):
            # The Trainer still ends the cut-short epoch: no evaluation of a part epoch (it would be a
            # validation row at epoch 1.3), only the checkpoint. An epoch whose last step was the one
            # interrupted is whole: it is evaluated before the checkpoint, or no run would ever
            # evaluate it (the resumed one starts at the next epoch) and its model could not be kept.
            control.should_evaluate = False


def whole_epoch(epoch: float | None) -> bool:
    # The Trainer counts epoch + batches done / batches: exactly epoch + 1.0 once all are done.
    return epoch is not None and float(epoch).is_integer()


class ReportProgress(TrainerCallback):
    """A bar (terminal) or a line per tenth of the run (anything else), and one line per evaluation,
    in place of the Trainer's own bar and dicts of numbers-as-strings; and at every evaluation the
    curves and metrics/progress.json rewritten, so a running experiment shows its progress."""

    def __init__(self, p: Params) -> None:
        self.p, self.progress, self.best, self.best_loss, self.sample = p, None, None, None, {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(state.max_steps, state.global_step, enabled=state.is_world_process_zero)
        key, greater = best_metric_key(self.p)
        for logged in state.log_history:  # a resumed run's evaluations before the interruption
            value = logged.get(key)
            if value is not None and is_better(value, self.best, greater, logged.get(LOSS_KEY), self.best_loss):
                self.best, self.best_loss = value, logged.get(LOSS_KEY)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.progress.loss = logs["loss"]

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.step(state.global_step)
        if state.global_step == state.max_steps:
            # The Trainer logs the train loss every logging_steps only: the last, shorter window (all of a
            # run shorter than logging_steps) would be missing from the curve and metrics/train.json.
            control.should_log = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        if "eval_train_sample_loss" in metrics:  # scored just before validation: keep for its line
            self.sample = metrics
            return
        key, greater = best_metric_key(self.p)
        value = metrics.get(key)
        best = value is not None and is_better(value, self.best, greater, metrics.get(LOSS_KEY), self.best_loss)
        self.best, self.best_loss = (value, metrics.get(LOSS_KEY)) if best else (self.best, self.best_loss)
        scores = {k.removeprefix("eval_validation_"): v for k, v in metrics.items()}
        where = (state.epoch, self.p.epochs, state.global_step, state.max_steps)
        sample = self.sample.get("eval_train_sample_accuracy")
        self.progress.say(eval_line(*where, scores, self.progress.loss, best, sample))
        if state.is_world_process_zero:
            write_progress(state.log_history, state.max_steps, key, greater, done=False)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.close()


class EarlyStoppingOnValidation(EarlyStoppingCallback):
    """The Trainer's early stopping, skipping the train sample's evaluation: that one has no validation
    metric, and the stock callback says "early stopping is disabled" at each (while it still works on
    validation's)."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and f"eval_{args.metric_for_best_model}" in metrics:
            super().on_evaluate(args, state, control, metrics=metrics, **kwargs)

    def out_of_patience(self) -> bool:
        return self.early_stopping_patience_counter >= self.early_stopping_patience

    def on_epoch_begin(self, args, state, control, **kwargs):
        # Resumed from the checkpoint of the evaluation that ran out of patience (the run was interrupted
        # or killed right after it): the Trainer restores the count but not the stop, and trained on to
        # the next evaluation. Stop, and PipelineTrainer._run_epoch trains no further.
        if self.out_of_patience():
            control.should_training_stop = True


class UpdateAverage(TrainerCallback):
    """`ema`: the average moves after each optimizer step (before that step's evaluation)."""

    def __init__(self, average) -> None:
        self.average = average

    def on_step_end(self, args, state, control, **kwargs):
        self.average.update()


class PipelineTrainer(Trainer):
    """The Trainer with eight changes:
    - a class-weighted and/or label-smoothed loss while training, when asked for (evaluation keeps the
      plain loss, so validation losses compare across class_weights and label_smoothing settings);
    - length-grouped batches in an order fixed by the seed and epoch (EpochLengthSampler), so a run
      resumed mid-epoch trains on the same batches as an uninterrupted one;
    - evaluation batches follow the order of the evaluated rows (sorted by length), not that sampler;
    - the train loss accumulated since the last log is saved with each checkpoint and restored on
      resume, so the resumed run's curve has the same values as the uninterrupted run's;
    - with `ema`, evaluation (and so the choice of the best checkpoint) runs on the averaged weights,
      which each checkpoint saves beside the live ones (textclf.averaging);
    - its per-step FLOP estimate (for `total_flos`) counts the model's parameters once, not at every step;
    - an evaluation that equals the best metric at a lower validation loss becomes the best (is_better),
      as in the loop engine; early stopping still counts only metric gains.
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it by grad_accum itself

    def __init__(self, *args, pipeline_params: Params, class_weights=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline_params, self.class_weights = pipeline_params, class_weights
        self._parameters = None  # counted at the first step (floating_point_ops)
        self.average = averaging(self.model, pipeline_params.ema)
        if self.average is not None:
            self.add_callback(UpdateAverage(self.average))

    def floating_point_ops(self, inputs) -> int:
        # The Trainer's 6 x tokens x parameters, whose parameter count walks every module at every step
        # (0.4 s of a default MRPC run, sampled). The count does not change during training.
        main = getattr(self.model, "main_input_name", "input_ids")
        if self._parameters is None:
            self._parameters = super().floating_point_ops({main: torch.ones(1)}) // 6
        return 6 * inputs[main].numel() * self._parameters if main in inputs else 0

    def evaluate(self, *args, **kwargs):
        if self.average is None:
            return super().evaluate(*args, **kwargs)
        with self.average.swapped():
            return super().evaluate(*args, **kwargs)

    def _determine_best_metric(self, metrics, trial) -> bool:
        # The Trainer's strict comparison, then the tie-break: the state before this evaluation is the
        # best metric and, in the log, the loss of the evaluation at best_global_step.
        best, best_step = self.state.best_metric, self.state.best_global_step
        if super()._determine_best_metric(metrics, trial):
            return True
        key, greater = best_metric_key(self.pipeline_params)
        best_loss = next(
            (r[LOSS_KEY] for r in self.state.log_history if r.get("step") == best_step and LOSS_KEY in r), None
        )
        if not is_better(metrics[key], best, greater, metrics.get(LOSS_KEY), best_loss):
            return False
        self.state.best_global_step = self.state.global_step  # the checkpoint saved next is the best
        return True

    def create_optimizer(self, model=None):
        # Per-group learning rates (head_lr_scale, layer_lr_decay); the defaults keep the Trainer's own.
        p = self.pipeline_params
        if self.optimizer is None and (p.head_lr_scale != 1 or p.layer_lr_decay != 1):
            target = self.model if model is None else model
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
            self.optimizer = optimizer_cls(param_groups(target, p), **kwargs)
        return super().create_optimizer(model)

    def _run_epoch(self, *args, **kwargs):
        if self.control.should_training_stop:  # set before the epoch: EarlyStoppingOnValidation.on_epoch_begin
            return None
        return super()._run_epoch(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        ds = train_dataset if train_dataset is not None else self.train_dataset
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return EpochLengthSampler(batch, [len(x) for x in ds["input_ids"]], self.args.seed)

    def _get_eval_sampler(self, eval_dataset):
        # transformers 5 evaluates with a LengthGroupedSampler too when training groups by length: random
        # groups of rows, each padded to its longest. That undid the length order the evaluated sets are
        # given in (so that each batch pads little): half again as much time per evaluation on MRPC.
        return SequentialSampler(eval_dataset) if eval_dataset is not None and has_length(eval_dataset) else None

    def _loss_window_file(self, checkpoint: str) -> Path:
        return Path(checkpoint) / f"loss_window_{self.args.process_index}.json"

    # The two RNG-state hooks are where a checkpoint saves and a resume restores the exact training
    # state (the Trainer calls the loader just before the first step of the resumed run).
    def _save_rng_state(self, output_dir) -> None:
        super()._save_rng_state(output_dir)
        window = {"loss_sum": self._tr_loss.item(), "last_logged_step": self._globalstep_last_logged}
        self._loss_window_file(output_dir).write_text(json.dumps(window))
        if self.average is not None and self.args.should_save:
            self.average.save(Path(output_dir))

    def _load_rng_state(self, checkpoint) -> None:
        super()._load_rng_state(checkpoint)
        saved = self._loss_window_file(checkpoint) if checkpoint else None
        if saved is not None and saved.exists():
            window = json.loads(saved.read_text())
            self._tr_loss = torch.tensor(window["loss_sum"], device=self.args.device)
            self._globalstep_last_logged = window["last_logged_step"]
        if self.average is not None and checkpoint:
            self.average.load(Path(checkpoint))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        smoothing = self.pipeline_params.label_smoothing
        if (self.class_weights is None and not smoothing) or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        loss = training_loss(outputs.logits, inputs["labels"], self.class_weights, smoothing)
        return (loss, outputs) if return_outputs else loss


def train_with_trainer(job: Job) -> Outcome:
    p = job.p
    callbacks = [StopOnInterrupt(job.interrupt), ReportProgress(p)]
    if p.early_stopping_patience:
        callbacks.append(EarlyStoppingOnValidation(p.early_stopping_patience))
    validation = job.data["validation"]
    evaluated = {"validation": validation.select(length_order(validation))}
    sample = train_sample(job.data["train"], p.train_eval_rows)
    if sample is not None:  # first, so that validation's line can show the train accuracy
        evaluated = {"train_sample": sample.select(length_order(sample))} | evaluated
    trainer = PipelineTrainer(
        model=job.model,
        args=training_args(p, job.precision, job.checkpoints),
        train_dataset=job.data["train"],
        eval_dataset=evaluated,
        data_collator=DataCollatorWithPadding(job.tokenizer),
        processing_class=job.tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        class_weights=job.class_weights,
        pipeline_params=p,
    )
    for quiet in (ProgressCallback, PrinterCallback):  # their bars and printed dicts: ReportProgress instead
        trainer.remove_callback(quiet)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(job.resume) if job.resume else None)
    state = trainer.state
    # Found again after train(): a resume replaces the callback with one restored from the checkpoint.
    stopper = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingOnValidation)), None)
    if stopper and stopper.out_of_patience() and trainer.is_world_process_zero():
        print(early_stop_line(best_metric_key(p)[0], stopper.early_stopping_patience_counter), flush=True)
    if trainer.average is not None and state.best_model_checkpoint and not job.interrupt.requested:
        trainer.average.apply(Path(state.best_model_checkpoint))  # the best evaluation's averaged weights
    best_epoch = next(
        (
            r["epoch"]
            for r in state.log_history
            if r.get("step") == state.best_global_step and "eval_validation_loss" in r
        ),
        None,
    )
    return Outcome(
        model=trainer.model,
        log_history=state.log_history,
        global_step=state.global_step,
        train_seconds=time.perf_counter() - start,
        best_epoch=best_epoch,
        is_main=trainer.is_world_process_zero(),
        interrupted=job.interrupt.requested,
    )
