import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gradbalance
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
    plain = tmp_path / "plain"
    plain.touch()
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # as open() makes it, not 0o600


@pytest.mark.parametrize("name, options", [("pcgrad", {"seed": 0}), ("nash-mtl", {})])
def test_toy_objectives_conflict_and_the_combiner_reaches_the_pareto_set(name, options):
    import torch

    import gradbalance

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
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1  # a broken installation, but the listing is whole
    rows = [line.split()[:4] for line in result.stdout.splitlines() if line.strip()]
    assert ["pcgrad", "(!)", "combiner", "gradbalance"] in rows
    assert ["pcgrad", "(!)", "combiner", "pcgrad-fork"] in rows
    assert ["gradvac", "combiner", "gradbalance"] == next(r[:3] for r in rows if r[0] == "gradvac")
    assert "(!) 2 combiners are named 'pcgrad': such a name is unavailable" in result.stdout
    assert "Traceback" not in result.stderr


# The default demo's printed endpoints (f1, f2) as the per-combiner loop of the first demo and
# the batched runner with autograd and torch.optim.Adam printed them, before the two-task
# closed forms and the closed-form toy gradients.
_RECORDED_ENDPOINTS = {
    ("aligned-mtl", (-8.5, 7.5)): (-5.301, -19.270),
    ("aligned-mtl", (-8.5, -5.0)): (-15.092, -15.092),
    ("aligned-mtl", (9.0, 9.0)): (-19.578, -5.226),
    ("aligned-mtl", (-7.5, -0.5)): (-11.968, -17.448),
    ("aligned-mtl", (9.0, -1.0)): (-18.959, -8.351),
    ("cagrad", (-8.5, 7.5)): (-7.601, -18.787),
    ("cagrad", (-8.5, -5.0)): (-15.059, -15.124),
    ("cagrad", (9.0, 9.0)): (-15.957, -3.643),
    ("cagrad", (-7.5, -0.5)): (-14.907, -15.247),
    ("cagrad", (9.0, -1.0)): (-15.184, -14.995),
    ("fairgrad", (-8.5, 7.5)): (-7.603, -19.167),
    ("fairgrad", (-8.5, -5.0)): (-1.743, -19.966),
    ("fairgrad", (9.0, 9.0)): (-19.239, -7.316),
    ("fairgrad", (-7.5, -0.5)): (-8.399, -18.945),
    ("fairgrad", (9.0, -1.0)): (-19.709, -4.803),
    ("gradvac", (-8.5, 7.5)): (-4.742, -16.524),
    ("gradvac", (-8.5, -5.0)): (-14.713, -15.456),
    ("gradvac", (9.0, 9.0)): (-17.070, -5.110),
    ("gradvac", (-7.5, -0.5)): (-15.082, -15.082),
    ("gradvac", (9.0, -1.0)): (-15.093, -15.089),
    ("imtl-g", (-8.5, 7.5)): (-8.770, -18.819),
    ("imtl-g", (-8.5, -5.0)): (-1.233, -19.980),
    ("imtl-g", (9.0, 9.0)): (-18.804, -8.816),
    ("imtl-g", (-7.5, -0.5)): (-8.475, -18.921),
    ("imtl-g", (9.0, -1.0)): (-19.762, -4.392),
    ("mean", (-8.5, 7.5)): (-9.228, -18.633),
    ("mean", (-8.5, -5.0)): (-15.091, -15.092),
    ("mean", (9.0, 9.0)): (-18.794, -8.677),
    ("mean", (-7.5, -0.5)): (-15.076, -15.076),
    ("mean", (9.0, -1.0)): (-15.088, -15.088),
    ("mgda", (-8.5, 7.5)): (-10.386, -18.217),
    ("mgda", (-8.5, -5.0)): (-0.413, -19.989),
    ("mgda", (9.0, 9.0)): (-18.274, -10.251),
    ("mgda", (-7.5, -0.5)): (-5.109, -19.666),
    ("mgda", (9.0, -1.0)): (-19.989, -0.555),
    ("nash-mtl", (-8.5, 7.5)): (-7.603, -19.167),
    ("nash-mtl", (-8.5, -5.0)): (-1.743, -19.966),
    ("nash-mtl", (9.0, 9.0)): (-19.239, -7.316),
    ("nash-mtl", (-7.5, -0.5)): (-8.399, -18.945),
    ("nash-mtl", (9.0, -1.0)): (-19.709, -4.803),
    ("pcgrad", (-8.5, 7.5)): (-6.272, -19.466),
    ("pcgrad", (-8.5, -5.0)): (-1.673, -19.968),
    ("pcgrad", (9.0, 9.0)): (-19.434, -5.960),
    ("pcgrad", (-7.5, -0.5)): (-11.372, -17.766),
    ("pcgrad", (9.0, -1.0)): (-19.344, -6.866),
    ("sum", (-8.5, 7.5)): (-9.228, -18.633),
    ("sum", (-8.5, -5.0)): (-15.091, -15.092),
    ("sum", (9.0, 9.0)): (-18.858, -8.455),
    ("sum", (-7.5, -0.5)): (-15.076, -15.076),
    ("sum", (9.0, -1.0)): (-15.088, -15.088),
    ("upgrad", (-8.5, 7.5)): (-6.272, -19.466),
    ("upgrad", (-8.5, -5.0)): (-1.673, -19.968),
    ("upgrad", (9.0, 9.0)): (-10.601, -3.040),
    ("upgrad", (-7.5, -0.5)): (-11.372, -17.766),
    ("upgrad", (9.0, -1.0)): (-19.344, -6.866),
}
# Starts whose endpoint rounding decides (benchmarks/demo_rounding.py): with the task gradients
# perturbed by 1e-15 relative (seeds 0 and 1), the recorded runner or the current one ended 1e-4
# to 21 away in f1 or f2 from these starts (paths along the valley floors' kinks). Every other
# start moved by at most 4.4e-4 (Nash-MTL and FairGrad from (-8.5, -5)), most by under 1e-7.
_ROUNDING_SENSITIVE = {
    ("cagrad", (-8.5, 7.5)),
    ("cagrad", (9.0, 9.0)),
    ("gradvac", (-8.5, 7.5)),
    ("gradvac", (-8.5, -5.0)),
    ("gradvac", (9.0, 9.0)),
    ("pcgrad", (9.0, 9.0)),
    ("upgrad", (9.0, 9.0)),
}


@pytest.mark.slow
def test_the_default_demo_runs_in_seconds_and_ends_where_it_did(tmp_path):
    # The real command, default arguments, in a fresh process as a user runs it (imports, the
    # batched run, the table and the figure). 10 s on an idle 2-core machine is the target; 30 s
    # leaves room for a loaded CI runner.
    root = Path(gradbalance.__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    out = tmp_path / "demo.png"
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gradbalance", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    wall = time.perf_counter() - began
    assert done.returncode == 0, done.stderr
    assert wall <= 30, f"the default demo took {wall:.1f} s"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = {}
    for line in done.stdout.splitlines():
        match = re.match(r"(\S+)\s+\((\S+), (\S+)\)\s+(\S+)\s+(\S+)\s", line)
        if match:
            start = (float(match[2]), float(match[3]))
            printed[(match[1], start)] = (float(match[4]), float(match[5]))
    assert printed.keys() == _RECORDED_ENDPOINTS.keys()
    for key, (f1, f2) in printed.items():
        assert math.isfinite(f1) and math.isfinite(f2), key
        if key not in _ROUNDING_SENSITIVE:
            # 1e-3 of drift (measured: at most 1.4e-5) plus the printed values' rounding.
            expected = _RECORDED_ENDPOINTS[key]
            assert abs(f1 - expected[0]) <= 2e-3 and abs(f2 - expected[1]) <= 2e-3, (key, (f1, f2), expected)
