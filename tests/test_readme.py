"""The README's configuration tables name every setting the service reads."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from app.complaints.archive import ArchiveConfig
from app.config import Settings
from app.notifications.adapters import NotificationSettings

README = Path(__file__).resolve().parent.parent / "README.md"


def variables(settings: type[BaseSettings]) -> set[str]:
    """The environment variable of each field (the first of its alias choices, if any)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    found = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            found.add(alias.choices[0])
        else:
            found.add(prefix + (field.alias or name).upper())
    return found


def documented() -> set[str]:
    """The variables named in the rows of the README's configuration tables."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = (line for line in section.splitlines() if line.startswith("| `"))
    return {
        name for row in rows for name in re.findall(r"`((?:HOTLINE_|DATABASE_)[A-Z0-9_]+)`", row)
    }


def test_every_setting_is_in_the_readme() -> None:
    every = variables(Settings) | variables(NotificationSettings) | variables(ArchiveConfig)
    assert "DATABASE_URL" in every
    missing = sorted(every - documented())
    assert not missing, f"settings the README's configuration does not name: {missing}"


def test_the_readme_names_no_setting_the_service_does_not_read() -> None:
    every = variables(Settings) | variables(NotificationSettings) | variables(ArchiveConfig)
    unknown = sorted(documented() - every)
    assert not unknown, f"the README names settings nothing reads: {unknown}"
