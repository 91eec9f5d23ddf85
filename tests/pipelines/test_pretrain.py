import json
import logging
import math
import time

import pytest
import torch
from safetensors.torch import load_file

from encoders.optim import Schedule, warmup_cosine
from encoders.store import load_encoder
from pipelines import pretrain


def run_pretrain(data, out, *extra):
    args = ["--data", str(data), "--out", str(out), "--backbone", "smallcnn", "--image-size", "16",
            "--batch-size", "32", "--workers", "0", "--no-progress", "--log-every", "1", *extra]
    assert pretrain.main(args) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(records):
    return {r["step"]: r["loss"] for r in records if "loss" in r}


# Small settings per method for an 8-step-per-epoch run: a 64-key queue and 64 bank
# negatives for 256 images, 2 local crops, heads frozen for 2 steps only.
SMALL = ["--queue-size", "64", "--negatives", "64", "--local-crops", "2", "--freeze-head-steps", "2",
         "--prototypes", "32", "--dino-out-dim", "64", "--clusters", "8",
         # the loop's tests pin the papers' recipe (SGD, dataset mean/std) their learning rates are for
         "--optimizer", "sgd", "--normalize", "dataset", "--grey-p", "0.2", "--min-scale", "0.08"]
METHODS = ["simclr", "moco", "byol", "dino", "swav", "npid", "deepcluster"]


def test_the_automatic_recipe_lowers_the_loss(shape_folder, tmp_path):
    recs = run_pretrain(shape_folder, tmp_path / "run", "--epochs", "8", "--seed", "1")  # every setting auto
    curve = [v for _, v in sorted(losses(recs).items())]
    first, last = sum(curve[2:8]) / 6, sum(curve[-6:]) / 6
    assert last < first - 0.2, (first, last)


@pytest.mark.parametrize("method,lr,drop", [("simclr", 0.5, 0.2), ("moco", 0.5, 0.2), ("byol", 0.5, 0.1),
                                            ("dino", 0.5, 0.1), ("swav", 0.5, 0.1), ("npid", 0.5, 0.2)])
def test_tiny_pretraining_lowers_the_loss(shape_folder, tmp_path, method, lr, drop):
    """The training loop lowers each method's loss (with the papers' optimizer and inputs)."""
    recs = run_pretrain(shape_folder, tmp_path / "run", "--method", method, "--epochs", "8", "--lr", str(lr),
                        "--seed", "1", *SMALL)
    curve = [v for _, v in sorted(losses(recs).items())]
    assert len(curve) == 8 * (256 // 32)
    # Skip 2 steps: MoCo's queue (64 keys, batch 32) starts as random vectors, easy negatives.
    first, last = sum(curve[2:8]) / 6, sum(curve[-6:]) / 6
    assert last < first - drop, (first, last)


def test_deepcluster_learns_each_epochs_pseudo_labels(shape_folder, tmp_path):
    """Each epoch starts from a fresh classifier (loss log K) and then fits the new labels."""
    recs = run_pretrain(shape_folder, tmp_path / "run", "--method", "deepcluster", "--epochs", "5", "--lr", "4",
                        "--seed", "1", *SMALL)
    starts = [r for r in recs if "epoch_start" in r]
    assert [r["epoch_start"] for r in starts] == list(range(5)) and all(r["clusters"] == 8 for r in starts)
    assert all(0 <= r["nmi_previous"] <= 1 for r in starts[1:])
    curve = losses(recs)
    for epoch in range(5):
        assert curve[8 * epoch + 1] == pytest.approx(math.log(8), abs=0.05)  # re-initialised head: uniform logits
    means = [r["mean_loss"] for r in recs if "epoch_end" in r]
    assert min(means) < math.log(8) - 0.05, means


@pytest.mark.parametrize("method", METHODS)
def test_resume_reproduces_uninterrupted_losses(shape_folder, tmp_path, method):
    common = ["--method", method, "--epochs", "2", "--seed", "3", *SMALL]
    full = losses(run_pretrain(shape_folder, tmp_path / "full", *common))
    # "killed" after step 5 (mid-epoch): only the checkpoint of step 5 survives
    run_pretrain(shape_folder, tmp_path / "part", *common, "--max-steps", "5")
    resumed = losses(run_pretrain(shape_folder, tmp_path / "part", *common, "--resume"))
    assert sorted(resumed) == sorted(full) == list(range(1, 17))
    for step in range(6, 17):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-6), step
    encoder = load_encoder(tmp_path / "part")  # the encoder every method leaves is the plain backbone
    assert encoder.cfg.method == method and encoder.cfg.feat_dim == 256
    whiten = {f"whiten.{k}" for k in encoder.whiten.state_dict()}
    assert set(load_file(tmp_path / "part" / "encoder.safetensors")) == set(encoder.backbone.state_dict()) | whiten


def test_run_dir_holds_backbone_only_and_rebuilds(shape_folder, tmp_path):
    out = tmp_path / "run"
    run_pretrain(shape_folder, out, "--method", "moco", "--max-steps", "2", "--epochs", "1", "--queue-size", "64")
    for name in ("encoder.safetensors", "config.json", "metrics.jsonl", "loss.png", "checkpoint.pt"):
        assert (out / name).is_file(), name
    keys = load_file(out / "encoder.safetensors").keys()
    assert keys and not any(k.startswith(("head", "key_", "queue")) for k in keys)
    encoder = load_encoder(out)
    cfg = encoder.cfg
    assert cfg.backbone == "smallcnn" and cfg.image_size == 16 and cfg.method == "moco"
    assert not encoder.training and not encoder.backbone.training
    with torch.no_grad():
        assert encoder.backbone(torch.randn(2, 3, 16, 16)).shape == (2, cfg.feat_dim)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(encoder(images).norm(dim=1), torch.ones(2))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "step", "config", "total_steps"} <= set(ckpt)
    assert "queue" in ckpt["model"] and any(k.startswith("key_backbone") for k in ckpt["model"])


def test_minutes_budget_fits_the_schedule_and_stops_cleanly(shape_folder, tmp_path):
    out = tmp_path / "run"
    recs = run_pretrain(shape_folder, out, "--minutes", "0.15", "--lr", "0.1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seconds"] < 0.15 * 60 + 20
    assert summary["step"] >= 1 and (out / "encoder.safetensors").is_file()
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, summary["step"] + 1))  # every step once, none after the stop
    # the cosine schedule was fitted to the measured length (and refitted if the run fell
    # behind, as metrics.jsonl records): the logged lrs are its values
    assert [r["lr"] for r in steps] == pytest.approx(scheduled_lrs(recs, 0.1 * 32 / 256, 8), rel=1e-6)
    assert summary["total_steps"] == [r["total_steps"] for r in recs if "total_steps" in r][-1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == summary["step"]


def scheduled_lrs(recs: list[dict], base: float, steps_per_epoch: int) -> list[float]:
    """The lr of each logged step under the schedule in force then: warm-up + cosine to the
    `total_steps` last recorded at or before that step (one record at the start, one per refit)."""
    out, total = [], None
    for r in recs:
        if "total_steps" in r:
            total = r["total_steps"]
        elif "loss" in r:
            out.append(warmup_cosine(base, total, min(steps_per_epoch, max(total // 10, 1)))[r["step"] - 1])
    return out


def run_on_fake_clock(monkeypatch, seconds, *args) -> tuple[list[dict], float]:
    """run_pretrain(*args) on a clock that advances only when a training step runs, by
    `seconds(call, step)` (call: 1 for the first step run, timed ones included); returns the
    metrics records and the clock at the end."""
    from types import SimpleNamespace

    from pipelines import train_loop
    real_step = train_loop.Trainer.step
    now, calls = [0.0], [0]

    def timed_step(self, step):
        calls[0] += 1
        now[0] += seconds(calls[0], step)
        return real_step(self, step)
    clock = SimpleNamespace(perf_counter=lambda: now[0], time=time.time)
    monkeypatch.setattr(train_loop.Trainer, "step", timed_step)
    monkeypatch.setattr(train_loop, "time", clock)
    monkeypatch.setattr(pretrain, "time", clock)
    return run_pretrain(*args), now[0]


def test_a_run_that_falls_behind_its_budget_still_finishes_its_schedule(shape_folder, tmp_path, monkeypatch):
    """The run's clock advances only when a step runs: 0.1 s a step, 0.35 s from step 10 on, so the
    steps timed at the start (0..9) promise more than the run gets, whatever the machine's load.
    The schedule is refitted (ends earlier), and the run reaches its new end, lr near 0, by the
    deadline, instead of being cut off mid-cosine."""
    out = tmp_path / "run"
    recs, _ = run_on_fake_clock(monkeypatch, lambda call, step: 0.1 if step < 10 else 0.35,
                                shape_folder, out, "--minutes", "0.25", "--lr", "0.1", "--whiten", "false")
    summary = json.loads((out / "summary.json").read_text())
    totals = [r["total_steps"] for r in recs if "total_steps" in r]
    assert len(totals) >= 2 and totals == sorted(totals, reverse=True), totals  # refitted, only ever earlier
    assert totals[-1] < 0.7 * totals[0] and summary["total_steps"] == totals[-1]
    # the end is re-estimated every 20 steps up to the last ones: at most a step or two short
    assert summary["step"] >= totals[-1] - 3, (summary["step"], totals)
    steps = [r for r in recs if "loss" in r]
    lrs = scheduled_lrs(recs, 0.1 * 32 / 256, 8)
    assert [r["lr"] for r in steps] == pytest.approx(lrs, rel=1e-6)
    # the cosine got (nearly) to 0, not cut off half way: 3 steps short of a ~60-step cosine (allowed
    # above) leaves the last logged lr (schedule[step - 1]) at <= 1.4% of the peak
    assert steps[-1]["lr"] < 0.02 * max(lrs)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["total_steps"] == totals[-1]


def test_the_pacer_refits_when_behind_and_early_when_ahead(monkeypatch):
    """Against a fake clock: 5 steps/s, a 100 s budget. At step 21 (20 steps in 4 s since the
    first call) 95.8 s x 5 steps/s x 0.97 = 464 more steps fit: the end that fits is 485."""
    from pipelines import train_loop
    clock = [0.0]
    monkeypatch.setattr(train_loop.time, "perf_counter", lambda: clock[0])
    fits = 21 + int((100 - 21 / 5) * 5 * 0.97)

    def drive(total: int, **kw):
        calls, stops = [], []
        schedule = Schedule(0.1, total, 1.0, 10)
        pacer = train_loop.Pacer(100.0, schedule, lambda step, new: calls.append((step, new)), torch.device("cpu"),
                                 every=20, **kw)
        for step in range(1, 101):
            clock[0] = step / 5
            stops.append(pacer.after_step(step))
        return calls, stops, schedule

    calls, stops, schedule = drive(1000)  # behind: ends earlier, once
    assert calls == [(21, fits)] and stops[-1] == fits
    assert schedule.total_steps == fits and len(schedule.lrs) == fits  # the one schedule, refitted
    calls, stops, _ = drive(480)  # within 1-2% of what fits: never refitted
    assert calls == [] and set(stops) == {480}
    calls, stops, _ = drive(300)  # ahead within its first quarter: ends later, once
    assert calls == [(21, fits)] and stops[-1] == fits
    assert drive(300, longest=400)[0] == [(21, 400)]  # never beyond an --epochs plan
    assert drive(60)[0] == []  # ahead only past its first quarter: the lr is already decaying, kept
    calls, stops, schedule = drive(300, last_step=250)  # --max-steps stops the run, the schedule is refitted
    assert calls == [(21, fits)] and schedule.total_steps == fits and stops[-1] == 250


def test_a_run_faster_than_its_first_steps_uses_its_budget(shape_folder, tmp_path, monkeypatch):
    """The run's clock advances only when a step runs: 0.2 s for each of the 10 steps timed
    before the run (calibration), then 0.1 s, so the timed steps promise half of what the run
    can do. The schedule is refitted later while its lr is near the peak, and the run reaches
    its new end, lr near 0, before the deadline, instead of finishing early with budget unused."""
    out = tmp_path / "run"
    recs, now = run_on_fake_clock(monkeypatch, lambda call, step: 0.2 if call <= 10 else 0.1,
                                  shape_folder, out, "--minutes", "0.45", "--lr", "0.1", "--whiten", "false")
    summary = json.loads((out / "summary.json").read_text())
    totals = [r["total_steps"] for r in recs if "total_steps" in r]
    assert len(totals) >= 2 and totals == sorted(totals), totals  # refitted, only later
    assert totals[-1] > 2 * totals[0] and summary["total_steps"] == totals[-1] == summary["step"]
    assert 0.9 * 27 <= now <= 27  # the budget used, not overrun
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, summary["step"] + 1))  # every step once
    lrs = scheduled_lrs(recs, 0.1 * 32 / 256, 8)
    assert [r["lr"] for r in steps] == pytest.approx(lrs, rel=1e-6)
    assert steps[-1]["lr"] < 0.02 * max(lrs)


def test_resume_is_a_config_field_saved_with_the_run(shape_folder, tmp_path):
    """--resume is read from the config the run saves, and a resumed run continues the
    checkpoint's run (its seed, its logged steps) instead of starting a new one."""
    assert pretrain.parse_args(["--data", "d", "--out", "o", "--resume"]).resume is True
    assert pretrain.parse_args(["--data", "d", "--out", "o"]).resume is False
    out = tmp_path / "run"
    first = run_pretrain(shape_folder, out, "--epochs", "1", "--max-steps", "1", "--seed", "5")
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["resume"] is False
    # another seed on the command line: a resumed run keeps the checkpoint's identity
    resumed = run_pretrain(shape_folder, out, "--epochs", "1", "--max-steps", "2", "--seed", "6", "--resume")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["config"]["resume"] is True and ckpt["config"]["seed"] == 5
    trained = [[r for r in recs if "loss" in r] for recs in (first, resumed)]
    assert [r["step"] for r in trained[1]] == [1, 2] and trained[1][0] == trained[0][0]  # step 1 not trained again


def test_diverging_loss_is_an_error_naming_the_flags(shape_folder, tmp_path, capsys):
    args = ["--data", str(shape_folder), "--out", str(tmp_path / "r"), "--backbone", "smallcnn", "--image-size", "16",
            "--batch-size", "32", "--workers", "0", "--no-progress", "--epochs", "1", "--lr", "1e30",
            "--warmup-epochs", "0", "--precision", "fp32"]
    assert pretrain.main(args) == 2
    err = capsys.readouterr().err
    assert "loss is nan" in err and "checkpoint" in err and "--lr" in err


def test_old_moco_checkpoint_with_a_bn_head_is_refused(shape_folder, tmp_path, capsys):
    out = tmp_path / "run"
    run_pretrain(shape_folder, out, "--method", "moco", "--epochs", "1", "--max-steps", "1", "--queue-size", "64")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["model"]["head.1.running_mean"] = torch.zeros(256)  # what MoCo's head held before it lost its BN
    torch.save(ckpt, out / "checkpoint.pt")
    args = ["--data", str(shape_folder), "--out", str(out), "--backbone", "smallcnn", "--workers", "0", "--resume"]
    assert pretrain.main(args) == 2
    assert "BatchNorm" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(shape_folder, tmp_path, capsys):
    args = ["--data", str(shape_folder), "--out", str(tmp_path / "r"), "--backbone", "smallcnn", "--workers", "0"]
    assert pretrain.main(args + ["--batch-size", "1000"]) == 2
    assert "larger than the 256 readable images" in capsys.readouterr().err
    assert pretrain.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_new_run_in_old_folder_starts_a_new_log(shape_folder, tmp_path):
    out = tmp_path / "run"
    first = run_pretrain(shape_folder, out, "--epochs", "1", "--max-steps", "3")
    second = run_pretrain(shape_folder, out, "--epochs", "1", "--max-steps", "2")
    assert len(losses(first)) == 3 and sorted(losses(second)) == [1, 2]


def test_snapshots_are_loadable_encoders_in_time_order(shape_folder, tmp_path):
    out = tmp_path / "run"
    run_pretrain(shape_folder, out, "--epochs", "2", "--snapshot-minutes", "0.0001")  # every 6 ms
    snaps = sorted((out / "snapshots").iterdir())
    assert len(snaps) >= 2, snaps
    info = [json.loads((s / "summary.json").read_text()) for s in snaps]
    steps, seconds = [i["step"] for i in info], [i["seconds"] for i in info]
    assert steps == sorted(set(steps)) and 1 <= steps[0] and steps[-1] <= 16
    assert seconds == sorted(seconds) and seconds[1] - seconds[0] >= 0.0001 * 60
    for snap in snaps:
        cfg = load_encoder(snap).cfg
        assert cfg.backbone == "smallcnn" and cfg.image_size == 16
    # a new run in the same folder does not keep the old run's snapshots
    run_pretrain(shape_folder, out, "--epochs", "1", "--max-steps", "1")
    assert not (out / "snapshots").exists()


def test_init_from_starts_from_another_runs_weights_with_its_settings(shape_folder, tmp_path, capsys, caplog):
    """--init-from: the old run's method, backbone and weights on a new (here smaller) folder; the NPID
    memory bank, whose size is the collection's, starts fresh; no budget or no checkpoint is an error."""
    caplog.set_level(logging.INFO, logger="pipelines.pretrain")
    old = tmp_path / "old"
    run_pretrain(shape_folder, old, "--method", "npid", "--epochs", "1", "--max-steps", "3", "--seed", "2", *SMALL)
    half = tmp_path / "half"
    half.mkdir()
    picked = sorted(p for p in shape_folder.rglob("*") if p.is_file())[::2]
    for f in picked:
        (half / f"{f.parent.name}_{f.name}").write_bytes(f.read_bytes())
    new = tmp_path / "new"
    # another backbone and method on the command line: the old run's win, as with --resume
    assert pretrain.main(["--data", str(half), "--out", str(new), "--init-from", str(old), "--epochs", "1",
                          "--max-steps", "0", "--method", "simclr", "--image-size", "24", "--workers", "0",
                          "--no-progress"]) == 0
    before = torch.load(old / "checkpoint.pt", weights_only=True)
    after = torch.load(new / "checkpoint.pt", weights_only=True)
    assert after["config"]["method"] == "npid" and after["config"]["image_size"] == 16
    assert after["config"]["data"] == str(half) and after["config"]["images"] == len(picked) and after["step"] == 0
    for name, weight in before["model"].items():
        if name.startswith("backbone."):
            assert torch.equal(after["model"][name], weight), name
    banks = [n for n, w in after["model"].items() if w.shape != before["model"][n].shape]
    assert banks and all(after["model"][n].shape[0] == len(picked) for n in banks)
    assert "fresh (size depends on the collection)" in caplog.text
    trained = run_pretrain(half, tmp_path / "more", "--init-from", str(old), "--epochs", "1", "--max-steps", "2")
    assert [r["step"] for r in trained if "loss" in r] == [1, 2] and all(math.isfinite(r["loss"]) for r in trained
                                                                          if "loss" in r)
    for argv, message in (([], "--minutes or --epochs"), (["--epochs", "1"], "no checkpoint.pt")):
        source = old if not argv else tmp_path / "nothing"
        assert pretrain.main(["--data", str(half), "--out", str(tmp_path / "x"), "--init-from", str(source),
                              "--workers", "0", "--no-progress", *argv]) != 0
        assert message in capsys.readouterr().err
