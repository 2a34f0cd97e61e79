"""``gradbalance list`` and ``gradbalance demo``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from .errors import GradbalanceError
from .plugins._default import create, default_registry, options, plugin_entries

if TYPE_CHECKING:
    from ._combiner import GradientCombiner
    from .toy import ToyRun


def _list(args: argparse.Namespace) -> int:
    rows = [("name", "kind", "source", "summary")]
    clashes: list[str] = []
    for kind in ("combiner", "regularizer"):
        conflicts = default_registry.conflicts(kind)
        listed = [(e, "") for e in plugin_entries(kind)]
        listed += [(e, " (!)") for claimants in conflicts.values() for e in claimants]
        for entry, mark in sorted(listed, key=lambda item: (item[0].name, item[0].source)):
            rows.append((entry.name + mark, kind, entry.source, entry.summary[:90]))
        clashes += [f"{len(c)} {kind}s are named {name!r}" for name, c in conflicts.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    if clashes:  # each claimant is listed above; the name works again once only one remains
        print(
            f"\n(!) {'; '.join(clashes)}: such a name is unavailable until all but one of its "
            "distributions are uninstalled or the classes renamed; the other names work"
        )
        return 1
    return 0


def _seeded(name: str) -> GradientCombiner:
    return create(name, **({"seed": 0} if "seed" in options(name) else {}))


def _demo(args: argparse.Namespace) -> int:
    from . import toy

    names = args.combiners or default_registry.available()
    if not names:
        print(
            "gradbalance demo: no combiners are installed (is gradbalance installed with pip?)",
            file=sys.stderr,
        )
        return 2
    if os.path.isdir(args.out):
        print(
            f"gradbalance demo: error: --out {args.out!r} is a directory; give a .png file", file=sys.stderr
        )
        return 2
    try:  # every name and option is checked before the first run
        combiners = [_seeded(name) for name in names]
    except (GradbalanceError, TypeError, ValueError) as exc:
        print(f"gradbalance demo: error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # tiny tensors: one thread, whatever the machine offers
    print(
        f"gradbalance demo: {', '.join(names)}; {len(toy.DEFAULT_STARTS)} starts each, "
        f"{args.steps} Adam steps at lr={args.lr}, all in one batched run",
        file=sys.stderr,
    )
    began = time.perf_counter()
    runs = toy.optimize_all(combiners, steps=args.steps, lr=args.lr, progress=_progress(args.steps, began))
    _print_table(runs, args.steps)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    # Write beside the target and rename, so an interrupted run never leaves half a PNG.
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # what open() gives a new file; mkstemp's is 0o600
    try:
        from ._demo_plot import plot

        plot(runs, tmp, toy.DEFAULT_STARTS)
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"\nwrote {args.out} ({time.perf_counter() - began:.1f} s)")
    return 0


def _progress(steps: int, began: float) -> Callable[[int], None]:
    """A progress bar on stderr (redrawn in place on a terminal, a line per update otherwise)."""
    tty = sys.stderr.isatty()

    def report(step: int) -> None:
        filled = 30 * step // steps
        line = f"  [{'#' * filled}{'.' * (30 - filled)}] step {step}/{steps}  {time.perf_counter() - began:5.1f} s"
        print(
            ("\r" + line) if tty else line,
            end="" if tty and step < steps else "\n",
            file=sys.stderr,
            flush=True,
        )

    return report


def _print_table(runs: Sequence[ToyRun], steps: int) -> None:
    from . import toy

    _, front = toy.pareto_set()
    header = (
        f"{'combiner':<12} {'start':>14} {'f1':>9} {'f2':>9} {'Pareto gap':>11} {'steps to converge':>18}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        gaps = toy.pareto_gap(run.losses[-1], front).tolist()
        for k, start in enumerate(toy.DEFAULT_STARTS):
            f1, f2 = run.losses[-1, k].tolist()
            conv = run.steps_to_converge[k]
            conv_text = str(conv) if conv is not None else f"> {steps}"
            print(
                f"{run.name:<12} {str(start):>14} {f1:9.3f} {f2:9.3f} {max(gaps[k], 0.0):11.3f} {conv_text:>18}"
            )


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradbalance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed combiners and regularizers").set_defaults(func=_list)
    demo = sub.add_parser("demo", help="optimize the two-objective toy problem with every combiner")
    demo.add_argument("--out", default="gradbalance-demo.png", help="PNG to write")
    demo.add_argument(
        "--steps", type=_positive(int), default=3000, help="Adam steps per combiner (default: 3000)"
    )
    demo.add_argument("--lr", type=_positive(float), default=0.01, help="Adam learning rate (default: 0.01)")
    demo.add_argument("--combiners", nargs="+", help="names to run (default: all installed)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GradbalanceError as exc:  # e.g. two installed plugins claiming one name
        print(f"gradbalance {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
