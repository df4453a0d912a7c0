import pytest

from global_loc.config import (
    LocalizationConf,
    PipelineConf,
    available_presets,
    from_dict,
    load_preset,
    parse_override,
    to_dict,
)
from global_loc.errors import ConfigError
from global_loc.features import create_extractor
from global_loc.retrieval import create_global_model


def test_default_preset_loads_and_is_strict():
    conf = load_preset()
    assert conf.name == "sift"
    assert conf.features["name"] == "sift" and conf.global_descriptor["name"] == "vlad"
    assert "sift" in available_presets()


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown configuration key 'localization.min_inlier'"):
        from_dict(PipelineConf, {"localization": {"min_inlier": 3}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="localization.min_inliers: expected an integer"):
        from_dict(PipelineConf, {"localization": {"min_inliers": "many"}})
    with pytest.raises(ConfigError, match="expected true or false"):
        from_dict(PipelineConf, {"matching": {"mutual": 1}})


def test_ints_are_accepted_for_floats():
    c = from_dict(LocalizationConf, {"ransac_max_error_px": 4})
    assert c.ransac_max_error_px == 4.0 and isinstance(c.ransac_max_error_px, float)


def test_overrides_and_inherit(tmp_path):
    conf = load_preset("sift", ["localization.min_inliers=30", "features.max_keypoints=1000"])
    assert conf.localization.min_inliers == 30
    assert conf.features["max_keypoints"] == 1000
    custom = tmp_path / "mine.yaml"
    custom.write_text("inherit: sift\nlocalization:\n  num_retrieved: 3\n")
    c = load_preset(str(custom))
    assert c.name == "mine" and c.localization.num_retrieved == 3
    assert c.features["max_keypoints"] == 4096  # inherited
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


def test_unknown_preset_and_bad_override():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="section.key=value"):
        load_preset("sift", ["localization.min_inliers"])


def test_model_options_are_checked_by_the_model():
    with pytest.raises(ConfigError, match="unknown configuration key 'sift.max_kpts'"):
        create_extractor({"name": "sift", "max_kpts": 10})
    with pytest.raises(ConfigError, match="unknown local feature extractor 'surf'"):
        create_extractor({"name": "surf"})
    with pytest.raises(ConfigError, match="unknown global descriptor 'bow'"):
        create_global_model({"name": "bow"})
    with pytest.raises(ConfigError, match="unknown configuration key 'vlad.clusters'"):
        create_global_model({"name": "vlad", "clusters": 3})


def test_resolve_conf_layers_preset_defaults_overrides_then_only_what_was_set(caplog):
    """preset -> input defaults (where the preset selects none) -> --set/preset_overrides ->
    settings the user gave; a setting left unset (None) changes nothing."""
    from global_loc.config import STREAM_KEYFRAME_DEFAULTS, resolve_conf

    base = resolve_conf()
    assert base.mapping.keyframe_min_distance_m == 0.0  # an image folder: every image is a keyframe
    stream = resolve_conf(defaults=STREAM_KEYFRAME_DEFAULTS)
    assert stream.mapping.keyframe_min_distance_m == 0.2 and stream.mapping.keyframe_min_rotation_deg == 10.0
    # --set wins over a flag's default (a flag not given is a setting of None)
    c = resolve_conf(None, ["mapping.keyframe_min_distance_m=1.5"], {"mapping.keyframe_min_distance_m": None},
                     defaults=STREAM_KEYFRAME_DEFAULTS)
    assert c.mapping.keyframe_min_distance_m == 1.5 and c.mapping.keyframe_min_rotation_deg == 10.0
    # a flag given explicitly wins over --set, and says so
    with caplog.at_level("WARNING", logger="global_loc"):
        c = resolve_conf(None, ["localization.min_inliers=30"], {"localization.min_inliers": 50})
    assert c.localization.min_inliers == 50
    assert "localization.min_inliers=30 (override) is replaced by the setting given explicitly: 50" in caplog.text
    # the map's recorded settings are the base when no preset is named
    recorded = to_dict(load_preset())
    recorded["localization"]["min_inliers"] = 40
    assert resolve_conf(None, (), {"localization.min_inliers": None}, base=recorded).localization.min_inliers == 40
    assert resolve_conf("sift", (), base=recorded).localization.min_inliers == 15  # a named preset replaces it
    with pytest.raises(ConfigError, match="unknown configuration key 'localization.min_inlier'"):
        resolve_conf(None, (), {"localization.min_inlier": 3})
