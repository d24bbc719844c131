"""Resume an interrupted train stage: the state after each completed epoch, keyed by what produced it.

The files (one per seed) live in checkpoints/<strategy>/, outside DVC's outputs (so `dvc repro` never
deletes them) and outside git. They cannot change a result: one is used only when its key matches the
run's config, seed, input files and code, and a resumed run ends with the same bytes as an
uninterrupted one.
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from transfer.atomic import save_torch
from transfer.digest import file_digest


@dataclass
class FitProgress:
    """Everything an epoch loop accumulates; enough, with the network and optimizer, to continue it."""

    history: list[dict] = field(default_factory=list)  # rows of history.json so far
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    images_trained: int = 0
    train_seconds: float = 0.0

    @property
    def completed_epochs(self) -> int:
        """Epochs finished so far."""
        return len(self.history)


def run_key(config: dict, input_files: Iterable[Path], code_files: Iterable[Path]) -> str:
    """SHA-256 over the resolved config and the contents of every input and code file."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for path in [*input_files, *sorted(code_files)]:
        digest.update(f"{path}:{file_digest(path, 'md5')}".encode())
    return digest.hexdigest()


class EpochCheckpoints:
    """Save after every epoch, load on start when the key matches (the train stage deletes them once it succeeds)."""

    def __init__(self, path: Path, key: str):
        self.path = path
        self.key = key

    def save(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, progress: FitProgress) -> None:
        """Write the state after the epoch just completed, atomically."""
        state = {
            "key": self.key,
            "net": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),  # dropout in an MLP head draws from it
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "progress": progress.__dict__,
        }
        save_torch(state, self.path)

    def keep_finished(self, progress: FitProgress) -> None:
        """Rewrite a finished seed's checkpoint without optimizer and scheduler state, keeping only what resumes it.

        A finished run never trains again: a rerun needs its progress (holding the best weights) alone.
        The net entry is those same tensors, which torch.save stores once, so the file shrinks from
        weights + optimizer moments + best weights (135 MB for full) to the best weights.
        """
        if not self.path.is_file():
            return
        state = {
            "key": self.key,
            "net": progress.best_state,
            "optimizer": {},
            "scheduler": {},
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "progress": progress.__dict__,
        }
        save_torch(state, self.path)

    def load(self, net: torch.nn.Module) -> tuple[FitProgress, dict]:
        """Restore a matching checkpoint into net; its progress and its phase's optimizer and scheduler states.

        The states are empty when nothing matched; they belong to the phase of the last completed epoch.
        """
        if not self.path.is_file():
            return FitProgress(), {}
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # a checkpoint is disposable: a broken one means starting over
            print(f"ignoring unreadable checkpoint {self.path}: {str(error).splitlines()[0]}; removed", flush=True)
            self.path.unlink(missing_ok=True)
            return FitProgress(), {}
        if not isinstance(state, dict) or state.get("key") != self.key:
            # Stale: it can never match again, and a full strategy's is 135 MB.
            print(f"ignoring checkpoint {self.path}: it was made with other params, data or code; removed", flush=True)
            self.path.unlink(missing_ok=True)
            return FitProgress(), {}
        net.load_state_dict(state["net"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return FitProgress(**state["progress"]), {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}
