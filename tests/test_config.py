"""Job configs: one loader, pydantic models, every invalid field named with its dotted path."""

import pytest
import yaml

from movielib.config import JobConfig, Section, load_config
from movielib.errors import ConfigError
from movielib.pipeline.config import TagConfig, load_tag_config


@pytest.mark.parametrize(
    "override, message",
    [
        ({"scoring.batch_size": 0}, "scoring.batch_size must be > 0, got 0"),
        ({"scoring.num_cpus": -1}, "scoring.num_cpus must be > 0"),
        ({"decode.memory_gb": 0}, "decode.memory_gb must be > 0"),
        ({"scoring.num_gpus": -1}, "scoring.num_gpus must be >= 0"),
        ({"scoring.num_gpus": "lots"}, "scoring.num_gpus must be"),
        ({"scoring.clean_threshold": 0.05}, "scoring.clean_threshold must be >= scoring.multi_threshold (0.1)"),
        ({"scoring.clean_threshold": 1.5}, "scoring.clean_threshold must be <= 1"),
        ({"scoring.min_actors": 3, "scoring.max_actors": 2}, "scoring.min_actors must be <= scoring.max_actors (2)"),
        ({"scoring.prompt": "a photo"}, "scoring.prompt must contain '{label}'"),
        ({"scoring.top_k": 2.5}, "scoring.top_k must be an integer"),
        (
            {"shots.detector": "magic"},
            "shots.detector must be 'fast', 'content', 'adaptive' or 'transnetv2', got 'magic'",
        ),
        ({"shots.threshold": -2}, "shots.threshold must be > 0"),
        ({"model.precision": "fp8"}, "model.precision must be 'fp32'"),
        ({"model.name": [1, 2]}, "model.name must be a string"),
        ({"people.enabled": "yes"}, "people.enabled must be true/false, got 'yes'"),
        ({"sampling.fps": "4"}, "sampling.fps must be a number, got '4'"),
        ({"sampling.max_frames_per_shot": 0}, "sampling.max_frames_per_shot must be > 0"),
        ({"decode.decoder": "gpu"}, "decode.decoder must be 'auto', 'pyav' or 'nvdec'"),
        ({"scoring.bach_size": 8}, "unknown config field 'scoring.bach_size' (known: labels, prompt"),
        ({"nonsense.field": 1}, "unknown config field 'nonsense'"),
        ({"model": 3}, "model must be a mapping, got 3"),
    ],
)
def test_every_invalid_field_is_named(override, message):
    with pytest.raises(ConfigError) as err:
        load_tag_config(None, override)
    assert message in str(err.value)


def test_defaults_are_the_papers_and_ints_are_accepted_for_floats():
    cfg = load_tag_config(None, {"sampling.fps": 2, "scoring.num_gpus": 1})
    assert cfg.sampling.fps == 2.0 and isinstance(cfg.sampling.fps, float)
    assert cfg.model.name is None and cfg.model.precision == "fp32"  # None: the folder's config, else OpenAI ViT-B/32
    assert (cfg.scoring.top_k, cfg.scoring.clean_threshold, cfg.scoring.multi_threshold) == (5, 0.4, 0.1)
    assert cfg.shots.detector == "fast" and cfg.shots.min_scene_len == 15
    assert load_tag_config().scoring.num_gpus == "auto"


def test_yaml_file_then_overrides_and_the_resolved_config_round_trips(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("scoring:\n  batch_size: 8\n  max_actors: 4\nshots: {detector: content}\n")
    cfg = load_tag_config(str(path), {"scoring.batch_size": 16})
    assert (cfg.scoring.batch_size, cfg.scoring.max_actors, cfg.shots.detector) == (16, 4, "content")
    again = TagConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


class _Optim(Section):
    lr: float = 0.1
    epochs: int = 20


class _PretrainLike(JobConfig):
    optim: _Optim = _Optim()
    run_dir: str = "runs/x"


def test_any_job_schema_loads_through_the_same_loader(tmp_path):
    """Later jobs (pretrain, tune, serve) declare a JobConfig and get the same checks and messages."""
    path = tmp_path / "pretrain.yaml"
    path.write_text("optim: {lr: 0.01}\n")
    cfg = load_config(str(path), {"optim.epochs": 3}, schema=_PretrainLike)
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.run_dir) == (0.01, 3, "runs/x")
    with pytest.raises(ConfigError, match=r"unknown config field 'optim.momentum'"):
        load_config(None, {"optim.momentum": 0.9}, schema=_PretrainLike)
    with pytest.raises(ConfigError, match=r"optim.epochs must be an integer, got 'many'"):
        load_config(None, {"optim.epochs": "many"}, schema=_PretrainLike)
