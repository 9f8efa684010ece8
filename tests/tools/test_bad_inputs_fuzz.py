"""Fuzzed overrides: 100 seeded malformed overrides (random keys, values of the wrong type,
unbalanced brackets, odd unicode, a missing ``=`` …) each give one ``error:`` line with exit
code 2, or a clean run; never a traceback. They run in this process through the CLI's own entry
(``run_cli(cli, parse_args(argv))`` of tools/train_net.py), a few also as real subprocesses."""
from __future__ import annotations

import importlib.util
import logging
import os
import random
from typing import List

import pytest
from omegaconf import DictConfig

from cosmos.config.overrides import all_keys
from cosmos.engine.defaults import load_config, run_cli
from tests.helpers import DEMO_CONFIG, TRAIN_NET, run_train, tiny_overrides

NUM_CASES = 100
JUNK = ["abc", "", " ", "1.5", "-7", "true", "none", "[1, 2", "{a: 1", "[[", "]]", "{", "}",
        "\"unterminated", "'x", "ünïcødé", "∞", "💥", "${nope}", "${train.seed", "1e400", "[]",
        "{}", "{_target_: nope.nothing}", "a=b", "\t", "0x10", "--", "\\", "%s", "[1, 'a']",
        "{a: [1, {b: }", "NaN", "\x00", "١٢٣"]


def _leaves(cfg) -> List[tuple]:
    """(key, current value) of the config's scalar and list leaves that a fuzz may break."""
    out = []
    for key in all_keys(cfg):
        if key.startswith(("train.output_dir", "dataloader.train.urls")):
            continue  # where the run writes / reads: kept valid
        node = cfg
        for seg in key.split("."):
            node = node[int(seg)] if not isinstance(node, DictConfig) else node[seg]
        if isinstance(node, str) and not key.endswith("_target_"):
            continue  # strings take any text
        if not isinstance(node, DictConfig):
            out.append((key, node))
    return out


def _wrong_for(value, rng: random.Random) -> str:
    """A value of another type than ``value``'s (or malformed)."""
    if isinstance(value, bool):
        pool = ["1", "0", "yes", "abc", "[true]", "none", "1.5"]
    elif isinstance(value, int):
        pool = ["abc", "1.5", "true", "[1]", "{a: 1}", "none", "", "∞", "1e400", "nan"]
    elif isinstance(value, float):
        pool = ["abc", "true", "[0.1]", "{a: 1}", "none", "", "💥", "0.1.2"]
    else:
        pool = JUNK
    return rng.choice(pool + JUNK[:8])


def _random_key(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz_.[]0123456789-ü€λ "
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))


def fuzz_cases(cfg, seed: int = 0, n: int = NUM_CASES) -> List[str]:
    rng = random.Random(seed)
    leaves = _leaves(cfg)
    cases = []
    for i in range(n):
        key, value = rng.choice(leaves)
        form = rng.randrange(9)
        if form <= 2:  # an existing key, a value of the wrong type
            case = f"{key}={_wrong_for(value, rng)}"
        elif form == 3:  # a random key
            case = f"{_random_key(rng)}={rng.choice(JUNK)}"
        elif form == 4:  # no '='
            case = rng.choice([key, _random_key(rng), f"+{key}", key + ":" + "1"])
        elif form == 5:  # empty key or odd key syntax
            case = rng.choice(["=5", "+=5", f"{key}..x=1", f"{key}[=1", f"{key}[0]=1",
                               f"{key}.=1", f".{key}=1", f"{key}=={rng.choice(JUNK)}"])
        elif form == 6:  # unbalanced brackets and quotes on a list or component
            case = key + "=" + rng.choice(["[1, 2", "{a: 1", "[{]", '"a', "[1, 2]]", "{{}"])
        elif form == 7:  # a new key (runs cleanly: nothing reads it)
            case = f"+train.fuzz_{i}={rng.choice(JUNK)}"
        else:  # a valid value: the run must be clean
            case = rng.choice([f"train.seed={rng.randint(0, 10 ** 6)}",
                               f"optimizer.lr={rng.uniform(1e-5, 1e-2):.3g}", "train.log_period=3"])
        cases.append(case)
    return cases


def _train_net():
    spec = importlib.util.spec_from_file_location("train_net_cli", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base(out: str, shards: str) -> List[str]:
    return ["--config-file", DEMO_CONFIG, *tiny_overrides(out, shards, 1), "evaluation={}",
            "train.checkpoint_period=0"]


def _check(code, stderr: str, case: str) -> str:
    assert "Traceback" not in stderr, (case, stderr[-2000:])
    if code in (0, None):
        return "ran"
    assert code == 2, (case, code, stderr[-2000:])
    lines = [x for x in stderr.strip().splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and stderr.strip().splitlines()[-1] == lines[0], (case, stderr)
    return "refused"


def test_fuzzed_overrides_give_one_line_or_a_clean_run(tmp_path, synthetic_shards,
                                                       capsys) -> None:
    train_net = _train_net()
    cfg = load_config(DEMO_CONFIG, tiny_overrides(str(tmp_path), synthetic_shards, 1))
    cases = fuzz_cases(cfg)
    assert len(cases) == NUM_CASES and len(set(cases)) > 80
    outcomes = []
    cosmos_logger = logging.getLogger("cosmos")
    for i, case in enumerate(cases):
        argv = _base(str(tmp_path / f"run{i}"), synthetic_shards) + [case]
        capsys.readouterr()
        code = None
        try:
            run_cli(train_net.cli, train_net.parse_args(argv))
        except SystemExit as exc:
            code = exc.code
        finally:
            for handler in list(cosmos_logger.handlers):  # one log file per run directory
                if isinstance(handler, logging.FileHandler):
                    cosmos_logger.removeHandler(handler)
                    handler.close()
        outcomes.append(_check(code, capsys.readouterr().err, case))
    assert outcomes.count("refused") >= 50 and outcomes.count("ran") >= 5, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 2])
def test_fuzzed_overrides_through_the_real_cli(tmp_path, synthetic_shards, index) -> None:
    cfg = load_config(DEMO_CONFIG, tiny_overrides(str(tmp_path), synthetic_shards, 1))
    valid = ("+train.fuzz", "train.seed=", "optimizer.lr=0", "train.log_period=3")
    malformed = [c for c in fuzz_cases(cfg) if not c.startswith(valid)]
    case = malformed[index * 7]
    res = run_train(_base(str(tmp_path / "run"), synthetic_shards) + [case])
    assert _check(res.returncode, res.stderr, case) == "refused", case
    assert not os.path.exists(tmp_path / "run" / "config.yaml")
