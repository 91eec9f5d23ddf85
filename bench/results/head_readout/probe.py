"""Probe: cluster on the projection head's output (the space the contrastive loss shapes) or its
hidden layer, instead of the default read-out (backbone feature map, 2x2 grid, whitened). The
training checkpoint's head is applied to the backbone's pooled features of the 10k Fashion-MNIST
test images; each set of features goes through the default clusterer at the true K.

    python bench/results/head_readout/probe.py OUT.jsonl TAG=RUN [TAG=RUN ...]
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import datasets  # noqa: E402
from encoders.augment import normalize_batch  # noqa: E402
from encoders.embed import embed_tensor  # noqa: E402
from encoders.heads import SimCLRProjectionHead  # noqa: E402
from encoders.store import load_encoder  # noqa: E402


@torch.no_grad()
def head_features(encoder, head, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, 3, S, S) uint8 -> pooled backbone (M, D), head hidden layer (M, D), head output (M, 128)."""
    cfg, outs = encoder.cfg, ([], [], [])
    for i in range(0, len(images), 512):
        v = normalize_batch(images[i:i + 512], cfg.mean, cfg.std, cfg.normalize)
        h = encoder.backbone(v)  # (N, D)
        hidden = head[2](head[1](head[0](h)))  # Linear, BatchNorm, ReLU: (N, D)
        for out, z in zip(outs, (h, hidden, head[3](hidden))):  # head[3]: (N, D) -> (N, 128)
            out.append(F.normalize(z.float(), dim=1))
    return tuple(torch.cat(o).numpy() for o in outs)


def main(argv: list[str]) -> None:
    out = Path(argv[1])
    for arg in argv[2:]:
        tag, run = arg.split("=", 1)
        encoder = load_encoder(Path(run), torch.device("cpu")).eval()
        state = torch.load(Path(run) / "checkpoint.pt", weights_only=True, map_location="cpu")["model"]
        head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
        head = SimCLRProjectionHead(head_state["0.weight"].shape[1], out_dim=head_state["3.weight"].shape[0])
        head.load_state_dict(head_state)
        head.eval()
        images, y = datasets.labelled_images("fmnist", encoder.cfg.image_size)
        pooled, hidden, projected = head_features(encoder, head, images)
        for name, x in (("default read-out", embed_tensor(encoder, images)), ("pooled backbone", pooled),
                        ("head hidden layer", hidden), ("head output", projected)):
            row = {"tag": tag, "run": run, "features": name, "dim": x.shape[1]}
            for given in (10, None):
                row["true_k" if given else "automatic_k"] = datasets.default_scores(np.ascontiguousarray(x), y, given)
            datasets.append_json_line(out, row)


if __name__ == "__main__":
    main(sys.argv)
