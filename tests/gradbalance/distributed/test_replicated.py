"""ReplicatedTaskGradients on 2 gloo ranks against one process on the global batch."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from gradbalance.distributed import ReplicatedTaskGradients

from _multitask import STEPS, TASKS, combiners, make_model, reference, sgd, train
from _ranks import assert_identical_across_ranks, rank_job

#: A plain model, DistributedDataParallel (task backwards under no_sync), a plain model whose
#: rows are all-reduced asynchronously as each task finishes, and the ZeRO-style combine
#: (reduce-scatter, combine a column slice, all-gather), without and with overlap.
WRAPS = ("plain", "ddp", "overlap", "scatter", "scatter overlap")


@rank_job
def _train_all(rank: int, world: int, out: str) -> None:
    results = {}
    for wrap in WRAPS:
        # Rank 1's PCGrad has another seed: the first combine must hand it rank 0's state.
        for name, combiner in combiners(seed=0 if rank == 0 else 123).items():
            model = make_model()
            forward = model
            no_sync = None
            if wrap == "ddp":
                ddp = DistributedDataParallel(model)
                forward, no_sync = ddp, ddp.no_sync
            buffer = ReplicatedTaskGradients(
                model.trunk,
                TASKS,
                replicated=model,
                overlap=wrap.endswith("overlap"),
                scatter=wrap.startswith("scatter"),
            )

            def check() -> None:
                assert_identical_across_ranks(model.parameters(), f"{wrap} {name}")

            kwargs = {"no_sync": no_sync} if no_sync else {}
            train(
                model,
                forward,
                buffer,
                combiner,
                name,
                range(STEPS),
                sgd(model),
                rank,
                world,
                after_step=check,
                **kwargs,
            )
            results[wrap, name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            results[wrap, name, "unused head grad"] = model.heads[TASKS].weight.grad
    torch.save(results, f"{out}/rank{rank}.pt")


def test_two_ranks_match_one_process_on_the_global_batch(rank_results):
    ranks = rank_results(_train_all)
    for name in combiners():
        want = reference(name)[0].state_dict()
        for wrap in WRAPS:
            got = ranks[0][wrap, name]
            for key in want:
                torch.testing.assert_close(
                    got[key], want[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{wrap} {name} {key}: {m}"
                )
                assert torch.equal(got[key], ranks[1][wrap, name][key])
            assert ranks[0][wrap, name, "unused head grad"] is None
