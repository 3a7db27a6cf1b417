"""Configuration: layer parsing, the preset < --config file < flags merge, validation and its messages, presets."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
from pathlib import Path

import pytest

from dreamvid import presets
from dreamvid.config import (
    Config,
    DreamParams,
    LayerSpec,
    VideoParams,
    format_layers,
    load_toml,
    merge,
    parse_layers,
    resolve,
)
from dreamvid.errors import ConfigError, DreamvidError

BUILTIN = ("lysergic", "subtle", "nightmare", "thumbnail")


def raises_config_error(match: str):
    """pytest.raises for a ConfigError whose message matches ``match`` (a regex)."""
    return pytest.raises(ConfigError, match=match)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


# ---- layers -----------------------------------------------------------------------------------------------------

def test_parse_layers_string_with_weights_and_channel_ranges():
    specs = parse_layers("mixed3:1,mixed5[10-12]:1.5")
    assert specs == (LayerSpec("mixed3", 1.0, ()), LayerSpec("mixed5", 1.5, (10, 11, 12)))


def test_parse_layers_channel_lists_default_weight_and_spaces():
    specs = parse_layers(" mixed4[1, 3-4] , mixed0 : 2e-1 ")
    assert specs == (LayerSpec("mixed4", 1.0, (1, 3, 4)), LayerSpec("mixed0", 0.2, ()))


def test_parse_layers_from_a_table_and_a_list():
    assert parse_layers({"mixed3": 1, "mixed5": 1.5}) == (LayerSpec("mixed3", 1.0), LayerSpec("mixed5", 1.5))
    assert parse_layers(["mixed3:1", "mixed5[2]:2"]) == (LayerSpec("mixed3", 1.0), LayerSpec("mixed5", 2.0, (2,)))


def test_the_last_channel_of_each_layer_is_accepted():
    assert parse_layers("mixed0[255],mixed3[767],mixed8[1279],mixed10[2047]")[-1].channels == (2047,)


def test_format_layers_round_trips():
    specs = parse_layers("mixed3:0.6,mixed4[12,40-42]:1,mixed5:-0.5")
    text = format_layers(specs)
    assert text == "mixed3:0.6,mixed4[12,40,41,42]:1,mixed5:-0.5"
    assert parse_layers(text) == specs


@pytest.mark.parametrize(
    "value, match",
    [
        ("mixed99:1", r"unknown layer 'mixed99' \(did you mean 'mixed9'\?\)"),
        ("mixd3:1", r"unknown layer 'mixd3' \(did you mean 'mixed3'\?\)"),
        ("conv2d_1:1", r"unknown layer 'conv2d_1'.*mixed0\.\.mixed10"),
        ("mixed3[9-2]:1", r"bad channel range '9-2'"),
        ("mixed3[10,768]:1", r"channel 768 is out of range for mixed3, which has channels 0\.\.767"),
        ("mixed0[256]", r"channel 256 is out of range for mixed0"),
        ("mixed3:1.2.3", r"bad weight '1\.2\.3'"),
        ("mixed3[a]:1", r"cannot read layer 'mixed3\[a\]:1'"),
        ("mixed3:1,mixed3:2", r"layer 'mixed3' is given twice"),
        ("", r"no layers given"),
        (" , ", r"no layers given"),
        ("mixed3:0,mixed5:0", r"all layer weights are 0"),
        (5, r"layers must be a string"),
    ],
)
def test_parse_layers_errors_are_clear(value, match):
    with raises_config_error(match) as e:
        parse_layers(value)
    one_line(e)


# ---- resolve: defaults, coercion, precedence --------------------------------------------------------------------

def test_resolve_with_nothing_gives_the_defaults():
    cfg = resolve()
    assert cfg.dream == DreamParams() and cfg.video == VideoParams()
    assert cfg.audio == {} and cfg.preset is None


def test_resolve_coerces_types():
    cfg = resolve({"dream": {"octaves": 3.0, "step_size": 1, "layers": {"mixed4": 2}}, "video": {"flow": "DIS"}})
    assert cfg.dream.octaves == 3 and type(cfg.dream.octaves) is int
    assert cfg.dream.step_size == 1.0 and type(cfg.dream.step_size) is float
    assert cfg.dream.layers == (LayerSpec("mixed4", 2.0),)
    assert cfg.video.flow == "dis"


def test_precedence_preset_then_config_file_then_flags(tmp_path):
    preset = presets.load("thumbnail")
    cfg_file = tmp_path / "mine.toml"
    cfg_file.write_text('[dream]\noctaves = 2\nsteps = 5\nlayers = "mixed4:1"\n[video]\nblend = 0.2\n')
    flags = {"dream": {"steps": 2}}
    cfg = resolve(preset, load_toml(cfg_file), flags, preset="thumbnail")
    assert cfg.dream.steps == 2  # flag beats file and preset
    assert cfg.dream.octaves == 2  # file beats preset
    assert cfg.dream.layers == (LayerSpec("mixed4", 1.0),)
    assert cfg.video.blend == 0.2
    assert cfg.dream.step_size == preset["dream"]["step_size"]  # only the preset sets it
    assert cfg.dream.tile_overlap == DreamParams().tile_overlap  # nobody sets it: the default
    assert cfg.preset == "thumbnail"
    assert cfg.description == preset["description"]


def test_none_layers_are_skipped_by_merge_and_resolve():
    assert resolve(None, {"dream": {"steps": 3}}, None).dream.steps == 3


# ---- resolve: unknown names and bad values ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "layer, match",
    [
        ({"dream": {"step": 3}}, r"unknown key 'dream\.step' \(did you mean 'steps'\?\)"),
        ({"video": {"blnd": 0.5}}, r"unknown key 'video\.blnd' \(did you mean 'blend'\?\)"),
        ({"draem": {"steps": 3}}, r"unknown config section 'draem' \(did you mean 'dream'\?\)"),
        ({"dream": 5}, r"\[dream\] must be a table"),
        ({"audio": 5}, r"\[audio\] must be a table"),
    ],
)
def test_unknown_keys_and_sections_are_named_with_a_suggestion(layer, match):
    with raises_config_error(match) as e:
        resolve(layer)
    one_line(e)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("dream", "steps", 0),
        ("dream", "steps", True),
        ("dream", "steps", "ten"),
        ("dream", "octaves", 2.5),
        ("dream", "octaves", 13),
        ("dream", "octave_scale", 0.5),
        ("dream", "step_size", 0),
        ("dream", "jitter", -1),
        ("dream", "tile_size", 64),
        ("dream", "seed", -3),
        ("video", "blend", 2),
        ("video", "blend", "half"),
        ("video", "flow", "lucas-kanade"),
        ("video", "warp", 3),
        ("video", "scene_cut", 0),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(section, key, value):
    with raises_config_error(rf"{section}\.{key} must be") as e:
        resolve({section: {key: value}})
    msg = one_line(e)
    assert repr(value) in msg


def test_tile_overlap_must_be_under_half_the_tile():
    with raises_config_error(r"tile_overlap \(64\) must be under half of dream\.tile_size \(128\)"):
        resolve({"dream": {"tile_size": 128, "tile_overlap": 64}})
    assert resolve({"dream": {"tile_size": 128, "tile_overlap": 63}}).dream.tile_overlap == 63


def test_config_errors_are_dreamvid_errors_with_exit_code_2():
    assert issubclass(ConfigError, DreamvidError)
    assert ConfigError.exit_code == 2


# ---- purity ---------------------------------------------------------------------------------------------------

def test_merge_returns_a_new_dict_and_leaves_inputs_untouched():
    a = {"dream": {"steps": 1, "layers": "mixed3:1"}, "audio": {"layers": {"mixed3": {"by": "low"}}}}
    b = {"dream": {"steps": 2}, "audio": {"layers": {"mixed3": {"gain": [1, 2]}}}, "description": "b"}
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    out = merge(a, b)
    assert out == {
        "dream": {"steps": 2, "layers": "mixed3:1"},
        "audio": {"layers": {"mixed3": {"by": "low", "gain": [1, 2]}}},
        "description": "b",
    }
    assert a == a0 and b == b0
    out["dream"]["steps"] = 99
    out["audio"]["layers"]["mixed3"]["by"] = "high"
    assert a == a0 and b == b0, "the merged dict must not share nested tables with its inputs"


def test_resolve_does_not_mutate_its_inputs():
    preset = presets.load("lysergic")
    flags = {"dream": {"steps": 3, "octave_scale": 1.5}}
    p0, f0 = copy.deepcopy(preset), copy.deepcopy(flags)
    resolve(preset, flags)
    assert preset == p0 and flags == f0


def test_config_is_frozen_and_replace_makes_a_copy():
    cfg = resolve({"dream": {"steps": 4}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dream.steps = 5  # type: ignore[misc]
    changed = cfg.dream.replace(steps=7)
    assert changed.steps == 7 and cfg.dream.steps == 4


def test_to_dict_round_trips_through_resolve_and_json():
    cfg = resolve({"dream": {"layers": "mixed3:0.5,mixed5[3-5]:2", "steps": 4, "seed": 9},
                   "video": {"blend": 0.25}, "description": "mine"}, preset="mine")
    d = cfg.to_dict()
    assert d["dream"]["layers"] == "mixed3:0.5,mixed5[3,4,5]:2"
    assert resolve(d) == cfg
    assert resolve(json.loads(json.dumps(d))) == cfg


# ---- presets --------------------------------------------------------------------------------------------------

def test_builtin_presets_are_found(clean_env):
    found = presets.available()
    assert set(BUILTIN) <= set(found)
    for name in BUILTIN:
        assert found[name].name == f"{name}.toml"
        assert presets.describe(name), f"preset {name} has no description"


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_preset_resolves(name, clean_env):
    table = presets.load(name)
    if table.get("audio"):
        pytest.importorskip("dreamvid.schedule", reason="the [audio] table needs dreamvid.schedule")
    cfg = resolve(table, preset=name)
    assert isinstance(cfg, Config) and cfg.preset == name
    assert cfg.description == table["description"]
    assert cfg.dream.layers == parse_layers(table["dream"]["layers"])
    assert resolve(cfg.to_dict()) == cfg


def test_every_preset_file_in_the_folder_resolves(clean_env):
    found = presets.available()
    assert set(BUILTIN) <= set(found), found
    for name, path in found.items():  # an ImportError here (e.g. of the [audio] validation) fails the test
        table = load_toml(path)
        cfg = resolve(table, preset=name)
        assert isinstance(cfg, Config), name
        d = cfg.to_dict()
        live = {"live"} if "live" in table else set()  # [live]: only presets made for `dreamvid live` have one
        assert set(d) == {"preset", "description", "dream", "video", "motion", "audio"} | live, name
        assert set(d["dream"]) == {f.name for f in dataclasses.fields(DreamParams)}, name
        assert set(d["video"]) == {f.name for f in dataclasses.fields(VideoParams)}, name
        assert cfg.preset == name and cfg.description == table["description"] and cfg.description.strip(), name
        for key, value in table.get("dream", {}).items():  # every key the file sets is the one the run uses
            want = format_layers(parse_layers(value)) if key == "layers" else value
            assert d["dream"][key] == want, f"{name}: dream.{key}"
        for key, value in table.get("video", {}).items():
            assert d["video"][key] == value, f"{name}: video.{key}"
        for key, value in table.get("motion", {}).items():
            assert d["motion"][key] == value, f"{name}: motion.{key}"
        if table.get("audio"):
            assert cfg.audio and set(table["audio"]) <= set(cfg.audio), f"{name}: [audio] was dropped"


def test_unknown_preset_is_named_with_a_suggestion(clean_env):
    with raises_config_error(r"unknown preset 'lysergc' \(did you mean 'lysergic'\?\)") as e:
        presets.find("lysergc")
    one_line(e)
    with raises_config_error(r"preset file .*nope\.toml does not exist"):
        presets.find("nope.toml")


def test_user_presets_shadow_builtins_and_paths_work(clean_env, tmp_path, monkeypatch):
    user = tmp_path / "user_presets"
    user.mkdir()
    (user / "subtle.toml").write_text('description = "my subtle"\n[dream]\nsteps = 2\n')
    (user / "mine.toml").write_text('description = "mine"\n[dream]\nsteps = 3\n')
    monkeypatch.setenv("DREAMVID_PRESETS", str(user))
    found = presets.available()
    assert found["subtle"] == user / "subtle.toml"
    assert found["mine"] == user / "mine.toml"
    assert "lysergic" in found
    assert presets.describe("subtle") == "my subtle"
    assert presets.load(str(user / "mine.toml"))["dream"]["steps"] == 3  # a path, not a name


def test_load_toml_errors_are_one_line(tmp_path):
    with raises_config_error(r"config file .*missing\.toml does not exist") as e:
        load_toml(tmp_path / "missing.toml")
    one_line(e)
    bad = tmp_path / "bad.toml"
    bad.write_text("[dream\nsteps = 3\n")
    with raises_config_error(r"config file .*bad\.toml is not valid TOML") as e:
        load_toml(bad)
    one_line(e)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with raises_config_error(r"binary\.toml") as e:
        load_toml(binary)
    one_line(e)


# ---- packaging ------------------------------------------------------------------------------------------------

def test_presets_ship_inside_the_wheel(tmp_path):
    """The built-in presets travel in the wheel as dreamvid/presets_data/, and the installed package finds them."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling", reason="the wheel build needs hatchling")
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(tmp_path / "dist"), str(repo)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except (OSError, subprocess.TimeoutExpired) as e:  # pragma: no cover - no pip here
        pytest.skip(f"cannot run pip wheel: {e}")
    if proc.returncode != 0 and "No module named pip" in proc.stderr:  # pragma: no cover
        pytest.skip("pip is not installed in this environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = list((tmp_path / "dist").glob("dreamvid-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as zf:
        names = set(zf.namelist())
        for name in BUILTIN:
            member = f"dreamvid/presets_data/{name}.toml"
            assert member in names, f"{member} is not in the wheel"
            assert zf.read(member) == (repo / "presets" / f"{name}.toml").read_bytes()
        zf.extractall(tmp_path / "site")
    # the unpacked wheel (as pip would install it) finds its presets without the repository
    probe = "import dreamvid.presets as p; print(p.builtin_dir()); print(sorted(p.available()))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PYTHONPATH": str(tmp_path / "site"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    folder, listed = out.stdout.splitlines()[:2]
    assert Path(folder) == tmp_path / "site" / "dreamvid" / "presets_data"
    assert set(BUILTIN) <= set(ast.literal_eval(listed))
