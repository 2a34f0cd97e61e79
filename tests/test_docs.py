"""The documentation's code runs as written: the quickstart's loops, and the plugin guide's
example package (examples/inverse-norm) found through its entry point by its own tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "inverse-norm"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), flags=re.S)


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])


def _trains(block: str, loader: list, **names: object) -> dict:
    torch.manual_seed(0)
    model = Model()
    namespace = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "loader": loader}
    namespace.update(names)
    before = [p.detach().clone() for p in model.parameters()]
    exec(block, namespace)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "a parameter did not move"
    assert namespace["buffer"].rows.shape == (3, 4 * 8 + 8)
    return namespace


def test_quickstart_drop_in_loop_trains_encoder_and_heads():
    targets = [torch.randn(16, 1) for _ in range(3)]

    def task_losses(model, *batches):
        return [((model.heads[t](model.encoder(b)) - targets[t]) ** 2).mean() for t, b in enumerate(batches)]

    loader = [tuple(torch.randn(16, 4) for _ in range(3)) for _ in range(5)]
    _trains(python_blocks("quickstart.md")[0], loader, task_losses=task_losses)


def test_quickstart_shared_forward_loop_trains_encoder_and_heads():
    loader = [(torch.randn(16, 4), [torch.randn(16, 1) for _ in range(3)]) for _ in range(5)]
    _trains(python_blocks("quickstart.md")[1], loader, loss_fn=nn.functional.mse_loss)


def test_quickstart_matrix_example_runs(capsys):
    exec(python_blocks("quickstart.md")[2], {})
    assert "pcgrad" in capsys.readouterr().out


def test_plugin_example_package_passes_its_tests_once_installed(tmp_path):
    # What `pip install` leaves for importlib.metadata: a dist-info with the entry points.
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    info = tmp_path / f"inverse_norm-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()
        )
    )
    path = os.pathsep.join([str(tmp_path), str(EXAMPLE / "src"), str(ROOT)])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "24 passed" in result.stdout  # 4 tests + the conformance kit, 10 checks per option set


def _extensions():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import griffe_extensions
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return griffe_extensions


def test_docstring_roles_become_cross_references_resolved_in_scope():
    import griffe

    ext = _extensions()
    loader_extensions = griffe.load_extensions(ext.AttrsSignatures, ext.SphinxRoles)
    package = griffe.load("gradbalance", search_paths=[str(ROOT)], extensions=loader_extensions)
    doc = package["_buffer.TaskGradients"].docstring.value
    # :meth:`combine` inside TaskGradients names the class's own method.
    assert (
        '<autoref optional identifier="gradbalance._buffer.TaskGradients.combine"><code>combine</code>' in doc
    )
    assert ":meth:" not in doc and "Example::" not in doc and "```python" in doc
    # attrs classes get the __init__ attrs generates: PCGrad(seed=None, reduction='sum').
    init = package["combiners._pcgrad.PCGrad"].members["__init__"]
    assert [(p.name, p.default) for p in init.parameters][1:] == [("seed", "None"), ("reduction", "'sum'")]


def test_a_role_naming_nothing_is_reported(caplog):
    import griffe

    ext = _extensions()
    package = griffe.load("gradbalance", search_paths=[str(ROOT)])
    loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
    loader.modules_collection["gradbalance"] = package
    with caplog.at_level("WARNING"):
        assert (
            ext._resolve("TaskGradients.combine", package, loader)
            == "gradbalance._buffer.TaskGradients.combine"
        )
        assert ext._resolve("TaskGradients.combine_all", package, loader) is None
    assert "'TaskGradients.combine_all'" in caplog.text and "names nothing" in caplog.text


def test_prose_maths_is_escaped_but_emphasis_code_and_doctests_are_not():
    ext = _extensions()
    text = "g = ∇_x̃ f and x̃* = x + δ*, the *input* ``a_b*``\n>>> y = x_1 * 2"
    assert ext.rewrite(text, lambda target: target) == (
        "g = ∇\\_x̃ f and x̃\\* = x + δ\\*, the *input* ``a_b*``\n>>> y = x_1 * 2"
    )
