"""`textclf`: the project's commands that are not DVC stages.

    textclf predict INPUT [--model data/model|data/onnx] [--output FILE] [--backend torch|onnx|onnx-int8]
    textclf export [--model data/model] [--output data/onnx]
    textclf compare [EXPERIMENT ...]
    textclf tune [--space tune.yaml] [--trials 12] [--jobs 1] [--storage URL] ...

Each has --help. Bad input ends in one `error: ...` line and exit code 1.
"""

import argparse
import signal
import sys
import threading
from pathlib import Path

from textclf.errors import InputError
from textclf.paths import EXPORT, MODEL


def predict(args: argparse.Namespace) -> None:
    from textclf.allocator import keep_freed_memory
    from textclf.predict import predict_file

    keep_freed_memory()

    # Each backend's default folder is where the pipeline writes it: the evaluate stage, or `textclf export`.
    default = EXPORT if args.backend.startswith("onnx") else MODEL
    folder = Path(args.model) if args.model else default
    source = args.input or input_after_columns(args.text_columns)
    predict_file(source, folder, args.output, args.backend, args.batch_size, args.text_columns)


def input_after_columns(columns: list[str] | None) -> str:
    """INPUT written after --text-columns, which takes every word after it: `--text-columns text in.csv`
    (the order the usage line shows) or `--text-columns text -`. Taken back where it names a file or -."""
    from textclf.predict import INPUT_FORMATS

    last = columns[-1] if columns and len(columns) > 1 else None
    if last is not None and (last == "-" or Path(last).suffix.lower() in INPUT_FORMATS or Path(last).is_file()):
        return columns.pop()
    after = ", before --text-columns, which takes every word after it" if columns else ""
    raise InputError(f"predict: INPUT is missing: give the file to classify (or - for stdin){after}.")


def export(args: argparse.Namespace) -> None:
    from textclf.export import INT8_AGREEMENT, export

    report = export(Path(args.model), Path(args.output), check=not args.no_check)
    print(f"export: {args.output}/model.onnx (fp32) and model.int8.onnx (dynamic int8 quantization)")
    if "not_checked" in report:
        print(f"export: not checked: {report['not_checked']}")
        return
    for kind in ("torch_fp32", "onnx_fp32", "onnx_int8"):
        r = report[kind]
        scores = f", accuracy {r['accuracy']:.4f}, f1 {r['f1']:.4f}" if "f1" in r else ""
        share = f"{r['agreement_with_torch']:.2%} of {report['rows']} rows"
        print(f"export: {kind}: agrees with PyTorch on {share}{scores}")
    if report["onnx_int8"]["agreement_with_torch"] < INT8_AGREEMENT:
        print(
            f"WARNING: the int8 model agrees with PyTorch on fewer than {INT8_AGREEMENT:.0%} of the "
            "validation rows: serve the fp32 ONNX model (--backend onnx) instead.",
            file=sys.stderr,
        )


def compare(args: argparse.Namespace) -> None:
    from textclf.compare import compare

    print(compare(args.experiments or None))


def tune(args: argparse.Namespace) -> None:
    from textclf.tune import summary, tune

    study = tune(
        Path(args.space), args.trials, args.timeout, args.jobs, args.study, args.storage, args.metric,
        args.direction, args.seed, not args.no_prune,
    )  # fmt: skip
    print(summary(study, args.metric))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="textclf", description="Commands of the textclf pipeline that are not DVC stages."
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        help="classify new text with a trained model",
        usage="textclf predict [-h] INPUT [--model MODEL] [--output OUTPUT] [--backend {torch,onnx,onnx-int8}] "
        "[--batch-size BATCH_SIZE] [--text-columns COLUMN [COLUMN ...]]",
        description="Classify the rows of INPUT with a trained model folder. Writes, in input order, the row "
        "number, the predicted label name and id, and the probability of every class.",
    )
    p.add_argument(
        "input",
        nargs="?",  # required: input_after_columns finds it where --text-columns took it
        metavar="INPUT",
        help="csv, tsv, json, jsonl or parquet with the model's text columns; - reads stdin: one text "
        "per line (a tab-separated pair for pair models)",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"trained model folder (default: {MODEL}; with the onnx backends {EXPORT}, where export writes)",
    )
    p.add_argument("--output", default=None, help="output file, format by extension (default: TSV on stdout)")
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "onnx-int8"],
        default="torch",
        help="torch (bf16 where supported), or an export folder's onnx / onnx-int8 model",
    )
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default: 64)")
    p.add_argument(
        "--text-columns", nargs="+", default=None, metavar="COLUMN", help="override the model's text columns"
    )
    p.set_defaults(func=predict)

    e = sub.add_parser(
        "export",
        help="export the trained model to ONNX (fp32 and int8)",
        description="Write model.onnx and a dynamically quantized model.int8.onnx, with the files that "
        "describe them, and check them against PyTorch on the validation split when run in the pipeline's "
        "repository.",
    )
    e.add_argument("--model", default=str(MODEL), help=f"trained model folder (default: {MODEL})")
    e.add_argument("--output", default=str(EXPORT), help=f"export folder (default: {EXPORT})")
    e.add_argument("--no-check", action="store_true", help="skip the agreement check on validation")
    e.set_defaults(func=export)

    c = sub.add_parser(
        "compare",
        help="compare experiments over seeds, with a paired bootstrap",
        description="Group experiments by their params except the seed; show each group's mean and spread of "
        "validation accuracy, F1 and loss; for each group against the first, a paired bootstrap over the "
        "validation rows and seeds: the F1 difference, its 95% interval, and how likely it is real.",
    )
    c.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="names (default: all of this commit's)")
    c.set_defaults(func=compare)

    t = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna; every trial is a DVC experiment",
        description="An Optuna study (TPE) over the search space file; each trial is queued as a DVC "
        "experiment named <study>-<number> and run by DVC's queue workers. The study is kept in a database "
        "(SQLite under .tune/, or --storage), so a stopped search resumes where it stopped.",
    )
    t.add_argument("--space", default="tune.yaml", help="search space file (default: tune.yaml)")
    t.add_argument("--trials", type=int, default=12, help="finished trials the study should reach (default: 12)")
    t.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    t.add_argument("--jobs", type=int, default=1, help="trials at once: DVC queue workers (default: 1)")
    t.add_argument("--study", default="search", help="study name; trials are experiments <study>-<n>")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: sqlite:///.tune/studies.db)")
    t.add_argument("--metric", default="f1", help="objective: a key of metrics/eval.json, or file:key")
    t.add_argument("--direction", choices=["maximize", "minimize"], default=None, help="default: by metric")
    t.add_argument(
        "--seed", type=int, default=0, help="seed of the TPE sampler (offset by the trials the study holds: a restart "
        "draws new points)"
    )  # fmt: skip
    t.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    t.set_defaults(func=tune)
    return ap


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a job scheduler) ends a command as Ctrl-C does: its temporary output removed."""


def terminated(signum, frame) -> None:
    raise Terminated


def environment_on_path() -> None:
    """`.venv/bin/textclf` run without activating its environment: compare and tune run dvc, and DVC runs
    the stages with `python`; both are the environment's, so its bin folder goes first on PATH."""
    import os

    bin_dir = Path(sys.executable).parent
    on_path = [Path(folder) for folder in os.environ.get("PATH", "").split(os.pathsep) if folder]
    if (bin_dir / "dvc").exists() and bin_dir not in on_path:
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    environment_on_path()
    if threading.current_thread() is threading.main_thread():  # signals are handled there only
        signal.signal(signal.SIGTERM, terminated)
    try:
        args.func(args)
    except InputError as e:
        sys.exit(f"error: {e}")
    except FileNotFoundError as e:
        if e.filename != "dvc":
            raise
        # compare and tune run the dvc CLI
        sys.exit("error: dvc is not on PATH: activate the project's environment first (. .venv/bin/activate)")
    except BrokenPipeError:  # `textclf predict ... | head`
        sys.stderr.close()
    except KeyboardInterrupt as e:
        sys.exit(143 if isinstance(e, Terminated) else 130)


if __name__ == "__main__":
    main()
