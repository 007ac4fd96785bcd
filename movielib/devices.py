"""Where torch runs: one device policy for every stage, model and detector.

Ray 2.60 no longer hides GPUs from tasks and actors that reserved none, so "use cuda when it is
visible" would put CPU stages on GPU 0 beside the scoring actors that did reserve it. The rule
here: inside a Ray worker a stage uses a GPU only when Ray assigned it one (`ray.get_gpu_ids()`);
outside Ray (the driver, a script, a test) a visible GPU is used.
"""

from __future__ import annotations


def choose_device(cuda_available: bool, in_ray_worker: bool, assigned_gpus: list) -> str:
    """The policy itself, as a pure function: 'cuda' or 'cpu'."""
    if not cuda_available:
        return "cpu"
    if in_ray_worker:
        return "cuda" if assigned_gpus else "cpu"
    return "cuda"


def in_ray_worker() -> bool:
    """True inside a Ray task or actor (not on the driver)."""
    try:
        import ray
        from ray._private import worker
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized() and worker.global_worker.mode == worker.WORKER_MODE


def assigned_gpus() -> list:
    """GPU ids Ray assigned to this task or actor ([] outside Ray)."""
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # pragma: no cover - not connected
        return []


def torch_device() -> str:
    """The device this process's stage may use: see the module docstring."""
    import torch

    inside = in_ray_worker()
    return choose_device(torch.cuda.is_available(), inside, assigned_gpus() if inside else [])
