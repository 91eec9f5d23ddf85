"""DINO (Caron et al. 2021): a student matches the centred, sharpened output of an EMA
teacher across views; multi-crop (the teacher sees only the global views)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoders import distributed
from encoders.heads import DINOHead
from encoders.losses import positive_temperature
from encoders.methods.base import Method, MultiCropSettings, cosine_momentum, no_grad_copy, option, update_momentum


class DINOLoss(nn.Module):
    """Cross-entropy between the teacher's global views and every other student view.

    forward(teacher (G, N, K), student (V, N, K), center (K,), teacher_temp): raw head
    outputs, global views first in `student`. Teacher probabilities softmax((t - c) / tt)
    (centring + sharpening), student log-probabilities log_softmax(s / ts); the loss is the
    mean over the pairs (g, v) with v != g and over N of -sum_K P_t log P_s.
    """

    def __init__(self, student_temp: float = 0.1):
        super().__init__()
        self.student_temp = positive_temperature(student_temp)

    def forward(self, teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor,
                teacher_temp: float) -> torch.Tensor:
        t = F.softmax((teacher.float() - center) / teacher_temp, dim=-1)  # (G, N, K)
        s = F.log_softmax(student.float() / self.student_temp, dim=-1)  # (V, N, K)
        ce = -torch.einsum("gnk,vnk->gv", t, s) / teacher.shape[1]  # (G, V): mean over N
        same = torch.eye(t.shape[0], s.shape[0], dtype=torch.bool, device=ce.device)  # a view never predicts itself
        return ce.masked_fill(same, 0).sum() / (ce.numel() - t.shape[0])


@dataclass(frozen=True)
class DINOSettings(MultiCropSettings):
    local_crops: int = option(6, "multi-crop: small views per image")
    dino_out_dim: int = option(1024, "head output size K (65536 in the paper; small for a CPU)")
    temperature: float = option(0.1, "the student's softmax temperature")
    teacher_temp: float = option(0.07, "teacher temperature after the warm-up")
    teacher_temp_start: float = option(0.04, "teacher temperature at step 0")
    teacher_temp_warmup: float = option(0.3, "teacher temperature warm-up, fraction of the run")
    center_momentum: float = option(0.9, "EMA momentum of the teacher's centre")
    momentum: float = option(0.99, "EMA momentum of the teacher at step 0, rising to 1 (cosine)")
    freeze_head_steps: int = option(50, "first steps with the head's last layer frozen")


class DINO(Method):
    """Student: backbone + `DINOHead`; teacher: their EMA (momentum from `momentum` to 1,
    cosine), never trained by gradients. State in buffers: the centre (K,) (EMA of the
    teacher's mean output over the global batch, momentum `center_momentum`), the current
    teacher temperature (linear warm-up from `teacher_temp_start` to `teacher_temp` over
    `teacher_temp_warmup` of the run) and the step count (the last layer is frozen for the
    first `freeze_head_steps` steps). Settings: `DINOSettings`; `temperature` is the student's."""

    Settings = DINOSettings

    def __init__(self, backbone: nn.Module, settings: DINOSettings = DINOSettings(), gather_distributed: bool = False):
        super().__init__(backbone, settings.views)
        s = settings
        self.head = DINOHead(backbone.feat_dim, out_dim=s.dino_out_dim)
        self.teacher_backbone = no_grad_copy(backbone)
        self.teacher_head = no_grad_copy(self.head)
        self.criterion = DINOLoss(s.temperature)
        self.teacher_temps = (s.teacher_temp_start, s.teacher_temp, s.teacher_temp_warmup)
        self.center_momentum, self.base_momentum = s.center_momentum, s.momentum
        self.freeze_last_steps, self.gather_distributed = s.freeze_head_steps, gather_distributed
        self.register_buffer("center", torch.zeros(s.dino_out_dim))  # (K,)
        self.register_buffer("teacher_temp", torch.tensor(float(s.teacher_temp_start)))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self._teacher_sum = None  # this step's teacher outputs summed, (K,), and their count

    @classmethod
    def build(cls, backbone, settings, facts):
        return cls(backbone, settings, gather_distributed=facts.gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, S, S) -> (N, K)

    def training_loss(self, views, indices):
        n, trainable = views[0].shape[0], bool(self.steps_done >= self.freeze_last_steps)
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(torch.cat(views[:2])))  # (2N, K)
        student = [self.head(self.backbone(torch.cat(views[:2])), trainable_last=trainable)]  # (2N, K)
        if len(views) > 2:
            student.append(self.head(self.backbone(torch.cat(views[2:])), trainable_last=trainable))  # (LN, K)
        student = torch.cat(student).view(len(views), n, -1)  # (V, N, K)
        self._teacher_sum = (teacher.float().sum(0), 2 * n)  # (K,) and its row count, for the centre
        return self.criterion(teacher.view(2, n, -1), student, self.center, float(self.teacher_temp))

    @torch.no_grad()
    def after_optimizer_step(self, step, total_steps):
        if self._teacher_sum is not None:
            total, rows = self._teacher_sum
            count = torch.tensor(float(rows), device=total.device)
            if self.gather_distributed:  # the mean over the global batch
                total, count = distributed.sum_over_ranks(total), distributed.sum_over_ranks(count)
            self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)
            self._teacher_sum = None
        m = cosine_momentum(step, total_steps, self.base_momentum)
        update_momentum(self.teacher_backbone, self.backbone, m)
        update_momentum(self.teacher_head, self.head, m)
        self.steps_done.fill_(step + 1)
        start, end, frac = self.teacher_temps
        warm = max(1, round(frac * total_steps))
        self.teacher_temp.fill_(start + (end - start) * min(1.0, (step + 1) / warm))
