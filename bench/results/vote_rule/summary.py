"""Mean NMI of the cut each rule keeps, over the rows of probe.jsonl (one row per collection, encoder,
features and K; the raw-pixel rows of one collection are repeated per encoder and counted once), and
how often a rule keeps a better / worse cut than the vote (by more than 0.005).

    python bench/results/vote_rule/summary.py bench/results/vote_rule/probe.jsonl
"""
import json
import sys

import numpy as np

rows, seen = [], set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    key = (r["collection"], r["run"] if r["features"] == "learned" else "", r["features"], r["k_given"])
    if key not in seen:
        seen.add(key)
        rows.append(r)
for features in ("learned", "raw pixels"):
    for given in (True, False):
        some = [r for r in rows if r["features"] == features and r["k_given"] == given]
        print(f"{features}, {'true' if given else 'automatic'} K, {len(some)} rows")
        for rule in ("vote", "vote-umap1", "best-cut", "oracle"):
            d = np.array([r["kept"][rule]["nmi"] - r["kept"]["vote"]["nmi"] for r in some])
            print(f"  {rule:11s} mean NMI {np.mean([r['kept'][rule]['nmi'] for r in some]):.4f}  "
                  f"vs vote: {np.sum(d > 0.005)} better, {np.sum(d < -0.005)} worse, worst {d.min():+.3f}")
