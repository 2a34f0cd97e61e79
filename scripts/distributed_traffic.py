"""Print the projected per-step traffic table of docs/distributed.md (tests check the page
holds exactly this output): bytes each GPU sends per step (ring algorithms) and the extra
communication time, BERT-base and BERT-large, T = 3, 10, 40 tasks, 8 and 64 GPUs.

    python scripts/distributed_traffic.py
"""

from __future__ import annotations

from gradbalance.distributed import StepTraffic, step_traffic

#: Assumed per-GPU bus bandwidth (bytes/s) and per-hop latency (s): 200 Gb/s InfiniBand-class.
BANDWIDTH = 25e9
LATENCY = 10e-6
MODELS = {"BERT-base": (12, 768, 3072), "BERT-large": (24, 1024, 4096)}
TASKS = (3, 10, 40)
GPUS = (8, 64)
HEAD_OUTPUTS = 2  # one linear head H -> 2 per task


def bert_size(layers: int, hidden: int, intermediate: int, vocab: int = 30522, positions: int = 512,
              types: int = 2) -> tuple[int, int]:
    """Parameters and parameter tensors of a BERT encoder with its pooler (Devlin et al. 2019)."""
    embeddings = (vocab + positions + types) * hidden + 2 * hidden
    layer = 4 * (hidden * hidden + hidden) + 2 * (hidden * intermediate) + intermediate + hidden + 4 * hidden
    pooler = hidden * hidden + hidden
    return embeddings + layers * layer + pooler, 5 + 16 * layers + 2


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


def table() -> str:
    header = ("| model | T | GPUs | DDP, one loss | replicated | + time | scatter | + time "
              "| FSDP2, one loss | sharded | + time | Gramians, S = 1 / per tensor | their time |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for model, shape in MODELS.items():
        shared, tensors = bert_size(*shape)
        for tasks in TASKS:
            heads = tasks * (shape[1] + 1) * HEAD_OUTPUTS
            modes = {m: step_traffic(m, shared=shared, heads=heads, tasks=tasks, segments=tensors)
                     for m in ("ddp", "replicated", "scatter", "fsdp", "sharded")}
            whole = step_traffic("sharded", shared=shared, heads=heads, tasks=tasks, segments=1)
            gramians = StepTraffic(small_all_reduce=modes["sharded"].small_all_reduce)
            for gpus in GPUS:
                sent = {m: _size(t.sent(gpus)) for m, t in modes.items()}
                time = {m: t.seconds(gpus, BANDWIDTH, LATENCY) for m, t in modes.items()}
                lines.append(
                    f"| {model} | {tasks} | {gpus} | {sent['ddp']} "
                    f"| {sent['replicated']} | {_ms(time['replicated'] - time['ddp'])} "
                    f"| {sent['scatter']} | {_ms(time['scatter'] - time['ddp'])} "
                    f"| {sent['fsdp']} | {sent['sharded']} | {_ms(time['sharded'] - time['fsdp'])} "
                    f"| {_size(whole.small_all_reduce)} / {_size(gramians.small_all_reduce)} "
                    f"| {_ms(gramians.seconds(gpus, BANDWIDTH, LATENCY))} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
