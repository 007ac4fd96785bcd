"""Label sets and the prompt template CLIPSceneScore scores them with (MovieCLIP §4)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from movielib.errors import ConfigError

DEFAULT_PROMPT = "a photo of a {label}, a type of background location"
DEFAULT_LABELS_FILE = "movieclip_scene_labels.txt"


@dataclass(frozen=True)
class LabelSet:
    """An ordered tuple of labels plus the template each becomes a prompt through."""

    labels: tuple[str, ...]
    prompt: str = DEFAULT_PROMPT

    def __post_init__(self) -> None:
        if not self.labels:
            raise ConfigError("label set is empty")
        seen: set[str] = set()
        dupes = [lab for lab in self.labels if lab in seen or seen.add(lab)]
        if dupes:
            raise ConfigError(f"label set has duplicate labels: {sorted(set(dupes))[:5]}")
        if "{label}" not in self.prompt:
            raise ConfigError(f"scoring.prompt must contain '{{label}}', got {self.prompt!r}")

    @classmethod
    def movieclip(cls, prompt: str = DEFAULT_PROMPT) -> LabelSet:
        """The 179-label MovieCLIP taxonomy as its authors published it (shipped in the package)."""
        text = resources.files(__package__).joinpath(DEFAULT_LABELS_FILE).read_text(encoding="utf-8")
        return cls(labels=_parse(text), prompt=prompt)

    @classmethod
    def from_file(cls, path: str, prompt: str = DEFAULT_PROMPT) -> LabelSet:
        """One label per line; blank lines and '#' comments are ignored."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"scoring.labels: cannot read {path!r}: {exc.strerror}") from exc
        return cls(labels=_parse(text), prompt=prompt)

    def prompts(self) -> list[str]:
        return [self.prompt.format(label=label) for label in self.labels]

    def digest(self) -> str:
        """sha256 of the labels in order (16 hex digits): what a stored score vector's positions mean."""
        return hashlib.sha256("\n".join(self.labels).encode()).hexdigest()[:16]


def _parse(text: str) -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(line for line in lines if line)
