"""Near duplicates as people make them: precision and recall per kind of copy, per detector.

    python bench/duplicates_bench.py [--minutes 2 | --epochs SMALL LARGE] [--large 10000]
        -> bench/results/duplicates_bench.{json,png}

Planted sets built from the real photos of `bench/datasets.py photos` (scikit-image / scikit-learn
samples and the gnome / ukui / lomiri-20.04 / sway Debian wallpapers), under bench/results/tmp/:

Source photos that are copies or variants of each other (skimage's cat is chelsea; GNOME's
light / dark wallpaper pairs) are kept once, else the "truth" would call real duplicates false.

* small (~90 images): the photos as they are, with 42 copies between them, 6 of every kind:
  resave (60% of the size, JPEG quality 55-75), crop (2-8% of the area cut off), tone (5-15%
  brighter), mirror, grey, screenshot (the photo on a phone or desktop screen with a status /
  title bar and plain borders), exact (the same bytes under another name). 4 more photos are
  only there as two 60% crops of different parts (the same scene, not a copy: must NOT be paired).
* large (--large, 10,000): half of the photos with all 7 copies each, the other half only as
  their pair of distinct crops, padded with Fashion-MNIST training images
  (there are far fewer photos than 10k; a padding image is
  never a duplicate of a photo, and pairs among padding images count as false pairs unless the two
  files have the same bytes (Fashion-MNIST's training set holds a few), but are also listed apart
  because Fashion-MNIST holds near-identical items of its own).

File names are shuffled numbers; the truth (which files are copies of which) stays in the
bench. For each set: a default encoder (`pipelines.pretrain --data D --out R --minutes M`, all
else auto; `--epochs` instead trains a fixed length, the same on a busy machine as on an idle one)
trained on the set, `pipelines.build_index`, then each detector through
`pipelines.duplicates` with its defaults: pHash (imagededup's: plain 64-bit DCT hash, Hamming
<= 10), encoder (calibrated cosine), combined (the default: pHash with mirror / trimmed
borders and a cosine floor, or calibrated cosine), and the old fixed cosine 0.95. A reported
pair is two images the detector reports as duplicates (an exact group's pairs, the near pairs);
recall is over the planted (original, copy) pairs, precision over the reported pairs (a pair is
true when both images have the same original). Groups (connected components, what
--move-extras acts on) are scored too, over all pairs inside them, with the largest group.
Time is wall-clock on this machine, including hashing and calibration.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.datasets import get as get_dataset  # noqa: E402
from bench.duplicates_planted import KINDS, plant, small_set, source_photos  # noqa: E402
from pipelines import duplicates  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "tmp" / "duplicates_bench"
DETECTORS = {  # name -> pipelines.duplicates arguments
    "phash (Hamming <= 10)": ["--detector", "phash"],
    "encoder, fixed 0.95": ["--detector", "encoder", "--threshold", "0.95"],
    "encoder, calibrated": ["--detector", "encoder"],
    "combined (default)": [],
}


# ---- running the product ----

def run(cmd: list[str], log: Path) -> float:
    t = time.perf_counter()
    with open(log, "a") as f:
        subprocess.run([sys.executable, *cmd], cwd=REPO, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t


def truth_pairs(truth: dict) -> dict[tuple[str, str], str]:
    """Every pair of files with the same original -> the kind of copy involved ("a+b" for two copies)."""
    by_group: dict[str, list[str]] = {}
    for name, f in truth["files"].items():
        if f["kind"] != "scene":  # padding files share a group only with their byte-identical twins
            by_group.setdefault(f["group"], []).append(name)
    out = {}
    for names in by_group.values():
        for a, b in combinations(sorted(names), 2):
            kinds = sorted(k for k in (truth["files"][a]["kind"], truth["files"][b]["kind"]) if k != "original")
            out[(a, b)] = "+".join(kinds)
    return out


def flagged_pairs(result: dict) -> set[tuple[str, str]]:
    """The pairs a detector reports: every pair of an exact group, and each near pair."""
    pairs = {tuple(sorted(p)) for g in result["exact"] for p in combinations(g["paths"], 2)}
    return pairs | {tuple(sorted((p["a"], p["b"]))) for g in result["near"] for p in g["pairs"]}


def score(result: dict, truth: dict) -> dict:
    """Pair precision / recall: recall over the planted (original, copy) pairs, per kind; precision
    over the reported pairs (true: two images with one original). Group figures: the same over
    all pairs inside the reported groups (what --move-extras acts on), and the largest group."""
    files = truth["files"]
    true = truth_pairs(truth)
    planted = {p: k for p, k in true.items() if "+" not in k and k in KINDS}  # original + one copy
    flagged = flagged_pairs(result)
    hit = flagged & set(true)
    by_kind = {}
    for kind in KINDS:
        want = [p for p, k in planted.items() if k == kind]
        if want:
            by_kind[kind] = {"recall": sum(p in flagged for p in want) / len(want), "pairs": len(want)}
    false = sorted(flagged - set(true))
    false_kinds: dict[str, int] = {}
    for a, b in false:
        k = "+".join(sorted((files[a]["kind"], files[b]["kind"])))
        false_kinds[k] = false_kinds.get(k, 0) + 1
    scenes = sorted(n for n in files if files[n]["kind"] == "scene")  # groups sceneNa / sceneNb: one photo's two crops
    scene_pairs = [p for p in combinations(scenes, 2) if files[p[0]]["group"][:-1] == files[p[1]]["group"][:-1]]
    grouped = {tuple(sorted(p)) for g in result["groups"] for p in combinations(g["paths"], 2)}
    return {"precision": len(hit) / len(flagged) if flagged else 1.0,
            "recall": sum(p in flagged for p in planted) / len(planted) if planted else 1.0,
            "reported_pairs": len(flagged), "planted_pairs": len(planted),
            "found": sum(p in flagged for p in planted), "false_pairs": len(false), "false_by_kind": false_kinds,
            "false_examples": [[a, files[a]["kind"], b, files[b]["kind"]] for a, b in false[:20]],
            "by_kind": by_kind, "scene_pairs_flagged": sum(p in flagged for p in scene_pairs),
            "scene_pairs": len(scene_pairs),
            "precision_without_padding": precision_without(flagged, set(true), files, "padding"),
            "groups": {"count": len(result["groups"]), "largest": max((len(g["paths"]) for g in result["groups"]),
                                                                       default=0),
                       "pairs": len(grouped), "precision": len(grouped & set(true)) / len(grouped) if grouped else 1.0,
                       "recall": len(grouped & set(true)) / len(true) if true else 1.0}}


def precision_without(pred: set, true: set, files: dict, kind: str) -> float:
    kept = {p for p in pred if files[p[0]]["kind"] != kind or files[p[1]]["kind"] != kind}
    return len(kept & true) / len(kept) if kept else 1.0


def detect(index: Path, args: list[str]) -> tuple[dict, float]:
    cfg = duplicates.parse_args(["--index", str(index), *args])
    (index / "phash.npz").unlink(missing_ok=True)  # each detector pays for its own hashing
    (index / "duplicates.json").unlink(missing_ok=True)  # and its own calibration
    t = time.perf_counter()
    result = duplicates.run(cfg)
    return result, time.perf_counter() - t


def bench_set(name: str, out: Path, truth: dict, budget: list[str]) -> dict:
    """Train the set's encoder (`budget`: pretrain's --minutes M or --epochs E), index, run every detector."""
    log = out / "log.txt"
    (out / "truth.json").write_text(json.dumps(truth))
    run_dir, index = out / "run", out / "index"
    for p in (run_dir, index):
        shutil.rmtree(p, ignore_errors=True)
    t_train = run(["-m", "pipelines.pretrain", "--data", str(out / "data"), "--out", str(run_dir),
                   *budget, "--no-progress"], log)
    t_index = run(["-m", "pipelines.build_index", "--data", str(out / "data"), "--encoder", str(run_dir),
                   "--out", str(index), "--no-progress"], log)
    images = len(truth["files"])
    rows = {}
    for det, args in DETECTORS.items():
        result, secs = detect(index, args)
        (out / result_file(det)).write_text(json.dumps(result))
        rows[det] = {**score(result, truth), "seconds": round(secs, 1),  # per 10k: measured on the large set
                     "seconds_per_10k": round(secs * 10_000 / images, 1) if images >= 10_000 else None,
                     "rule": result["reason"], "crowded": result.get("crowded"),
                     "calibration": result.get("calibration")}
        print(f"{name} {det}: precision {rows[det]['precision']:.3f} recall {rows[det]['recall']:.3f} "
              f"({secs:.1f}s) {result['reason']}", flush=True)
    enc = json.loads((run_dir / "config.json").read_text())
    return {"images": images, "counts": count_kinds(truth), "train_seconds": round(t_train, 1),
            "index_seconds": round(t_index, 1), "encoder": {k: enc.get(k) for k in
                                                            ("backbone", "image_size", "flip_average", "grey_average",
                                                             "whiten", "method")},
            "detectors": rows}


def count_kinds(truth: dict) -> dict:
    out: dict[str, int] = {}
    for f in truth["files"].values():
        out[f["kind"]] = out.get(f["kind"], 0) + 1
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in ("small", "large") if s in results["sets"]]
    fig, axes = plt.subplots(1, len(sets), figsize=(7 * len(sets), 4.2), squeeze=False)
    for ax, s in zip(axes[0], sets):
        dets = results["sets"][s]["detectors"]
        kinds = [k for k in KINDS if any(k in d["by_kind"] for d in dets.values())]
        w = 0.8 / len(dets)
        for n, (det, d) in enumerate(dets.items()):
            vals = [d["by_kind"].get(k, {}).get("recall", np.nan) for k in kinds]
            ax.bar(np.arange(len(kinds)) + n * w, vals, w,
                   label=f"{det}: P {d['precision']:.2f} R {d['recall']:.2f}")
        ax.set_xticks(np.arange(len(kinds)) + 0.4 - w / 2, kinds)
        ax.set_ylim(0, 1.05)
        ax.axhline(0.95, color="grey", lw=0.5, ls="--")
        ax.set_title(f"{s}: {results['sets'][s]['images']} images, pair recall per kind of copy")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


ABLATION = "combined, pHash pairs only (same run)"


def hash_pairs_only(result: dict) -> dict:
    """The combined detector's result without the pairs only the cosine found (pHash distance above
    the rule's): what the hash half of the rule reports. Groups are not recomputed (left empty)."""
    limit = result["hamming"]
    near = [{**g, "pairs": [p for p in g["pairs"] if p.get("hamming", 99) <= limit]} for g in result["near"]]
    return {**result, "near": near, "groups": []}


def result_file(det: str) -> str:
    return f"result_{det.split()[0]}{'_fixed' if 'fixed' in det else ''}.json"


def rescore(path: Path) -> dict:
    """Score a finished run again from the results and truth it saved (timings kept), and add the
    ablation row."""
    results = json.loads(path.read_text())
    for name, s in results["sets"].items():
        out = WORK / name
        truth = json.loads((out / "truth.json").read_text())
        for det, row in s["detectors"].items():
            if det != ABLATION:
                row.update(score(json.loads((out / result_file(det)).read_text()), truth))
        combined = json.loads((out / "result_combined.json").read_text())
        row = score(hash_pairs_only(combined), truth)
        row.pop("groups")
        s["detectors"][ABLATION] = {**row, "seconds": None, "seconds_per_10k": None,
                                    "rule": f"pHash distance <= {combined['hamming']} (plain, mirror, trimmed) and "
                                            f"cosine >= {combined['hash_floor']}"}
    return results


def budget(args: argparse.Namespace, which: int) -> list[str]:
    """pretrain's training-length flags for set `which` (0 small, 1 large)."""
    return ["--epochs", str(args.epochs[which])] if args.epochs else ["--minutes", str(args.minutes)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="pretraining budget per set (defaults otherwise)")
    p.add_argument("--epochs", type=float, nargs=2, default=None, metavar=("SMALL", "LARGE"),
                   help="train each set's encoder this many epochs instead of --minutes")
    p.add_argument("--large", type=int, default=10_000, help="images in the large set (0: skip it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "duplicates_bench.json"))
    p.add_argument("--rescore", action="store_true", help="only add the ablation row to --out from the saved results")
    args = p.parse_args(argv)
    if args.rescore:
        results = rescore(Path(args.out))
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        plot(results, Path(args.out).with_suffix(".png"))
        return 0
    photo_dir = get_dataset("photos")
    photos = source_photos(photo_dir)
    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "photos": len(photos), "sets": {},
               **({"epochs": dict(zip(("small", "large"), args.epochs))} if args.epochs else {"minutes": args.minutes})}
    copies, scenes = small_set(photos, args.seed)
    out = WORK / "small"
    truth = plant(out, photos, copies, scenes, [], args.seed)
    results["sets"]["small"] = bench_set("small", out, truth, budget(args, 0))
    if args.large:
        rng = np.random.default_rng(args.seed + 1)
        scenes_l = rng.choice(len(photos), len(photos) // 2, replace=False).tolist()  # half: scene pairs only
        copies_l = {i: list(KINDS) for i in range(len(photos)) if i not in scenes_l}
        planted = len(photos) - len(scenes_l) + sum(map(len, copies_l.values())) + 2 * len(scenes_l)
        pad_dir = get_dataset("fmnist-train")
        pad = sorted(pad_dir.iterdir())[: max(0, args.large - planted)]
        out = WORK / "large"
        truth = plant(out, photos, copies_l, scenes_l, pad, args.seed + 1)
        results["sets"]["large"] = bench_set("large", out, truth, budget(args, 1))
    results["source_photos"] = [q.name for q in photos]
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    plot(results, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
