"""The command line, run as users run it: `python -m model.generate ...` in a subprocess.

Error messages are also checked in-process (each subprocess pays for importing torch). The
module is run with runpy, never imported as `model.generate`: importing the submodule would
replace the package's `model.generate` function with the module for the rest of the run.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import model
from model import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "model.generate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def cli_main(argv: list[str]) -> int:
    return runpy.run_module("model.generate")["main"](argv)


def test_cli_prints_the_prompt_and_the_sessions_continuation(tiny_checkpoint):
    prompt, settings = "café 🙂", dict(temperature=0.9, top_k=200, top_p=0.95)
    result = run_cli("--model", str(tiny_checkpoint), "--prompt", prompt, "--max-new-tokens", "20",
                     "--temperature", "0.9", "--top-k", "200", "--top-p", "0.95", "--seed", "2")
    assert result.returncode == 0, result.stderr
    gpt, tokenizer, _ = load_model(tiny_checkpoint)
    session = DecodingSession(gpt, tokenizer, seed=2)
    session.reset(prompt)
    records = list(session.generate(20, SamplingSettings(**settings)))
    assert result.stdout == prompt + session.generated_text + "\n"
    # This run forms characters from bytes of several tokens: printing token by token would
    # have shown U+FFFD instead.
    assert "".join(r.piece for r in records) != session.generated_text


def test_cli_show_probs_prints_one_line_per_step_with_probabilities(tiny_checkpoint):
    result = run_cli("--model", str(tiny_checkpoint), "--prompt", "The dog", "--max-new-tokens", "5",
                     "--temperature", "0", "--seed", "1", "--show-probs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        assert " p=1.000 (greedy)" in line and "top: " in line
    prompt_tokens = len(load_model(tiny_checkpoint).tokenizer.encode("The dog"))
    assert lines[0].startswith(f"[{prompt_tokens}] ")  # the first new token's position


def test_cli_bad_model_path_exits_non_zero_with_a_clear_message():
    result = run_cli("--model", "no/such/dir", "--prompt", "x", "--max-new-tokens", "2")
    assert result.returncode != 0
    assert "error: model path 'no/such/dir' does not exist" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--temperature", "-1"], "temperature must be a finite number >= 0.0"),
    (["--temperature", "nan"], "temperature must be a finite number >= 0.0 (0 = greedy), but is nan"),
    (["--top-p", "1.5"], "top_p must be a finite number in [0.0, 1.0]"),
    (["--max-new-tokens", "-3"], "--max-new-tokens must be >= 0, but is -3"),
    # Bytes on the command line that are not UTF-8 reach Python as lone surrogates.
    (["--prompt", "caf\udce9"], "prompt is not valid Unicode: surrogates not allowed at position 3"),
])
def test_cli_bad_settings_return_non_zero_with_a_clear_message(tiny_checkpoint, capsys, args, message):
    assert cli_main(["--model", str(tiny_checkpoint), *args]) != 0
    captured = capsys.readouterr()
    assert f"error: {message}" in captured.err and captured.out == ""
    assert callable(model.generate)  # still the function, not the CLI module


def test_cli_non_integer_top_k_is_refused_by_the_argument_parser(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(["--model", str(tiny_checkpoint), "--top-k", "2.5"])
    assert info.value.code == 2
    assert "--top-k: invalid int value: '2.5'" in capsys.readouterr().err


def _commands() -> list[str]:
    """Every module of ours that reads a command line (imports argparse)."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("model", "training", "deploy", "benchmarks", "ui"):
        for path in sorted((root / folder).glob("*.py")):
            if "import argparse" in path.read_text():
                found.append(f"{folder}.{path.stem}")
    return found


@pytest.mark.parametrize("module", _commands())
def test_every_command_prints_its_help(module, capsys):
    """--help must print every option's help: argparse formats each with %, so a literal
    percent sign in a help text (\"50% of\") breaks --help and nothing else."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    entry = mod.parse_args if module in ("ui.server", "deploy.cluster") else mod.main
    assert inspect.signature(entry).parameters, f"{module}: its entry point takes no argv"
    with pytest.raises(SystemExit) as done:
        entry(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--help" in out, out[:500]
