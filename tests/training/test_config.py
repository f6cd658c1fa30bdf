"""Training recipes: every shipped config loads; bad keys, types and values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from meddenoise.errors import ConfigError
from meddenoise.training import load_recipe
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.toml"))
MINIMAL = '[data]\ntrain_sets = ["nsclc-radiogenomics-R01-001"]\n'


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_configs_folder_is_not_empty() -> None:
    assert CONFIGS, f"no configs in {REPO_ROOT / 'configs'}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.source == path
    assert recipe.data.train_sets or recipe.data.aapm_root or recipe.data.tcia_root
    assert recipe.model.context_slices % 2 == 1


def test_minimal_recipe_takes_the_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, MINIMAL))
    assert recipe.data.train_sets == ("nsclc-radiogenomics-R01-001",)
    assert recipe.train.loss == "l1" and isinstance(recipe.train.learning_rate, float)


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = _recipe(tmp_path, MINIMAL + "[train]\nlearning_rat = 1e-3\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: unknown key train.learning_rat (did you mean 'learning_rate'?)"


def test_unknown_key_without_a_close_match_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key output\.zzz; valid keys: dir"):
        load_recipe(_recipe(tmp_path, MINIMAL + "[output]\nzzz = 1\n"))


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[optimiser\]; valid sections: data, model"):
        load_recipe(_recipe(tmp_path, MINIMAL + "[optimiser]\nlr = 1\n"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('batch_size = "16"', "train.batch_size must be int, got '16'"),
        ("iterations = true", "train.iterations must be int, got True"),
        ("learning_rate = [1]", "train.learning_rate must be float"),
        ('loss = "l3"', "train.loss = 'l3'; valid values: l1, mse"),
    ],
)
def test_wrong_type_or_value_names_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = _recipe(tmp_path, MINIMAL + f"[train]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_floats_given_as_integers_or_in_e_notation_are_floats(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, MINIMAL + "[train]\nlearning_rate = 1\nweight_decay = 1e-4\n"))
    assert recipe.train.learning_rate == 1.0 and isinstance(recipe.train.learning_rate, float)
    # TOML, unlike YAML 1.1, reads 1e-4 as a number: the PyYAML pitfall cannot happen.
    assert recipe.train.weight_decay == pytest.approx(1e-4) and isinstance(recipe.train.weight_decay, float)


def test_lists_become_tuples_of_the_declared_length(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, MINIMAL + "dose_range = [0.2, 0.4]\n"))
    assert recipe.data.dose_range == (0.2, 0.4)
    with pytest.raises(ConfigError, match=r"data\.dose_range must have 2 items, got 3"):
        load_recipe(_recipe(tmp_path, MINIMAL + "dose_range = [0.1, 0.2, 0.3]\n"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("dose_range = [0.6, 0.2]", "data.dose_range must satisfy 0 < low <= high <= 1"),
        ("pixel_scales = [1.0, 0.1]", "data.pixel_scales must be factors between 0.4 and 2.5"),
        ("pixel_scales = []", "data.pixel_scales must be factors between 0.4 and 2.5"),
        ("[model]\ncontext_slices = 2", "model.context_slices must be odd"),
        ("[train]\npatch_size = 8", "train.patch_size >= 16"),
        ("[model]\nnoise_level_cap_hu = -5.0", "model.noise_level_cap_hu = -5.0 needs a positive value"),
        ("[model]\nnoise_level_cap_hu = 60.0", "model.noise_level_cap_hu = 60.0 needs a positive value"),
    ],
)
def test_values_out_of_range_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_recipe(_recipe(tmp_path, MINIMAL + extra + "\n"))


def test_no_training_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.train_sets is empty"):
        load_recipe(_recipe(tmp_path, "[train]\niterations = 10\n"))


def test_missing_file_and_bad_toml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_recipe(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(_recipe(tmp_path, "[data\n"))
