"""What a stage needs from the scheduler, declared next to its code and mapped onto Ray in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageResources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int | None = None  # reserved per task/actor so the scheduler does not overpack

    def ray_args(self) -> dict:
        """Keyword arguments for `map_batches` (num_cpus / num_gpus / memory)."""
        args: dict = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        if self.memory_bytes:
            args["memory"] = self.memory_bytes
        return args
