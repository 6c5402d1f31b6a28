"""`make gpu-check`: one command that checks a CUDA machine in under ten minutes.

    python scripts/gpu_check.py   # GPU tests, quick benchmark, 2-epoch bf16 HO-ResNet and HeunNet runs

Each step runs in its own process with a time limit; its output goes to outputs/gpu_check/<step>.log and
its command, exit status, seconds and key numbers (test counts, benchmark ratios, test accuracy) to
outputs/gpu_check/summary.json with the GPU's name and the torch/CUDA versions. Exits 1 if a step failed.
Without a CUDA device it prints one line and exits 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = Path("outputs/gpu_check")
NO_GPU = "no CUDA device: gpu-check needs one; nothing run"
TWO_BF16_EPOCHS = ["trainer=gpu", "precision=bf16-mixed", "epochs=2", "force=true", "trainer.enable_progress_bar=false"]


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]
    timeout_s: int


def steps(python: str = sys.executable, out: Path = OUT) -> list[Step]:
    """What gpu-check runs, in order; the time limits add up to under ten minutes."""
    return [
        Step("gpu_tests", [python, "-m", "pytest", "tests/run/test_gpu.py"], 200),
        Step("bench", [python, "scripts/bench.py", "--device", "cuda", "--quick", "--out", str(out / "bench.json")],
             200),
        Step("horesnet", [python, "train.py", "dataset=digits", "model=horesnet", "scheme=rk4", "depth=18",
                          *TWO_BF16_EPOCHS, f"paths.output_dir={out / 'horesnet'}"], 80),
        Step("heunnet", [python, "train.py", "experiment=heunnet/mnist", "model=ode_rnn", "dataset.subset=10000",
                         "dataset.test_subset=2000", *TWO_BF16_EPOCHS, f"paths.output_dir={out / 'heunnet'}"], 110),
    ]


def pytest_counts(output: str) -> dict[str, int]:
    """pytest's closing counts (`2 passed, 1 skipped in 40.1s`)."""
    last = output.strip().splitlines()[-1:]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", "".join(last))}


def bench_numbers(results: dict) -> dict[str, float]:
    """The benchmark's ratios (and the scaling fit's R²), one per section or per row of a section."""
    numbers = {}
    for section, result in results.items():
        if section == "meta":
            continue
        numbers |= {f"{section} {k}": v for k, v in result.items() if k.endswith("ratio") or k == "r2"}
        for row in result.get("rows", []):
            label = " ".join(str(row[k]) for k in ("shape", "model", "scheme", "depth", "method", "mode") if k in row)
            numbers |= {f"{section} {label} {k}": v for k, v in row.items() if k.endswith("ratio")}
    return numbers


def run_numbers(out: Path) -> dict:
    """Status, test accuracy (last and best epoch), epochs and wall time of the run under `out`."""
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/result.json")]
    if not records:
        return {}
    r = records[0]
    metrics = r.get("metrics", {})
    return {"run": r["run_name"], "status": r["status"], "test_acc": metrics.get("final", {}).get("test/acc"),
            "best_test_acc": metrics.get("best", {}).get("test/acc"), "epochs": r.get("epochs"),
            "wall_time_s": r.get("wall_time_s"), "gpus": r.get("device", {}).get("gpus")}


def numbers(step: Step, output: str, out: Path) -> dict:
    if step.name == "gpu_tests":
        return pytest_counts(output)
    if step.name == "bench":
        path = out / "bench.json"
        return bench_numbers(json.loads(path.read_text())) if path.is_file() else {}
    return run_numbers(out / step.name)


def run(step: Step, out: Path) -> dict:
    """Run one step in its own process group (all of it is stopped at its time limit), logging its output."""
    t0 = time.time()
    proc = subprocess.Popen(step.command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=step.timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        timed_out = True
    (out / f"{step.name}.log").write_text(output)
    return {"name": step.name, "command": " ".join(step.command), "exit_status": proc.returncode,
            "timed_out": timed_out, "seconds": round(time.time() - t0, 1), "numbers": numbers(step, output, out),
            "log": str(out / f"{step.name}.log")}


def main() -> int:
    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    out = REPO / OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").unlink(missing_ok=True)  # bench.py keeps earlier sections it did not measure again
    summary = {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
               "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": []}
    t0 = time.time()
    for step in steps(out=out):
        result = run(step, out)
        ended = "timed out" if result["timed_out"] else f"exit {result['exit_status']}"
        print(f"gpu-check: {step.name}: {ended} after {result['seconds']} s", flush=True)
        summary["steps"].append(result)
        summary["seconds"] = round(time.time() - t0, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"written to {out / 'summary.json'}")
    return 0 if all(s["exit_status"] == 0 for s in summary["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
