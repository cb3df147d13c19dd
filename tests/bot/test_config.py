import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import (
    BotConfig,
    ConfigError,
    DiscordConfig,
    ImagesConfig,
    LimitsConfig,
    ModerationConfig,
    PermissionsConfig,
    WebConfig,
    load_config,
    require_token,
)
from engine.config import ConfigError as EngineConfigError
from engine.config import JobLimits, parse_engine_config
from engine.prompt.request import SAMPLERS

EXAMPLE = Path(__file__).parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_no_file_gives_every_default() -> None:
    config = load_config(None, env={})
    assert config == BotConfig(engine=parse_engine_config({}))
    assert config.discord.token == ""
    assert config.limits.max_running_per_user == 3


def test_config_error_is_the_engines() -> None:
    assert ConfigError is EngineConfigError


def test_example_file_loads_with_default_values() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.discord == DiscordConfig()
    assert config.limits == LimitsConfig()
    assert config.permissions == PermissionsConfig()
    assert config.moderation == ModerationConfig()
    assert config.images == ImagesConfig()
    assert config.web == WebConfig() and not config.web.enabled
    assert config.engine.model == "sdxl"
    defaults = parse_engine_config({}, EXAMPLE.parent)
    assert config.engine == defaults
    assert config.engine.storage == EXAMPLE.parent / "data"


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = {
        "engine": [
            "model", "device", "dtype", "cache_dir", "preload", "preview_every", "job_timeout",
            "load_timeout", "shutdown_grace", "upscaler", "captioner", "threads",
            "max_loaded_models", "max_loaded_loras",
        ],
        "storage": ["path", "keep_days", "max_gb"],
        "models.dreamshaper": [
            "source", "family", "base_resolution", "steps", "guidance", "sampler", "revision",
            "variant", "vae", "preview", "style", "styles", "draft",
        ],
        "discord": list(DiscordConfig.__dataclass_fields__),
        "limits": [*LimitsConfig.__dataclass_fields__, *JobLimits.__dataclass_fields__],
        "permissions": list(PermissionsConfig.__dataclass_fields__),
        "moderation": list(ModerationConfig.__dataclass_fields__),
        "images": list(ImagesConfig.__dataclass_fields__),
        "web": ["listen", "public_url", "secret"],
        "loras.pixel": ["source", "weight_name", "weight", "trigger", "family"],
    }  # fmt: skip
    for table, names in keys.items():
        section = text.split(f"[{table}]", 1)[1].split("\n[", 1)[0].split("\n# [", 1)[0]
        for name in names:
            assert re.search(rf"^(# )?{name} = ", section, re.MULTILINE), f"{table}.{name}"
    for sampler in SAMPLERS:
        assert sampler in text


def test_example_files_commented_examples_are_valid(tmp_path: Path) -> None:
    # Uncomment every "# key = value" and "# [table]" line: the result must load too.
    text = re.sub(r'^# (?=\[|[a-z_]+ = |"[0-9.]+" = )', "", EXAMPLE.read_text(), flags=re.MULTILINE)
    config = load_config(write(tmp_path, text), env={})
    custom = config.engine.preset("dreamshaper")
    assert (custom.family, custom.revision, custom.style) == ("sd", "main", "highly detailed")
    assert custom.draft == "sdxl-turbo" and custom.style_text("cute") == "cute, chibi"
    assert config.engine.versions == {"6.1": "sdxl", "7": "sdxl", "5.2": "sdxl-turbo"}
    assert config.engine.preset("sdxl").steps == 25
    assert config.engine.preset("sdxl").family == "sdxl"  # unchanged fields stay
    assert config.engine.cache_dir == tmp_path / "models"
    assert config.engine.loras["pixel"].trigger == "pixel art"


def test_every_table_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [discord]
        token = "abc"
        guild_ids = [1, 2]
        [engine]
        model = "tiny"
        [storage]
        path = "state"
        [limits]
        max_running_per_user = 1
        max_queued_per_user = 0
        max_queued_total = 5
        max_jobs_per_prompt = 4
        max_steps = 60
        max_pixels = 2000000
        [permissions]
        allowed_guilds = [10]
        allowed_channels = [11]
        allowed_roles = [12]
        allow_dms = true
        admins = [13]
        admin_roles = [14]
        buttons_owner_only = true
        [moderation]
        banned_words = ["gore"]
        banned_patterns = ['\\bblood(y)?\\b']
        """,
    )
    config = load_config(path, env={})
    assert config.discord == DiscordConfig(token="abc", guild_ids=(1, 2))
    assert config.engine.model == "tiny"
    assert config.engine.storage == tmp_path / "state"
    assert config.database == tmp_path / "state" / "bot.sqlite3"
    assert config.limits == LimitsConfig(1, 0, 5, 4)
    assert config.engine.limits == JobLimits(max_steps=60, max_pixels=2_000_000)
    assert config.permissions == PermissionsConfig((10,), (11,), (12,), True, (13,), (14,), True)
    assert config.moderation == ModerationConfig(("gore",), (r"\bblood(y)?\b",))
    assert config.path == path


@pytest.mark.parametrize(
    ("env", "file_token", "expected"),
    [
        ({"DISCORD_TOKEN": "from-env"}, "from-file", "from-env"),
        ({}, "from-file", "from-file"),
        ({"DISCORD_TOKEN": ""}, "from-file", "from-file"),
        ({"DISCORD_TOKEN": "from-env"}, None, "from-env"),
    ],
)
def test_token_environment_wins(
    tmp_path: Path, env: dict[str, str], file_token: str | None, expected: str
) -> None:
    text = "" if file_token is None else f'[discord]\ntoken = "{file_token}"\n'
    config = load_config(write(tmp_path, text), env=env)
    assert require_token(config) == expected


def test_token_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "os-token")
    assert load_config(None).discord.token == "os-token"


def test_token_not_in_repr() -> None:
    assert "secret" not in repr(BotConfig(discord=DiscordConfig(token="secret")))


def test_require_token_says_where_to_set_it(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match=rf"DISCORD_TOKEN or \[discord\]\.token in .*{path.name}"):
        require_token(load_config(path, env={}))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path, env={})


def test_toml_syntax_error_names_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_queued_total = = 3\n")
    with pytest.raises(ConfigError, match=r"config\.toml.*line 2"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[discrod]\n", r"unknown table \[discrod\]"),
        ("discord = 3\n", r"\[discord\] must be a table"),
        ("[discord]\ntokn = 'x'\n", r"unknown key discord\.tokn"),
        ("[discord]\ntoken = 3\n", r"discord\.token must be str"),
        ("[discord]\nguild_ids = 5\n", r"discord\.guild_ids must be list"),
        ("[discord]\nguild_ids = [1, '2']\n", r"discord\.guild_ids\[1\] must be a Discord id"),
        ("[discord]\nguild_ids = [true]\n", r"discord\.guild_ids\[0\]"),
        ("[limits]\nmax_running_per_user = 0\n", r"limits\.max_running_per_user must be 1 or more"),
        ("[limits]\nmax_queued_total = -1\n", r"limits\.max_queued_total must be 0 or more"),
        ("[limits]\nmax_jobs_per_prompt = 2.5\n", r"limits\.max_jobs_per_prompt must be int"),
        ("[limits]\nmax_jobs = 2\n", r"unknown key limits\.max_jobs"),
        ("[limits]\nmax_steps = 0\n", r"limits\.max_steps must be from 1 to 1000"),
        ("[limits]\nmax_pixels = 1000\n", r"limits\.max_pixels must be 65536 \(256×256\) or more"),
        ("[limits]\nmax_pixels = '4M'\n", r"limits\.max_pixels must be int"),
        ("[permissions]\nallow_dms = 'yes'\n", r"permissions\.allow_dms must be bool"),
        ("[permissions]\nadmins = [-1]\n", r"permissions\.admins\[0\]"),
        ("[permissions]\nadmin = [1]\n", r"unknown key permissions\.admin"),
        ("[moderation]\nbanned_words = ['ok', '']\n", r"moderation\.banned_words\[1\]"),
        ("[images]\nallowed_networks = ['lan']\n", r"allowed_networks\[0\] is not a network"),
        ("[images]\nmax_mb = 0\n", r"images\.max_mb must be 1 or more"),
        ("[moderation]\nbanned_patterns = ['ok', '(']\n", r"moderation\.banned_patterns\[1\]"),
        ("[moderation]\nbanned_patterns = [3]\n", r"moderation\.banned_patterns\[0\]"),
        ("[engine]\nmodel = 'nope'\n", r"engine\.model"),
        ("versions = 3\n", r"\[versions\] must be a table"),
        ("[versions]\n'latest' = 'sdxl'\n", r"versions\.latest is not a Midjourney version"),
        ("[versions]\n'9' = 'sdxl'\n", r"versions\.9 is not a Midjourney version"),
        ("[versions]\n'6.1' = 'nope'\n", r"versions\.6\.1 must name a preset"),
        (
            "[models.sdxl]\ndraft = 'nope'\n",
            r"models\.sdxl\.draft is 'nope', which is not a preset",
        ),
        (
            "[models.niji]\nstyles = { kawaii = 'x' }\n",
            r"models\.niji\.styles\.kawaii is not a style",
        ),
        ("[models.niji]\nstyles = { cute = '' }\n", r"models\.niji\.styles\.cute must be a non"),
        ("[models.niji]\nstyles = 'cute'\n", r"models\.niji\.styles must be dict"),
        ("[engine]\nmodle = 'sdxl'\n", r"unknown key engine\.modle"),
        ("[engine]\nshutdown_grace = -1\n", r"engine\.shutdown_grace must be 0 or more"),
        ("[engine]\ncaptioner = ' '\n", r"engine\.captioner must name a captioning model"),
        ("[engine]\ncaptioner = 'builtin:tiny'\n", r"the built-in captioner is builtin:tiny-capt"),
        ("[storage]\nkeep_days = -1\n", r"storage\.keep_days must be 0 \(no limit\) or more"),
        ("[storage]\nmax_gb = 'lots'\n", r"storage\.max_gb must be float"),
        ("[storage]\nkeepdays = 3\n", r"unknown key storage\.keepdays"),
        ("[web]\nlisten = 'localhost'\n", r"web\.listen must be host:port"),
        ("[web]\nlisten = '127.0.0.1:0'\n", r"web\.listen .*\(a port from 1 to 65535\)"),
        ("[web]\nlisten = '::1:80'\n", r"web\.listen must be host:port .*\[::1\]:8080"),
        ("[web]\nlisten = 8080\n", r"web\.listen must be str"),
        ("[web]\npublic_url = 'bot.example.com'\n", r"web\.public_url must be an http"),
        ("[web]\npublic_url = 'ftp://bot.example.com'\n", r"web\.public_url must be an http"),
        ("[web]\npublic_url = 'https://x/?a=1'\n", r"web\.public_url must have no \?query"),
        ("[web]\npublicurl = 'https://x'\n", r"unknown key web\.publicurl"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env={})


@pytest.mark.parametrize(
    "source", ["builtin:tiny-captioner", "Salesforce/blip-image-captioning-base", "./blip"]
)
def test_the_captioner_is_a_hub_id_a_directory_or_the_tiny_one(tmp_path: Path, source: str) -> None:
    text = f"[engine]\ncaptioner = '{source}'\n"
    assert load_config(write(tmp_path, text), env={}).engine.captioner == source
    assert parse_engine_config({}).captioner == "Salesforce/blip-image-captioning-large"


def test_versions_map_midjourney_versions_to_presets(tmp_path: Path) -> None:
    text = "[versions]\n'6.1' = 'SDXL'\n'07' = 'niji'\n'5.20' = 'sdxl-turbo'\n"
    versions = load_config(write(tmp_path, text), env={}).engine.versions
    assert versions == {"6.1": "sdxl", "7": "niji", "5.2": "sdxl-turbo"}


def test_niji_has_the_four_named_styles_and_other_presets_none() -> None:
    engine = parse_engine_config({})
    assert sorted(name for name, _ in engine.preset("niji").styles) == [
        "cute", "expressive", "original", "scenic"
    ]  # fmt: skip
    assert engine.preset("sdxl").styles == () and engine.preset("sdxl").draft is None


def test_config_is_frozen() -> None:
    config = BotConfig()
    with pytest.raises(AttributeError):
        config.limits = LimitsConfig()  # type: ignore[misc]
    changed = replace(config, limits=LimitsConfig(max_running_per_user=1))
    assert changed.limits.max_running_per_user == 1


def test_example_is_valid_toml() -> None:
    with EXAMPLE.open("rb") as f:
        assert set(tomllib.load(f)) >= {"discord", "engine", "storage", "limits", "permissions"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", WebConfig()),
        ("[web]\nlisten = '0.0.0.0:9000'\n", WebConfig(host="0.0.0.0", port=9000)),
        ("[web]\nlisten = '[::1]:80'\n", WebConfig(host="::1", port=80)),
        (
            "[web]\npublic_url = 'https://bot.example.com/'\nsecret = 's3'\n",
            WebConfig(public_url="https://bot.example.com", secret="s3"),
        ),
        (
            "[web]\npublic_url = 'http://example.com:8443/imagine'\n",
            WebConfig(public_url="http://example.com:8443/imagine"),
        ),
    ],
)
def test_web_table(tmp_path: Path, text: str, expected: WebConfig) -> None:
    web = load_config(write(tmp_path, text), env={}).web
    assert web == expected
    assert web.enabled == bool(expected.public_url)


def test_web_secret_stays_out_of_repr() -> None:
    assert "hunter2" not in repr(WebConfig(secret="hunter2"))
