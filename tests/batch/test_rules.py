"""Selection rules: TOML loading with strict keys, and each rule's verdict on real series headers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from meddenoise.batch.rules import SelectionRules, exclusion_reason, load_rules
from meddenoise.dicom import find_series
from meddenoise.errors import ConfigError
from tests.dicom.synthetic import make_series

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _info(folder: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    make_series(folder, **kwargs)  # type: ignore[arg-type]
    return find_series(folder).series[0]


def test_rules_file_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "rules.toml"
    file.write_text(
        'modality = ["CT"]\ndescription = "(?i)abd"\nmin_slices = 4\norientation = "any"\n'
        'exclude_series = ["1.2.3"]\n'
    )
    rules = load_rules(file)
    assert rules == SelectionRules(
        description="(?i)abd", min_slices=4, orientation="any", exclude_series=("1.2.3",)
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("min_slice = 3\n", "unknown key min_slice"),
        ('description = "(unclosed"\n', "not a valid regex"),
        ('orientation = "coronal"\n', "orientation = 'coronal'"),
        ('modality = "CT"\n', "modality must be a list"),
        ("min_slices = 0\n", "min_slices must be >= 1"),
        ("min_slices = [\n", "cannot read rules"),
    ],
)
def test_bad_rules_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "rules.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=r".*") as caught:
        load_rules(file)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_each_rule_excludes(tmp_path: Path) -> None:
    info = _info(tmp_path / "axial", n_slices=3)
    assert exclusion_reason(info, SelectionRules()) is None
    assert exclusion_reason(info, SelectionRules(min_slices=4)) == "3 slices < min_slices 4"
    assert exclusion_reason(info, SelectionRules(modality=("MR",))) == "modality CT not in ['MR']"
    assert (
        exclusion_reason(info, SelectionRules(exclude_series=(info.series_uid,))) == "series excluded by UID"
    )
    described = replace(info, description="CHEST 1.25 STANDARD", kernel="STANDARD")
    assert (
        exclusion_reason(described, SelectionRules(description="(?i)abdomen")) == "description does not match"
    )
    assert exclusion_reason(described, SelectionRules(description="(?i)chest")) is None
    assert exclusion_reason(described, SelectionRules(kernel="^BONE$")) == "kernel does not match"
    assert exclusion_reason(described, SelectionRules(exclude_kernel="STAND")) == "kernel excluded"
    assert (
        exclusion_reason(described, SelectionRules(exclude_description="(?i)chest")) == "description excluded"
    )
    sagittal = _info(tmp_path / "sagittal", n_slices=3, orientation=SAGITTAL)
    assert exclusion_reason(sagittal, SelectionRules()) == "not axial"
    assert exclusion_reason(sagittal, SelectionRules(orientation="any")) is None
