"""Differentially private training (DP-SGD through Opacus) and what it spent.

DP-SGD (Abadi et al., CCS 2016): each step draws a Poisson sample of the training examples
(each one in with probability ``q = batch_size / n``), clips every example's gradient to L2 norm
``max_grad_norm`` (C), adds Gaussian noise of standard deviation ``σ·C`` to their sum, and
divides by the expected batch size. ``σ`` is the smallest noise that keeps the planned steps
within the target ``(ε, δ)`` under the accountant (Rényi DP, Mironov 2017, by default; or PRV,
Gopi et al. 2021); the ε actually spent (fewer steps when early stopping ends sooner) is
reported. Per-example gradients come from Opacus's hooks on the modules that train, so a model
whose bottom is frozen (cached features, a cached frozen bottom, LoRA) computes them for its
trained part only.

The guarantee covers the examples the private trainer steps on; a validation split that picks
the epoch is read outside it. Opacus is an optional extra (``pip install
'shoptransfer[privacy]'``), imported only when a run asks for privacy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from shoptransfer.errors import ConfigError

ACCOUNTANTS = ("rdp", "prv")
KEYS = ("epsilon", "delta", "max_grad_norm", "accountant")
HELP = (
    "differential privacy by DP-SGD (Opacus): {epsilon: target ε, delta: δ (default 1/(10 n)), "
    "max_grad_norm: per-example clipping bound (default 1), accountant: 'rdp' or 'prv'}; "
    "null: off"
)


@dataclasses.dataclass(frozen=True)
class PrivacySettings:
    """A target ``(epsilon, delta)`` and the clipping bound of DP-SGD.

    ``delta=None``: ``1 / (10 n)`` for ``n`` training examples (well below ``1/n``, the level at
    which releasing one example outright would meet the definition).
    """

    epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    def delta_for(self, examples: int) -> float:
        return self.delta if self.delta is not None else 1.0 / (10 * max(1, examples))


def privacy_settings(value: Any, where: str) -> PrivacySettings | None:
    """``value`` (a YAML mapping such as ``{epsilon: 8, delta: 1e-5}``, or null) as settings;
    anything else is a ConfigError naming ``where``, the key and what was expected."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where} is {value!r}; expected a mapping such as {{epsilon: 8, delta: 1e-5}}"
        )
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {list(KEYS)}")
    if "epsilon" not in value:
        raise ConfigError(f"{where}: 'epsilon' is missing; expected a number above 0 (such as 8)")

    def number(key: str, low: float, high: float = math.inf) -> float:
        raw = value[key]
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (low < number < high):
            bound = f"between {low} and {high}" if math.isfinite(high) else f"above {low}"
            raise ConfigError(f"{where}: '{key}' is {raw!r}; expected a number {bound}")
        return number

    accountant = value.get("accountant", "rdp")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(
            f"{where}: 'accountant' is {accountant!r}; expected one of {list(ACCOUNTANTS)}"
        )
    return PrivacySettings(
        epsilon=number("epsilon", 0.0),
        delta=number("delta", 0.0, 1.0) if value.get("delta") is not None else None,
        max_grad_norm=number("max_grad_norm", 0.0) if "max_grad_norm" in value else 1.0,
        accountant=accountant,
    )


@contextmanager
def quiet_hooks() -> Iterator[None]:
    """A backward pass without torch's warning that Opacus's hooks fire on a module whose
    inputs need no gradient (a trained head over frozen features: the expected case)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


def require_opacus() -> Any:
    """The opacus package, or a one-line ConfigError saying how to install it."""
    try:
        import opacus
    except ImportError:
        raise ConfigError(
            "differential privacy (privacy:) needs Opacus: pip install 'shoptransfer[privacy]'"
        ) from None
    return opacus


class PrivateSteps:
    """DP-SGD around one :class:`~shoptransfer.training.Trainer` fit: the noise for the planned
    steps, Poisson-sampled batches, per-example clipping and noise in ``step``, the accountant.

    ``model``'s trainable modules get Opacus's per-example gradient hooks until :meth:`close`.
    """

    def __init__(
        self,
        settings: PrivacySettings,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        examples: int,
        batch_size: int,
        steps: int,
        seed: int,
    ) -> None:
        opacus = require_opacus()
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator

        model.train()  # as it trains (Opacus checks the training-mode layers)
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise ConfigError(
                f"privacy: the model has layers that mix examples or that Opacus cannot clip "
                f"per example ({'; '.join(sorted({str(p) for p in problems}))[:200]})"
            )
        self.settings, self.examples, self.steps = settings, examples, steps
        self.sample_rate = min(1.0, batch_size / examples)
        self.expected_batch_size = batch_size
        self.delta = settings.delta_for(examples)
        with warnings.catch_warnings():  # Opacus warns that alpha orders may be widened
            warnings.simplefilter("ignore")
            self.noise_multiplier = float(
                get_noise_multiplier(
                    target_epsilon=settings.epsilon,
                    target_delta=self.delta,
                    sample_rate=self.sample_rate,
                    steps=max(1, steps),
                    accountant=settings.accountant,
                )
            )
        self.accountant = create_accountant(settings.accountant)
        self.module = opacus.GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.noise = torch.Generator().manual_seed(seed + 7919)
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=settings.max_grad_norm,
            expected_batch_size=batch_size,
            loss_reduction="mean",
            generator=self.noise,
        )
        self.steps_taken = 0
        self.unused: list[nn.Parameter] = []  # trainable, but the loss never reaches them

    def batches(
        self, examples: Any, generator: torch.Generator
    ) -> Iterator[tuple[dict[str, Any] | None, int]]:
        """One epoch's Poisson-sampled batches: ``(batch, size)`` for each of ``ceil(n / B)``
        steps; ``batch`` is None when the draw took no example."""
        n = len(examples)
        for _ in range(-(-n // self.expected_batch_size)):
            chosen = torch.rand(n, generator=generator) < self.sample_rate
            rows = np.flatnonzero(chosen.numpy())
            if len(rows) == 0:
                yield None, 0
                continue
            # the generator shuffles within the sample and lets photos be augmented, as usual
            yield next(examples.subset(rows).batches(len(rows), generator)), len(rows)

    def step(self) -> None:
        """Clip each example's gradient, add the noise, step the wrapped optimiser.

        A trainable parameter the loss does not reach (a pooler the model never calls) has no
        gradient: it stays out of the step, as it would with no privacy (no noise lands on it).
        """
        for p in self.optimizer.params:
            if p.grad is None and getattr(p, "grad_sample", None) is None:
                p.requires_grad_(False)
                self.unused.append(p)
        self.optimizer.step()
        self._account()

    def empty_step(self) -> None:
        """A step whose Poisson draw took no example: the noise alone, as DP-SGD prescribes."""
        std = self.noise_multiplier * self.settings.max_grad_norm
        for p in self.optimizer.params:
            noise = torch.normal(0.0, std, p.shape, generator=self.noise)
            p.grad = (noise / self.expected_batch_size).to(p.dtype)
        self.optimizer.original_optimizer.step()
        self._account()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _account(self) -> None:
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps_taken += 1

    def epsilon(self) -> float:
        """The ε spent so far at this fit's δ (0 before the first step)."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.accountant.get_epsilon(delta=self.delta))

    def state(self) -> list[Any]:
        return list(self.accountant.history)

    def restore(self, history: list[Any]) -> None:
        self.accountant.history = [tuple(entry) for entry in history]
        self.steps_taken = sum(int(entry[2]) for entry in history)

    def report(self) -> dict[str, Any]:
        """What the fit spent and how: recorded with the result."""
        return {
            "epsilon": round(self.epsilon(), 4),
            "delta": self.delta,
            "target_epsilon": self.settings.epsilon,
            "max_grad_norm": self.settings.max_grad_norm,
            "noise_multiplier": round(self.noise_multiplier, 4),
            "sample_rate": round(self.sample_rate, 6),
            "steps": self.steps_taken,
            "planned_steps": self.steps,
            "examples": self.examples,
            "accountant": self.settings.accountant,
            "sampling": "poisson",
        }

    def close(self) -> None:
        """Remove the per-example hooks and gradients from the model."""
        self.module._close()
        for p in self.unused:
            p.requires_grad_(True)


def combined(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One record of several private fits of a recipe (a source stage, then a target stage).

    The stages train on disjoint examples (the source's, then the target's), so each example
    is covered by its own stage's guarantee: the model's ε is the largest (parallel
    composition), δ likewise."""
    if not reports:
        return None
    if len(reports) == 1:
        return reports[0]
    return {
        "epsilon": max(r["epsilon"] for r in reports),
        "delta": max(r["delta"] for r in reports),
        "composition": "parallel (the stages read disjoint examples)",
        "stages": reports,
    }
