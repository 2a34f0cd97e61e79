"""``minbert-tasks``: train, evaluate, predict, analyze, presets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from minbert_tasks.config import load_config
    from minbert_tasks.training import train

    overrides = list(args.set or [])
    for flag, key in ((args.data_dir, "data_dir"), (args.model, "model"), (args.device, "device")):
        if flag is not None:
            overrides.append(f"{key}={json.dumps(flag)}")
    if args.strict:
        overrides.append("strict_data=true")
    if args.resume:
        run_dir = Path(args.resume)
        config = None
    else:
        config = load_config(args.config or "default", overrides)
        run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.monotonic()
    scores = train(config, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    _print_scores(scores)
    print(f"run: {run_dir}  ({(time.monotonic() - started) / 60:.1f} min)")
    return 0


def _print_scores(scores: dict[str, float]) -> None:
    from minbert_tasks.evaluation import summary_score

    for task, value in scores.items():
        print(f"  {task:<6} {value:.4f}")
    overall = summary_score(scores)
    if overall is not None:
        print(f"  overall {overall:.4f}")


def _evaluate(args: argparse.Namespace) -> int:
    from minbert_tasks.checkpointing import load, resolve_checkpoint
    from minbert_tasks.evaluation import evaluate, summary_score
    from minbert_tasks.system import load_run_model

    file = resolve_checkpoint(args.checkpoint)
    model, tokenizer, setups, config = load_run_model(load(file), file.parent)
    dev = {}
    for name, setup in setups.items():
        result = setup.spec.read(args.split, data_dir=args.data_dir or config.data_dir, strict=args.strict)
        if result.skipped:
            print(result.report())
        dev[name] = list(result.examples)
    scores, _ = evaluate(model, setups, dev, tokenizer, batch_size=args.batch_size)
    _print_scores(scores)
    if args.out:
        Path(args.out).write_text(json.dumps({"scores": scores, "overall": summary_score(scores)}, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from minbert_tasks.prediction import predict_file

    rows = predict_file(args.checkpoint, args.task, args.input, args.out, batch_size=args.batch_size, strict=args.strict)
    print(f"wrote {rows} predictions to {args.out}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from minbert_tasks.analysis import analyze_run
    from minbert_tasks.checkpointing import load, resolve_checkpoint
    from minbert_tasks.evaluation import evaluate
    from minbert_tasks.system import load_run_model

    run = Path(args.run)
    file = resolve_checkpoint(run)
    model, tokenizer, setups, config = load_run_model(load(file), file.parent)
    dev = {name: list(s.spec.read("dev", data_dir=args.data_dir or config.data_dir).examples) for name, s in setups.items()}
    for name, task in ((t.name, t) for t in config.tasks):
        if task.dev_limit is not None:
            dev[name] = dev[name][: task.dev_limit]
    _, predictions = evaluate(model, setups, dev, tokenizer, batch_size=128)
    for path in analyze_run(run, predictions, out_dir=args.out_dir):
        print(f"wrote {path}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from minbert_tasks.config import preset_names

    for name in preset_names():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minbert-tasks", description="Multi-task minBERT on SST-5, Quora and STS-B.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a multi-task model")
    train.add_argument("--config", help="a TOML file or a preset name (default: the 'default' preset)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    train.add_argument("--run-dir", help="where to write the run (default: runs/<timestamp>)")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    train.add_argument("--data-dir", help="folder of the task files (default: $MINBERT_DATA or ../shared/data)")
    train.add_argument("--model", help="a local BERT folder (default: the bundled all-MiniLM-L6-v2)")
    train.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: auto)")
    train.add_argument("--strict", action="store_true", help="malformed data rows are errors")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    ev = sub.add_parser("evaluate", help="score a run's best checkpoint on a split")
    ev.add_argument("--checkpoint", required=True, metavar="RUN_OR_FILE")
    ev.add_argument("--split", default="dev")
    ev.add_argument("--data-dir")
    ev.add_argument("--batch-size", type=int, default=128)
    ev.add_argument("--strict", action="store_true")
    ev.add_argument("--out", help="also write the scores as JSON here")
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", help="write id,prediction CSV for one task's file")
    pr.add_argument("--checkpoint", required=True, metavar="RUN_OR_FILE")
    pr.add_argument("--task", required=True)
    pr.add_argument("--input", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--batch-size", type=int, default=128)
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
    try:
        return int(args.func(args))
    except (DataError, FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"minbert-tasks {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
