"""`torchrun --nproc-per-node 2 -m pipelines.pretrain` on CPU (gloo): rank 0 alone writes
the run folder, and `--resume` continues from its checkpoint. (That 2 ranks compute the
global batch's loss and gradients is tests/encoders/test_distributed.py.)"""
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def torchrun_pretrain(data, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "pipelines.pretrain", "--data", str(data), "--out", str(out), "--backbone", "smallcnn",
           "--image-size", "16", "--batch-size", "64", "--workers", "0", "--no-progress", "--log-every", "1",
           "--method", "moco", "--queue-size", "64", "--epochs", "1", "--seed", "3", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_torchrun_two_cpu_processes_write_once_and_resume(shape_folder, tmp_path):
    out = tmp_path / "run"
    torchrun_pretrain(shape_folder, out, "--max-steps", "2")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    log = torchrun_pretrain(shape_folder, out, "--resume")
    assert "resuming" in log and "from step 2 of 4" in log
    assert log.count("INFO pipelines.pretrain: training") == 1  # rank 1 does not log
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]  # each step written once, by rank 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["batch_size"] == 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["finished"]
    assert (out / "encoder.safetensors").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoint.pt", "config.json", "decoded.json", "decoded.npy", "encoder.safetensors", "loss.png",
         "metrics.jsonl", "summary.json"])  # decoded.*: rank 0 keeps the decoded folder for indexing
