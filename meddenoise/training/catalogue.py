"""The dataset catalogue: the shared data's manifest.json read as sets with role, licence and series folders.

Training reads only ``train`` sets and selects on ``validation`` sets; asking for a set in the
wrong role is a ConfigError, so a recipe cannot leak validation data into training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from meddenoise.errors import ConfigError

Role = Literal["train", "validation", "fixture"]


@dataclass(frozen=True)
class DataSet:
    """One collection from the manifest."""

    name: str
    role: str
    anatomy: str
    licence: str
    citation: str
    folders: tuple[Path, ...]

    def provenance(self) -> dict[str, str]:
        """The model-card entry for this set."""
        return {
            "collection": self.name,
            "role": self.role,
            "licence": self.licence,
            "citation": self.citation,
        }


def load_sets(*, shared_root: Path, names: tuple[str, ...], role: Role) -> list[DataSet]:
    """The named sets, checked to exist and to have ``role``."""
    manifest_path = shared_root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(
            f"{manifest_path}: not found; set data.shared_root to the shared data folder"
        ) from err
    sets = []
    for name in names:
        if name not in manifest:
            raise ConfigError(f"{manifest_path}: no set named {name!r}; known sets: {', '.join(manifest)}")
        entry = manifest[name]
        if entry["role"] != role:
            raise ConfigError(f"set {name!r} has role {entry['role']!r}, not {role!r}; roles are fixed")
        folders = tuple(shared_root / s["folder"] for s in entry.get("series", []))
        sets.append(
            DataSet(
                name=name,
                role=entry["role"],
                anatomy=entry.get("anatomy", ""),
                licence=entry.get("licence", ""),
                citation=entry.get("citation", ""),
                folders=folders,
            )
        )
    return sets
