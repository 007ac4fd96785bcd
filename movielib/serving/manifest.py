"""Where `movielib serve --write-serve-config PATH` writes: a Serve config file, or a RayService's serveConfigV2.

A RayService carries the Serve config as a YAML string. Generating it into the manifest (rather than pasting)
keeps the cluster's application the one `movielib serve` runs locally; the rest of the manifest, comments
included, is left as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from movielib.errors import ConfigError

_BLOCK = re.compile(r"^(?P<indent>\s*)serveConfigV2:\s*\|[-+]?\s*(#.*)?$")


def is_rayservice(manifest: str) -> bool:
    """True when `manifest` holds a RayService (among other documents or alone)."""
    try:
        docs = list(yaml.safe_load_all(manifest))
    except yaml.YAMLError:
        return False
    return any(isinstance(d, dict) and d.get("kind") == "RayService" for d in docs)


def with_serve_config(manifest: str, serve_yaml: str) -> str:
    """`manifest` with the body of its `serveConfigV2: |` block replaced by `serve_yaml`."""
    lines = manifest.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _BLOCK.match(line)), None)
    if start is None:
        raise ConfigError("the RayService has no `serveConfigV2: |` block to write the Serve config into")
    indent = len(_BLOCK.match(lines[start])["indent"]) + 2
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # blank lines after the block stay where they were
        end -= 1
    body = "".join(" " * indent + line if line.strip() else line for line in serve_yaml.splitlines(keepends=True))
    return "".join(lines[: start + 1]) + body + "".join(lines[end:])


def rayservice_serve_config(manifest: str) -> dict:
    """The Serve config a RayService manifest deploys (its serveConfigV2, parsed)."""
    for doc in yaml.safe_load_all(manifest):
        if isinstance(doc, dict) and doc.get("kind") == "RayService":
            return yaml.safe_load(doc["spec"]["serveConfigV2"])
    raise ConfigError("no RayService in the manifest")


class _Plain(yaml.SafeDumper):
    """YAML without anchors: both applications carry the same args, written out in full for a person to read."""

    def ignore_aliases(self, data) -> bool:
        return True


def write_serve_config(config: dict, path: str) -> str:
    """Write `config` (serving.app.serve_config) to `path`; returns what was written, for the user."""
    target = Path(path)
    text = yaml.dump(config, Dumper=_Plain, sort_keys=False)
    existing = target.read_text(encoding="utf-8") if target.is_file() else ""
    if is_rayservice(existing):
        updated = with_serve_config(existing, text)
        assert rayservice_serve_config(updated) == config, "the RayService's serveConfigV2 did not round-trip"
        target.write_text(updated, encoding="utf-8")
        return f"wrote the Serve config into {path}'s serveConfigV2: kubectl apply -f {path}"
    target.write_text(text, encoding="utf-8")
    return f"wrote {path}: serve run {path}"
