"""Weight averaging (`ema`): an exponential moving average of the trained weights, evaluated and kept
instead of the weights of the last step.

After every optimizer step each trained weight's average moves towards it: avg = ema * avg + (1 - ema)
* w, so it spans about 1 / (1 - ema) steps (ema 0.99: the last ~100). Until the run has made that
many steps it is the plain mean of all of them (the rate at step t is min(ema, t / (t + 1))), so the
starting weights weigh no more than any step's. Both engines evaluate, pick the best
evaluation and save the model with the averaged weights swapped in, and keep the live weights (what the
optimizer goes on training) in their checkpoints beside the average (average.safetensors), so that a
resumed run continues both exactly.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

FILE = "average.safetensors"


class WeightAverage:
    def __init__(self, model: torch.nn.Module, ema: float) -> None:
        self.ema = ema
        self.weights = {n: w for n, w in model.named_parameters() if w.requires_grad}
        self.average = {n: w.detach().float().clone() for n, w in self.weights.items()}
        self.steps = 0
        self.depth = 0  # nested swaps (the Trainer evaluates a dict of datasets one by one)

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        rate = min(self.ema, self.steps / (self.steps + 1))
        for name, w in self.weights.items():
            self.average[name].mul_(rate).add_(w.detach().float(), alpha=1 - rate)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """The model carries the averaged weights inside the block, its own again after it."""
        if self.depth:
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
            return
        live = {n: w.detach().clone() for n, w in self.weights.items()}
        self.depth = 1
        try:
            with torch.no_grad():
                for name, w in self.weights.items():
                    w.copy_(self.average[name])
            yield
        finally:
            self.depth = 0
            with torch.no_grad():
                for name, w in self.weights.items():
                    w.copy_(live[name])

    def save(self, folder: Path) -> None:
        tensors = {n: a.contiguous() for n, a in self.average.items()}
        save_file(tensors, str(folder / FILE), metadata={"steps": str(self.steps), "ema": str(self.ema)})

    def load(self, folder: Path) -> None:
        with safe_open(str(folder / FILE), "pt") as saved:
            self.steps = int(saved.metadata()["steps"])
            for name, a in self.average.items():
                a.copy_(saved.get_tensor(name))

    @torch.no_grad()
    def apply(self, folder: Path) -> None:
        """Put the average saved in this checkpoint folder into the model (for good)."""
        saved = load_file(str(folder / FILE))
        for name, w in self.weights.items():
            w.copy_(saved[name])


def averaging(model: torch.nn.Module, ema: float) -> WeightAverage | None:
    return WeightAverage(model, ema) if ema else None
