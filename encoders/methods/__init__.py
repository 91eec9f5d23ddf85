"""Self-supervised methods behind one interface (`encoders.methods.base.Method`), found
by name in `METHODS`. Adding a method: a module here with its head, loss and state, and
one line in the registry; the training loop does not change."""
from __future__ import annotations

from encoders.methods.base import EpochContext, Method, MethodSettings, RunFacts
from encoders.methods.byol import BYOL
from encoders.methods.deepcluster import DeepCluster
from encoders.methods.dino import DINO
from encoders.methods.moco import MoCo
from encoders.methods.npid import NPID
from encoders.methods.simclr import SimCLR
from encoders.methods.swav import SwAV

METHODS: dict[str, type[Method]] = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "dino": DINO, "swav": SwAV,
                                    "npid": NPID, "deepcluster": DeepCluster}

__all__ = ["METHODS", "BYOL", "DINO", "DeepCluster", "EpochContext", "Method", "MethodSettings", "MoCo", "NPID",
           "RunFacts", "SimCLR", "SwAV"]
