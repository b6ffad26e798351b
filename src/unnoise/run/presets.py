"""Named starting configs: the YAML files in unnoise/configs/ (also `configs/` at the repository root).
`--config FILE` reads a config of the same form (YAML or JSON); `--set` overrides fill in the rest."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnnoiseError, unknown_name

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("preset", name, preset_names())
    return read_config_file(path)


def read_config_file(path: Path) -> dict:
    """A nested config dict from a YAML (.yaml/.yml) or JSON file, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UnnoiseError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnnoiseError(f"{path}: not a text file (invalid UTF-8)") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnnoiseError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    else:
        data = _load_yaml(text, path)
    if not isinstance(data, dict):
        raise UnnoiseError(f"{path}: expected a mapping of sections (data, model, train, sample)")
    return data


def _load_yaml(text: str, path: Path):
    try:
        import yaml
    except ImportError:
        raise UnnoiseError(f"{path}: reading YAML needs PyYAML (pip install 'unnoise[all]')") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UnnoiseError(f"{path}: invalid YAML{where} ({getattr(exc, 'problem', exc)})") from None
