"""Habits every tool shares: --help works, usage errors are one line (exit 2), output locations
are --out (old spellings: hidden aliases with one note), lists are comma-separated, and --resume
means resume."""
from __future__ import annotations

import glob
import importlib.util
import os
import runpy
import subprocess
import sys

import pytest

from tests.helpers import DEMO_CONFIG, REPO, run_train, tiny_overrides

TOOLS = sorted(glob.glob(os.path.join(REPO, "tools", "*.py")) +
               glob.glob(os.path.join(REPO, "tools", "*.sh")))


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}",
                                                  os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in a tool look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", TOOLS, ids=[os.path.basename(p) for p in TOOLS])
def test_help_of_every_tool(path, capsys, monkeypatch) -> None:
    """``TOOL --help`` exactly as the command line runs it (its ``__main__`` block)."""
    if path.endswith(".sh"):
        res = subprocess.run(["bash", path, "--help"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and res.stdout.startswith("usage:")
        return
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(path, run_name="__main__")
    out = capsys.readouterr().out
    assert exc.value.code in (0, None) and out.startswith("usage:"), out[:300]


def test_list_components_prints_registries_without_help() -> None:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "list_components.py"),
                          "--registry", "losses"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and "losses.clip_infonce" in res.stdout
    assert "backbones." not in res.stdout
    assert {"export.py", "list_components.py", "train_net.py", "eval_net.py"} <= {
        os.path.basename(p) for p in TOOLS}


@pytest.mark.parametrize("tool,argv", [
    ("export", []), ("train_net", ["--config-file", "x.py", "--resume", "--no-resume"]),
    ("eval_net", ["--config-file", "x.py", "--checkpoint", "a", "--model", "openclip:b"]),
    ("report", ["--bogus"]), ("benchmark", ["towers", "--steps", "0"])])
def test_usage_errors_are_one_line(tool, argv, capsys) -> None:
    module = load_tool(tool)
    with pytest.raises(SystemExit) as exc:
        module.parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and err.rstrip().endswith("(see --help)")


def test_out_is_the_spelling_and_old_ones_are_noted(capsys) -> None:
    for tool, argv, old in (
            ("visualize_attention", ["--checkpoint", "c", "--image", "i", "--caption", "t"],
             "--output-dir"),
            ("eval_net", ["--config-file", "c.py", "--checkpoint", "c"], "--output-dir"),
            ("sweep", ["--config-file", "c.py"], "--sweep-dir"),
            ("benchmark", ["towers"], "--json")):
        module = load_tool(tool)
        argv = (["towers"] if tool == "benchmark" else []) + [a for a in argv if a != "towers"]
        assert module.parse_args([*argv, "--out", "new"]).out == "new"
        assert capsys.readouterr().err == ""
        assert module.parse_args([*argv, old, "old"]).out == "old"
        assert capsys.readouterr().err == f"note: {old} is deprecated, use --out\n"


def test_lists_are_comma_separated() -> None:
    assert load_tool("report").parse_args(["a", "b", "--labels", "x,y"]).labels == ["x", "y"]
    assert load_tool("sweep").parse_args(["--metrics", "*R@1,loss"]).metrics == ["*R@1", "loss"]
    assert load_tool("eval_net").parse_args(
        ["--config-file", "c", "--checkpoint", "k", "--encoders", "student,teacher"]
    ).encoders == ["student", "teacher"]
    assert load_tool("benchmark_loader").parse_args(["--workers", "0,2"]).worker_list == [0, 2]


def _checkpoints(run_dir) -> list:
    return sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) if os.path.isdir(
        os.path.join(run_dir, "checkpoints")) else []


@pytest.mark.slow
def test_resume_semantics(tmp_path, synthetic_shards) -> None:
    """Auto-resume stays the default; ``--resume`` requires a checkpoint (``--resume key=value``
    keeps the override); ``--resume PATH`` starts from another run's checkpoint;
    ``--resume --no-resume`` is a usage error (test_usage_errors_are_one_line)."""
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    nothing = run_train(["--config-file", DEMO_CONFIG, "--resume",
                         *tiny_overrides(first, synthetic_shards)])
    assert nothing.returncode == 2
    assert nothing.stderr.strip().splitlines()[-1] == (
        f"error: --resume: no checkpoint in {first}/checkpoints to continue from; drop --resume "
        "to start a new run, or give --resume PATH")
    assert _checkpoints(first) == []
    ok = run_train(["--config-file", DEMO_CONFIG, *tiny_overrides(first, synthetic_shards, 2)])
    assert ok.returncode == 0, ok.stderr[-2000:]
    again = run_train(["--config-file", DEMO_CONFIG, "--resume",  # latest: nothing left to do
                       *tiny_overrides(first, synthetic_shards, 2)])  # (an override follows)
    assert again.returncode == 0 and "resumed at step 2" in open(f"{first}/log.txt").read()
    path = os.path.join(first, "checkpoints", "model_0000002.pth")
    other = run_train(["--config-file", DEMO_CONFIG, "--resume", path,
                       *tiny_overrides(second, synthetic_shards, 3)])
    assert other.returncode == 0, other.stderr[-2000:]
    assert f"resumed at step 2 from {path}" in open(f"{second}/log.txt").read()
    assert _checkpoints(second) == ["last_checkpoint", "model_0000003.pth"]


def _doc_commands():
    """``python tools/X.py ...`` lines of the code blocks of docs/cli.md and docs/models.md."""
    commands = []
    for doc in ("cli.md", "models.md"):
        text = open(os.path.join(REPO, "docs", doc)).read().replace("\\\n", " ")
        blocks = text.split("```")[1::2]
        commands += [(doc, line.strip()) for block in blocks for line in block.splitlines()
                     if line.strip().startswith("python tools/")]
    return commands


@pytest.mark.parametrize("doc,command", _doc_commands())
def test_documented_commands_parse(doc, command, capsys) -> None:
    import shlex

    argv = shlex.split(command)
    tool = load_tool(os.path.splitext(os.path.basename(argv[1]))[0])
    args = tool.parse_args(argv[2:])
    assert capsys.readouterr().err == "", f"{doc}: {command}"
    assert not any(str(o).startswith("-") for o in getattr(args, "opts", []) or [])
