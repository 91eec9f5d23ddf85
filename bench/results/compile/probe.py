"""Does torch.compile speed up a training step on the CPU? The default SimCLR step (small CNN,
channels-last, AdamW, batch 256, 32 px, fp32) on pre-made tensors, eager and with the loss
function compiled by torch.compile (inductor); median images/s over 25 steps after 3 warm-up
steps, and the first step's seconds (the compile), in three alternating rounds.

    python bench/results/compile/probe.py > bench/results/compile/probe.txt
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from encoders.backbones import build_backbone  # noqa: E402
from encoders.methods import SimCLR  # noqa: E402

batch, size = 256, 32


def run(compiled: bool, steps: int = 25) -> float:
    torch.manual_seed(0)
    model = SimCLR(build_backbone("smallcnn", small_stem=True)).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    f = torch.compile(model.training_loss) if compiled else model.training_loss
    a = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    b = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        loss = f([a, b], torch.arange(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 0:
            print("first step", round(time.perf_counter() - t, 1), "s", flush=True)
        if i >= 3:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
for _ in range(3):
    print("eager img/s", round(run(False)), flush=True)
    print("compiled img/s", round(run(True)), flush=True)
