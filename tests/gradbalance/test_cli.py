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
    captured = capsys.readouterr()
    text = captured.out
    assert text.count("pcgrad") == len(toy.DEFAULT_STARTS)
    assert "Pareto gap" in text.splitlines()[0]
    # Progress on stderr as the run goes (every 250 steps here: just the last one), then the end.
    assert "sum, pcgrad; 5 starts each, 200 Adam steps at lr=0.01" in captured.err
    assert "step 200/200" in captured.err
    assert list(out.parent.iterdir()) == [out]  # renamed into place, no temporary file left


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


def test_unknown_combiner_in_demo_is_a_usage_error_before_any_run(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--steps", "5", "--out", str(out), "--combiners", "sum", "pc-grad"]) == 2
    captured = capsys.readouterr()
    assert "no combiner named 'pc-grad' (did you mean 'pcgrad'?); available:" in captured.err
    assert captured.out == "" and not out.exists()  # nothing ran, nothing written


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "argument --steps: must be a positive number, got '0'"),
        (["--steps", "-3"], "argument --steps: must be a positive number"),
        (["--steps", "1.5"], "argument --steps: invalid int value: '1.5'"),
        (["--lr", "-1"], "argument --lr: must be a positive number"),
        (["--lr", "nan"], "argument --lr: must be a positive number"),
    ],
)
def test_bad_demo_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--combiners", "sum", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_a_directory_as_out(tmp_path, capsys):
    assert main(["demo", "--steps", "5", "--out", str(tmp_path), "--combiners", "sum"]) == 2
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_list_shows_both_claimants_of_a_clashed_name_and_everything_else(tmp_path):
    import os
    import subprocess
    import sys

    info = tmp_path / "pcgrad_fork-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pcgrad-fork\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gradbalance]\npcgrad_fork = pcgrad_fork\n")
    (tmp_path / "pcgrad_fork.py").write_text(
        "import gradbalance\n\n"
        "class MyPCGrad(gradbalance.Sum):\n    name = 'pcgrad'\n\n"
        "@gradbalance.hookimpl\ndef gradbalance_combiners():\n    return [MyPCGrad]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "gradbalance", "list"],
        env=dict(os.environ, PYTHONPATH=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1  # a broken installation, but the listing is whole
    rows = [line.split()[:4] for line in result.stdout.splitlines() if line.strip()]
    assert ["pcgrad", "(!)", "combiner", "gradbalance"] in rows
    assert ["pcgrad", "(!)", "combiner", "pcgrad-fork"] in rows
    assert ["gradvac", "combiner", "gradbalance"] == next(r[:3] for r in rows if r[0] == "gradvac")
    assert "(!) 2 combiners are named 'pcgrad': such a name is unavailable" in result.stdout
    assert "Traceback" not in result.stderr
