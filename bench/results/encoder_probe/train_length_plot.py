"""Plot of train_length.jsonl (written by probe.py --auto-k): the Fashion-MNIST scores of one 60-minute
default run's snapshots and of a 10-minute default run, against the training steps, beside the issue's
goals, N2D and raw pixels through the same default clusterer.

    python bench/results/encoder_probe/train_length_plot.py   # -> train_length.png
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RAW_PIXELS_NMI = 0.652  # the default on raw pixels, K = 10: bench/results/cluster_bench_default_amd.json
N2D = {"nmi": 0.684, "acc": 0.672}  # published (McConville et al. 2020)
GOAL = {"nmi": 0.72, "acc": 0.75}  # issue 19

rows = [json.loads(line) for line in (HERE / "train_length.jsonl").read_text().splitlines()]
snapshots = sorted((r for r in rows if r["tag"].startswith("fm60")), key=lambda r: r["steps"])
ten_minutes = [r for r in rows if r["tag"] == "fm10_default"]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for ax, metric in zip(axes, ("nmi", "acc")):
    for cut, style in (("consensus", "o-"), ("spectral", "s--"), ("graph", "^--"), ("umap-kmeans", "v:")):
        label = "default (vote)" if cut == "consensus" else cut
        ax.plot([r["steps"] for r in snapshots], [r[cut][metric] for r in snapshots], style, label=label)
    ax.plot([r["steps"] for r in snapshots], [r["automatic_k"][metric] for r in snapshots], "x-", c="grey",
            label="default at its automatic K (11-17)")
    ax.plot([r["steps"] for r in ten_minutes], [r["consensus"][metric] for r in ten_minutes], "*", ms=14, c="k",
            label="10-minute default run (vote)")
    ax.axhline(GOAL[metric], c="g", lw=1, label="goal (issue 19: 0.72 / 0.75)")
    ax.axhline(N2D[metric], c="purple", lw=1, ls="-.", label="N2D, published (0.684 / 0.672)")
    if metric == "nmi":
        ax.axhline(RAW_PIXELS_NMI, c="r", lw=1, ls=":", label=f"raw pixels, same default ({RAW_PIXELS_NMI})")
    ax.set_xlabel("training steps (batch 256; 10 min = about 1,100 here)")
    ax.set_ylabel(metric.upper())
    ax.grid(alpha=0.3)
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="center right")
fig.suptitle("Fashion-MNIST 10k test images, cut at K = 10: longer training of the default encoder "
             "(2-core AMD EPYC, fp32)")
fig.tight_layout(rect=(0, 0, 0.82, 1))
fig.savefig(HERE / "train_length.png", dpi=110)
print(f"wrote {HERE / 'train_length.png'}")
