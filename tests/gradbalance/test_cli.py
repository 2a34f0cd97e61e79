import pytest

from gradbalance import toy
from gradbalance.cli import main


def test_list_shows_names_sources_and_summaries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pcgrad" in out and "gradvac" in out and "combiner" in out
    assert "Projecting Conflicting Gradients" in out


def test_demo_writes_a_png_and_a_table(tmp_path, capsys):
    out = tmp_path / "sub" / "demo.png"
    assert main(["demo", "--steps", "200", "--out", str(out), "--combiners", "sum", "pcgrad"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert text.count("pcgrad") == len(toy.DEFAULT_STARTS)
    assert not list(out.parent.glob("*.png.tmp*"))


@pytest.mark.parametrize("name, options", [("pcgrad", {"seed": 0}), ("nash-mtl", {})])
def test_toy_objectives_conflict_and_the_combiner_reaches_the_pareto_set(name, options):
    import gradbalance
    import torch

    x = torch.tensor([[0.0, -8.0]], dtype=torch.float64, requires_grad=True)
    f = toy.objectives(x)
    g1, g2 = (torch.autograd.grad(f[t].sum(), x, retain_graph=True)[0] for t in range(2))
    assert torch.dot(g1.flatten(), g2.flatten()) < 0  # the two objectives pull apart
    run = toy.optimize(gradbalance.create(name, **options), starts=[(-7.5, -0.5)], steps=3000)
    start, end = run.losses[0, 0], run.losses[-1, 0]
    assert torch.all(end < start)  # both objectives improved
    assert abs(run.path[-1, 0, 1].item() + 8.2) < 0.5  # on the Pareto set's floor


def test_unknown_combiner_in_demo_is_reported():
    with pytest.raises(Exception, match="available"):
        main(["demo", "--steps", "5", "--combiners", "nope"])
