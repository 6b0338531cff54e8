from __future__ import annotations

from dse._settings import StudySettings


def test_round_trip_and_key_are_stable() -> None:
    settings = StudySettings(model="digits-vgg-bn", failures=(1, 2), threshold_range=(0.0, 1.0))
    again = StudySettings.from_dict(settings.to_dict())
    assert again == settings
    assert again.key() == settings.key()


def test_default_study_name_changes_with_settings() -> None:
    base = StudySettings(model="digits-vgg-bn")
    other = StudySettings(model="digits-vgg-bn", sampler="random")
    assert base.default_study_name() != other.default_study_name()
    assert base.default_study_name().startswith("digits-vgg-bn-nd4-acc-mem-energy-")
    assert base.differences(other) == ["sampler"]
