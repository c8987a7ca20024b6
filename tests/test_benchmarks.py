"""benchmarks/gpu.py, the GPU figures of issue 16: its logic, at --scale tiny on the CPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GPU_FIGURES = [
    "wmf implicit",
    "wmf torch",
    "wmf torch speed-up",
    "wmf objective torch / implicit",
    "evaluation difference from CPU",
    "evaluation",
    "evaluation rate",
    "evaluation product alone",
    "evaluation / product",
    "evaluation, all users (projected)",
    "cnn training loop",
    "cnn network alone",
    "cnn loop / network alone",
]


def test_gpu_script_prints_every_figure_at_tiny_scale_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--scale", "tiny",
         "--device", "cpu", "--json", str(out), "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    printed = {
        line.split(": ", 1)[0]: line
        for line in run.stdout.splitlines()
        if not line.startswith("#") and ": " in line
    }
    assert sorted(printed) == sorted(GPU_FIGURES), run.stdout
    figures = json.loads(out.read_text())["figures"]
    assert sorted(figures) == sorted(GPU_FIGURES)
    assert all(math.isfinite(f["value"]) for f in figures.values()), figures
    # on the CPU both evaluations are the same code: equal to the last bit
    assert figures["evaluation difference from CPU"]["value"] == 0
    # tiny users all fit the time budget, so the sample is every user
    assert "2,000 of 2,000 users" in printed["evaluation"]
    # both backends fit eq. (3) from the same start: objectives within 10%
    assert 0.9 < figures["wmf objective torch / implicit"]["value"] < 1.1
    # the generated plays were kept for the next run
    assert (tmp_path / "cache" / "plays-tiny.npz").exists()
