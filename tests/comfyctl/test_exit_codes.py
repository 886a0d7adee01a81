"""comfyctl's exit codes: one table, each code one meaning, documented once."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from comfyctl import doctor, errors
from comfyctl.errors import EXIT_CODES
from tests.support import REPO, python_env


def all_errors(cls=errors.ComfyctlError):
    yield cls
    for sub in cls.__subclasses__():
        yield from all_errors(sub)


def test_each_code_means_one_thing():
    from comfyctl import run, workflow  # noqa: F401 - their errors are subclasses too

    codes: dict[int, type] = {}
    for cls in all_errors():
        if "exit_code" in vars(cls):
            assert cls.exit_code not in codes, f"{cls.__name__} reuses {codes.get(cls.exit_code)}"
            codes[cls.exit_code] = cls
    assert set(codes) | {0} == set(EXIT_CODES)


def test_the_docs_carry_the_table():
    text = (REPO / "docs/runtime.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes of `comfyctl`", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M))
    assert {int(c): m for c, m in rows.items()} == EXIT_CODES


def test_doctor_and_a_missing_checkout_use_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path / "none"))
    code = doctor.main(argparse.Namespace(comfyui_dir=None, comfyui_python=None, data_dir=None))
    assert code == errors.ProblemsFound.exit_code and "no main.py" in capsys.readouterr().out
    out = subprocess.run(
        [sys.executable, "-m", "comfyctl", "serve", "--dry-run"],
        cwd=tmp_path,
        env=python_env(COMFYUI_DIR=str(tmp_path / "none")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == errors.ConfigError.exit_code and "COMFYUI_DIR" in out.stderr
