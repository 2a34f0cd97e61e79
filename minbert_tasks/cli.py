"""``minbert-tasks``: train, evaluate, predict, analyze, presets."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minbert_tasks.config import TrainConfig
    from minbert_tasks.evaluation import Example


def _train(args: argparse.Namespace) -> int:
    from minbert_tasks.config import load_config
    from minbert_tasks.distributed import DEFAULT_TIMEOUT_S, launched_rank
    from minbert_tasks.training import RunFinished, train

    overrides = list(args.set or [])
    for flag, key in ((args.data_dir, "data_dir"), (args.model, "model"), (args.device, "device")):
        if flag is not None:
            overrides.append(f"{key}={json.dumps(flag)}")
    if args.strict:
        overrides.append("strict_data=true")
    if args.resume:
        given = [
            name
            for name, value in (
                ("--config", args.config),
                ("--set", args.set),
                ("--run-dir", args.run_dir),
                ("--data-dir", args.data_dir),
                ("--model", args.model),
                ("--device", args.device),
                ("--strict", args.strict),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"--resume continues {args.resume} with the config saved there; "
                f"drop {', '.join(given)} (or start a new run with them)"
            )
        run_dir = Path(args.resume)
        config = None
    else:
        config = load_config(args.config or "default", overrides)
        _check_runnable(config)
        run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.monotonic()
    try:
        scores = train(
            config,
            run_dir,
            resume=bool(args.resume),
            progress=not args.no_progress,
            dist_timeout_s=args.dist_timeout or DEFAULT_TIMEOUT_S,
        )
    except RunFinished as exc:
        if launched_rank() == 0:
            print(exc)
        return 0
    if launched_rank() != 0:  # under torchrun rank 0 alone reports
        return 0
    _print_scores(scores)
    print(f"run: {run_dir}  ({(time.monotonic() - started) / 60:.1f} min)")
    return 0


def _check_runnable(config: TrainConfig) -> None:
    """Build the combiner and samplers and check the device before anything is written, so that
    a bad option is a one-line :class:`ConfigError` naming its key, not a traceback mid-setup."""
    import inspect

    import torch

    import gradbalance
    from minbert_tasks import plugins
    from minbert_tasks.config import ConfigError
    from minbert_tasks.training import combiner_options

    try:
        gradbalance.create(config.combiner, **combiner_options(config))
    except TypeError as exc:
        raise ConfigError(f"combiner_options: {exc}") from None
    for k, phase in enumerate(config.phases):
        sampler = plugins.get_sampler(phase.sampler)
        try:
            sampler(**phase.sampler_options)
        except TypeError as exc:
            accepted = ", ".join(inspect.signature(sampler).parameters) or "none"
            raise ConfigError(
                f"phases.{k}.sampler_options: {exc}; sampler {phase.sampler!r} accepts: {accepted}"
            ) from None
    if config.device != "auto":
        try:
            device = torch.device(config.device)
        except RuntimeError:
            raise ConfigError(
                f"device {config.device!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f'device {config.device!r}: CUDA is not available here (use device="cpu" or "auto")'
            )


def _print_scores(scores: dict[str, float]) -> float | None:
    """Print each task's dev metric and the overall score; return the overall score."""
    from minbert_tasks.evaluation import summary_score

    overall = summary_score(scores)
    for task, value in scores.items():
        print(f"  {task:<6} {value:.4f}")
    if overall is not None:
        print(f"  overall {overall:.4f}")
    return overall


def _evaluate(args: argparse.Namespace) -> int:
    from minbert_tasks.checkpointing import atomic_write_text, check_out_path, load, resolve_checkpoint
    from minbert_tasks.data import DataError
    from minbert_tasks.evaluation import evaluate
    from minbert_tasks.system import load_run_model

    if args.out is not None:
        check_out_path(args.out, "out.json")
    file = resolve_checkpoint(args.checkpoint)
    model, tokenizer, setups, config = load_run_model(load(file), file.parent)
    dev: dict[str, list[Example]] = {}
    for name, setup in setups.items():
        result = setup.spec.read(args.split, data_dir=args.data_dir or config.data_dir, strict=args.strict)
        if result.skipped:
            print(result.report())
        if not result.examples:
            raise DataError(f"{name} {args.split}: no examples read from {result.path}")
        dev[name] = list(result.examples)
    rows = {name: len(examples) for name, examples in dev.items()}
    print(f"{file}: {args.split} split, " + ", ".join(f"{name} {n} rows" for name, n in rows.items()))
    scores, _ = evaluate(model, setups, dev, tokenizer, batch_size=args.batch_size)
    overall = _print_scores(scores)
    if args.out:
        record = {
            "checkpoint": str(file.resolve()),
            "split": args.split,
            "rows": rows,
            "scores": scores,
            "overall": overall,
        }
        atomic_write_text(json.dumps(record, indent=2), args.out)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from minbert_tasks.prediction import predict_file

    rows = predict_file(
        args.checkpoint, args.task, args.input, args.out, batch_size=args.batch_size, strict=args.strict
    )
    print(f"wrote {rows} predictions to {args.out}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    import warnings

    from minbert_tasks.analysis import AnalysisSkipped, analyze_run, read_metrics
    from minbert_tasks.checkpointing import load
    from minbert_tasks.evaluation import evaluate
    from minbert_tasks.system import load_run_model

    run = Path(args.run)
    if run.is_file():
        raise ValueError(f"analyze takes a run directory (the folder with metrics.jsonl), not a file: {run}")
    if not run.is_dir():
        raise FileNotFoundError(f"no run directory at {run}")
    read_metrics(run / "metrics.jsonl")  # a missing or malformed file fails before the slow part
    predictions = None
    file = run / "best.pt"
    if file.is_file():
        model, tokenizer, setups, config = load_run_model(load(file), run)
        data_dir = args.data_dir or config.data_dir
        dev: dict[str, list[Example]] = {
            name: list(s.spec.read("dev", data_dir=data_dir).examples) for name, s in setups.items()
        }
        for task in config.tasks:
            if task.dev_limit is not None:
                dev[task.name] = dev[task.name][: task.dev_limit]
        _, predictions = evaluate(
            model, setups, {k: v for k, v in dev.items() if v}, tokenizer, batch_size=128
        )
    else:
        print(f"{run} has no best.pt yet (no evaluation has finished): drawing the training curves only")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisSkipped)
        written = analyze_run(run, predictions, out_dir=args.out_dir)
    for warning in caught:
        print(warning.message)
    for path in written:
        print(f"wrote {path}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from minbert_tasks.config import preset_description, preset_names

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}".rstrip())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


_TRAIN_EPILOG = """\
short runs (any config value can be set with --set KEY=VALUE):
  --set max_steps=N                 stop after N optimizer steps
  --set time_budget_minutes=M       stop after M minutes of training
  --set tasks.sst.train_limit=N     read only the first N training examples of a task
  --set tasks.sst.dev_limit=N       evaluate on the first N dev examples of a task
  --set phases.0.epochs=N           epochs of the first phase
  --set seed=N                      data order, initialisation and combiner randomness
tasks are addressed by name (sst, para, sts); `minbert-tasks presets` lists the presets.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minbert-tasks", description="Multi-task minBERT on SST-5, Quora and STS-B."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a multi-task model",
        epilog=_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="a TOML file or a preset name (default: the 'default' preset)")
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    train.add_argument("--run-dir", help="where to write the run (default: runs/<timestamp>)")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    train.add_argument(
        "--data-dir",
        help="folder of the task files (default: $MINBERT_DATA, else the copy shipped in the package)",
    )
    train.add_argument("--model", help="a local BERT folder (default: the bundled all-MiniLM-L6-v2)")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: auto)")
    train.add_argument("--strict", action="store_true", help="malformed data rows are errors")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--dist-timeout",
        type=_positive_int,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for a missing peer before the job fails (default: 600)",
    )
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="score a run's best checkpoint on a split")
    ev.add_argument("--checkpoint", required=True, metavar="RUN_OR_FILE")
    ev.add_argument("--split", default="dev", help="which file of each task to score: dev (default) or train")
    ev.add_argument("--data-dir")
    ev.add_argument("--batch-size", type=_positive_int, default=128)
    ev.add_argument("--strict", action="store_true")
    ev.add_argument("--out", help="also write the scores as JSON here")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="write id,prediction CSV for one task's file")
    pr.add_argument("--checkpoint", required=True, metavar="RUN_OR_FILE")
    pr.add_argument("--task", required=True)
    pr.add_argument("--input", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--batch-size", type=_positive_int, default=128)
    pr.add_argument("--strict", action="store_true")
    pr.set_defaults(func=_predict)

    an = sub.add_parser("analyze", help="confusion matrices, STS errors and gradient cosines of a run")
    an.add_argument("run")
    an.add_argument("--data-dir")
    an.add_argument("--out-dir")
    an.set_defaults(func=_analyze)

    sub.add_parser("presets", help="list the bundled presets").set_defaults(func=_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from minbert_tasks.data import DataError

    args = build_parser().parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        code = int(args.func(args))
    except (DataError, OSError, ValueError, KeyError) as exc:
        from minbert_tasks.distributed import launched_rank

        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        rank = f" (rank {launched_rank()})" if world_size > 1 else ""
        print(f"minbert-tasks {args.command}{rank}: error: {message}", file=sys.stderr)
        code = 2
    if world_size > 1:
        from minbert_tasks.distributed import end_worker

        end_worker(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
