"""bf16 where users run it (GPU nodes), checked on the CPU: fp32 islands in MoCo and the similarity model, the
momentum update against its formula, and the config fields a GPU run depends on."""

import pytest
import torch
from torch import nn

from movielib.config import JobConfig, build_config
from movielib.errors import ConfigError
from movielib.train.config import ScalingSection
from movielib.train.launcher import fp32_islands, keep_fp32_islands
from movielib.train.movies2scenes.moco import MoCo
from movielib.train.movies2scenes.similarity import MovieSimilarity


def _moco(momentum: float = 0.999) -> MoCo:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 16))
    return MoCo(encoder, 16, dim=8, queue=32, momentum=momentum, temperature=0.07)


def test_under_bf16_the_key_encoder_moves_by_the_momentum_formula():
    """theta_k <- m theta_k + (1 - m) theta_q: in fp32 (an island) every key weight moves; a bf16 key (what
    DeepSpeed's cast leaves without the island) would not move at all for most weights."""
    moco = _moco()
    moco = keep_fp32_islands(moco.bfloat16(), fp32_islands(moco))  # what Worker.engine leaves under bf16
    assert next(moco.query.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in moco.key.parameters()) and moco.queue.keys.dtype == torch.float32
    with torch.no_grad():  # a query encoder that has moved away from its key copy
        for p in moco.query.parameters():
            p.add_(torch.randn_like(p.float()).to(p.dtype) * 0.05)
    before = [p.detach().clone() for p in moco.key.parameters()]
    query = [p.detach().float().clone() for p in moco.query.parameters()]
    loss, logits = moco(torch.randn(4, 3, 4), torch.randn(4, 3, 4))
    for pk, k0, q in zip(moco.key.parameters(), before, query):
        assert torch.allclose(pk, 0.999 * k0 + 0.001 * q, atol=1e-7, rtol=0)  # the formula, in fp32
        assert (pk != k0).float().mean() > 0.9  # it moved
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    # the failure the island prevents: the same update on a bf16 key leaves most weights where they were
    k16 = before[1].bfloat16()
    moved = k16.clone().mul_(0.999).add_(query[1].bfloat16(), alpha=0.001)
    assert (moved == k16).float().mean() > 0.5


def test_under_bf16_the_genre_models_input_statistics_keep_their_fp32_values():
    """A log-mel mean of 7.15 with a spread of 0.14 per band: cast to bf16 (7.15625) the standardised input would
    be off by 0.04 standard deviations; the island keeps the values from before the cast."""
    from movielib.train.genre.config import GenreModelSection
    from movielib.train.genre.model import GenreModel

    m = GenreModelSection(expert_dim=8, gate_hidden=8, clip_dim=4, clips=2, sequences=1, sequence_dim=4,
                          bottleneck=4, head_hidden=4)  # fmt: skip
    model = GenreModel({"audio": 3}, 2, m).standardize({"audio": ([7.15, 6.9, 7.3], [0.14, 0.2, 0.11])})
    saved = fp32_islands(model)
    model = keep_fp32_islands(model.bfloat16(), saved)
    assert model.proj["audio"].weight.dtype == torch.bfloat16
    assert model.norm["audio"].mean.dtype == torch.float32
    assert torch.equal(model.norm["audio"].mean, torch.tensor([7.15, 6.9, 7.3]))
    assert torch.equal(model.norm["audio"].std, torch.tensor([0.14, 0.2, 0.11]))
    batch = {"audio": torch.full((1, 2, 3), 7.15), "audio_valid": torch.ones(1, 2, dtype=torch.bool)}
    assert torch.isfinite(model(batch).logits.float()).all()


def test_bf16_models_take_fp32_inputs_and_give_fp32_outputs():
    model = MovieSimilarity(in_dim=6, dim=8, shots=16, avg=(4, 2), max_=(3, 2), dropout=0.0).bfloat16()
    logit = model(torch.randn(2, 16, 6), torch.randn(2, 16, 6), torch.ones(2, 16, dtype=torch.bool), None)
    assert logit.dtype == torch.float32 and logit.shape == (2,)
    loss = nn.functional.binary_cross_entropy_with_logits(logit, torch.ones(2))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gpu_fields_a_gpu_run_depends_on_are_checked():
    class Job(JobConfig):
        scaling: ScalingSection = ScalingSection()

    with pytest.raises(ConfigError, match=r"scaling.gpus_per_worker must be 0 or a whole number of GPUs .* got 0.5"):
        build_config(Job, {"scaling": {"gpus_per_worker": 0.5}})
    assert build_config(Job, {"scaling": {"gpus_per_worker": 1}}).scaling.gpus_per_worker == 1
