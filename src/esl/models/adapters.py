"""Target-side adaptation terms plugged into `esl.stages.train_loop.train`: MinEnt and AdvEnt (Vu et al., CVPR 2019).

Both work on the softmax of the segmentation logits upsampled (bilinear, ``align_corners=True``) to the input size
of their domain, as ADVENT does, and on its *weighted self-information map*

    I(x)[c, h, w] = −p_c · log2(p_c) / log2(C)        (p = softmax over the C classes; 0 · log 0 = 0)

* MinEnt adds ``λ_main · E(main) + λ_aux · E(aux)`` to the target loss, E = Σ_c I summed over classes and averaged
  over pixels (and images): the normalised entropy, in [0, 1].
* AdvEnt trains one fully convolutional discriminator per head (`Discriminator`) to tell the self-information maps of
  source (label 0) from target (label 1) images with BCE-with-logits, and adds ``λ_main · BCE(D(I_t), 0) +
  λ_aux · BCE(D_aux(I_t^aux), 0)`` to the target loss (fool the discriminators). The discriminators are trained after
  the segmentation step on detached outputs, each domain's BCE halved, with Adam (lr 1e-4, betas (0.9, 0.99)) whose
  learning rate follows the same poly schedule as the segmentation network.

The reference values (ADVENT `advent/domain_adaptation/config.py`, `configs/minent.yml`, `configs/advent.yml`):
λ_ent main 0.001 / aux 0.0002, λ_adv main 0.001 / aux 0.0002, discriminator lr 1e-4, poly power 0.9 over 250k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esl.ops.losses import bce, entropy_loss, self_information


class Adapter:
    """Extra target-side training terms (MinEnt, AdvEnt) plugged into `train`.

    `target_loss` is added to the target loss before its backward pass; `update` runs after the segmentation
    network's optimiser step with detached outputs of both domains (e.g. to train discriminators)."""

    def target_loss(self, aux_t, main_t, it: int) -> torch.Tensor | float:
        return 0.0

    def update(self, src_outputs, tgt_outputs, it: int) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


METHODS = ("source_only", "minent", "advent")


SOURCE_LABEL, TARGET_LABEL = 0.0, 1.0


DEFAULTS = {
    "lambda_main": 1e-3,
    "lambda_aux": 2e-4,
    "lr_d": 1e-4,
    "betas": (0.9, 0.99),
    "ndf": 64,
}


class Discriminator(nn.Sequential):
    """ADVENT's output-space discriminator: five 4×4 convs of stride 2 (padding 1), C → ndf → 2ndf → 4ndf → 8ndf → 1,
    LeakyReLU(0.2) between them; returns (N, 1, h, w) logits, each spatial size about 1/32 of the input."""

    def __init__(self, num_classes: int, ndf: int = 64):
        widths = [num_classes, ndf, ndf * 2, ndf * 4, ndf * 8, 1]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1))
            if i < len(widths) - 2:
                layers.append(nn.LeakyReLU(negative_slope=0.2, inplace=True))
        super().__init__(*layers)


def discriminator_output_size(n: int, convs: int = 5) -> int:
    """Spatial size after the discriminator's convs (k 4, s 2, p 1): ⌊(n + 2 − 4)/2⌋ + 1 each."""
    for _ in range(convs):
        n = (n - 2) // 2 + 1
    return n


def _prob(logits: torch.Tensor, size) -> torch.Tensor:
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)
    return F.softmax(logits, dim=1)


class MinEnt(Adapter):
    """Entropy minimisation on the target: λ_main·E(main) + λ_aux·E(aux) (E: `entropy_loss`)."""

    def __init__(self, lambda_main: float, lambda_aux: float, target_size=None):
        self.lambda_main, self.lambda_aux, self.target_size = float(lambda_main), float(lambda_aux), target_size

    def target_loss(self, aux_t, main_t, it: int):
        loss = self.lambda_main * entropy_loss(_prob(main_t, self.target_size))
        if aux_t is not None and self.lambda_aux:
            loss = loss + self.lambda_aux * entropy_loss(_prob(aux_t, self.target_size))
        return loss


class AdvEnt(Adapter):
    """Adversarial entropy minimisation with one discriminator per head (main; aux when λ_aux > 0)."""

    def __init__(
        self,
        num_classes: int,
        device,
        *,
        lambda_main: float,
        lambda_aux: float,
        lr_d: float,
        betas=(0.9, 0.99),
        ndf: int = 64,
        horizon: int,
        power: float = 0.9,
        source_size=None,
        target_size=None,
    ):
        self.lambda_main, self.lambda_aux = float(lambda_main), float(lambda_aux)
        self.lr_d, self.horizon, self.power = float(lr_d), int(horizon), float(power)
        self.source_size, self.target_size = source_size, target_size
        for what, size in (("source", source_size), ("target", target_size)):
            if size is not None and min(size) < 32:
                raise ValueError(
                    f"advent: {what} input size {list(size)} is under 32 px; the discriminators' five stride-2 convs "
                    "need at least 32"
                )
        heads = ["main"] + (["aux"] if self.lambda_aux else [])
        self.discriminators = nn.ModuleDict({h: Discriminator(num_classes, ndf).to(device) for h in heads})
        self.optimizers = {
            h: torch.optim.Adam(d.parameters(), lr=self.lr_d, betas=tuple(betas))
            for h, d in self.discriminators.items()
        }

    def _lambda(self, head: str) -> float:
        return self.lambda_main if head == "main" else self.lambda_aux

    def target_loss(self, aux_t, main_t, it: int):
        """Fool the discriminators: target maps scored against the source label; D's parameters get no gradient."""
        outputs = {"main": main_t, "aux": aux_t}
        loss = 0.0
        for head, d in self.discriminators.items():
            if outputs[head] is None:
                continue
            d.requires_grad_(False)
            try:
                score = d(self_information(_prob(outputs[head], self.target_size)))
            finally:
                d.requires_grad_(True)
            loss = loss + self._lambda(head) * bce(score, SOURCE_LABEL)
        return loss

    def update(self, src_outputs, tgt_outputs, it: int) -> dict:
        """One step of each discriminator: BCE(D(I_s), 0)/2 + BCE(D(I_t), 1)/2 on detached outputs."""
        lr = self.lr_d * (1.0 - it / self.horizon) ** self.power
        (aux_s, main_s), (aux_t, main_t) = src_outputs, tgt_outputs
        outputs = {"main": (main_s, main_t), "aux": (aux_s, aux_t)}
        losses = {}
        for head, d in self.discriminators.items():
            src, tgt = outputs[head]
            if src is None or tgt is None:
                continue
            opt = self.optimizers[head]
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss_s = bce(d(self_information(_prob(src.detach(), self.source_size))), SOURCE_LABEL) / 2
            loss_s.backward()
            loss_t = bce(d(self_information(_prob(tgt.detach(), self.target_size))), TARGET_LABEL) / 2
            loss_t.backward()
            opt.step()
            losses[f"d_{head}"] = float(loss_s.detach() + loss_t.detach())
        return losses

    def state_dict(self) -> dict:
        return {
            "discriminators": self.discriminators.state_dict(),
            "optimizers": {h: o.state_dict() for h, o in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.discriminators.load_state_dict(state["discriminators"])
        for h, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][h])


def build_adapter(method: str, params: dict | None, num_classes: int, device) -> Adapter | None:
    """The adapter of a training method; None for `source_only` (or None/"none").

    params (all optional unless noted): `lambda_main`, `lambda_aux` (λ of the entropy or adversarial terms),
    `lr_d`, `betas`, `ndf` (AdvEnt's discriminators), `horizon` (poly horizon of the discriminators' lr; required
    for AdvEnt), `power`, `source_size`, `target_size` ([H, W] the outputs are upsampled to before softmax).
    """
    if method in (None, "none", "source_only"):
        return None
    if method not in METHODS:
        raise ValueError(f"unknown adaptation method {method!r} (known: {', '.join(METHODS)})")
    p = {**DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
    if method == "minent":
        return MinEnt(p["lambda_main"], p["lambda_aux"], target_size=p.get("target_size"))
    if "horizon" not in p:
        raise ValueError("advent: the discriminators' poly horizon ('horizon') is required")
    return AdvEnt(
        num_classes,
        device,
        lambda_main=p["lambda_main"],
        lambda_aux=p["lambda_aux"],
        lr_d=p["lr_d"],
        betas=p["betas"],
        ndf=p["ndf"],
        horizon=p["horizon"],
        power=p.get("power", 0.9),
        source_size=p.get("source_size"),
        target_size=p.get("target_size"),
    )


def adapter_params(train_params: dict, source_size, target_size) -> dict:
    """The `build_adapter` params of a workflow training section: its `adapt` mapping (λs, lr_d), the poly horizon
    and power of the segmentation network, and the two input sizes."""
    p = dict(train_params.get("adapt") or {})
    p.setdefault("horizon", train_params.get("poly_iters") or train_params["iters"])
    p.setdefault("power", train_params.get("power", 0.9))
    p["source_size"] = list(source_size) if source_size is not None else None
    p["target_size"] = list(target_size) if target_size is not None else None
    return p
