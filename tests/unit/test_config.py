"""The training CLI's flags: one per config field, unset flags keep the defaults."""

from pathlib import Path

from training.config import TrainConfig, build_parser, config_from_args


def parse(*flags: str) -> TrainConfig:
    return config_from_args(build_parser("test").parse_args(list(flags)))


def test_no_flags_give_the_defaults():
    assert parse() == TrainConfig()


def test_none_overrides_a_default_that_is_not_none():
    assert TrainConfig().samples_per_epoch is not None
    assert parse("--samples-per-epoch", "none").samples_per_epoch is None


def test_data_repeats_and_a_single_root_replaces_the_default_pair():
    assert parse("--data", "a").data == (Path("a"),)
    assert parse("--data", "a", "--data", "b").data == (Path("a"), Path("b"))


def test_nested_augment_and_boolean_flags():
    config = parse("--augment-gamma", "0.1", "--no-class-weighting")
    assert config.augment.gamma == 0.1 and config.class_weighting is False
    assert config.augment.noise == TrainConfig().augment.noise
