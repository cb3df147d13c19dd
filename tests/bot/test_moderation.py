from pathlib import Path

import pytest

from bot.config import ConfigError, ModerationConfig, PermissionsConfig, load_config
from bot.moderation import access_denied, banned_rule, fold, is_admin

GUILD, OTHER_GUILD = 100, 101
CHANNEL, OTHER_CHANNEL = 200, 201
ROLE, OTHER_ROLE = 300, 301
ADMIN_ROLE = 302
USER, ADMIN = 400, 401

DM_OFF = "Direct messages are turned off for this bot."
NOT_SERVER = "This bot is not enabled in this server."
NOT_CHANNEL = "This bot is not enabled in this channel."
NEED_ROLE = f"You need one of the roles <@&{ROLE}>, <@&{OTHER_ROLE}> to use this bot."

RESTRICTED = PermissionsConfig(
    allowed_guilds=(GUILD,),
    allowed_channels=(CHANNEL,),
    allowed_roles=(ROLE, OTHER_ROLE),
    admins=(ADMIN,),
    admin_roles=(ADMIN_ROLE,),
)


@pytest.mark.parametrize(
    ("perms", "guild", "channel", "user", "roles", "expected"),
    [
        # open by default, except DMs
        (PermissionsConfig(), GUILD, CHANNEL, USER, (), None),
        (PermissionsConfig(), None, CHANNEL, USER, (), DM_OFF),
        (PermissionsConfig(allow_dms=True), None, CHANNEL, USER, (), None),
        # DMs: admins may; the guild, channel and role lists do not apply there
        (RESTRICTED, None, OTHER_CHANNEL, ADMIN, (), None),
        (RESTRICTED, None, OTHER_CHANNEL, USER, (ROLE,), DM_OFF),
        (PermissionsConfig(allow_dms=True, allowed_channels=(CHANNEL,)), None, 9, USER, (), None),
        # guilds: nobody gets past them, admins included
        (RESTRICTED, GUILD, CHANNEL, USER, (ROLE,), None),
        (RESTRICTED, OTHER_GUILD, CHANNEL, USER, (ROLE,), NOT_SERVER),
        (RESTRICTED, OTHER_GUILD, CHANNEL, ADMIN, (), NOT_SERVER),
        (RESTRICTED, OTHER_GUILD, CHANNEL, USER, (ADMIN_ROLE,), NOT_SERVER),
        # channels
        (RESTRICTED, GUILD, OTHER_CHANNEL, USER, (ROLE,), NOT_CHANNEL),
        (RESTRICTED, GUILD, None, USER, (ROLE,), NOT_CHANNEL),
        (RESTRICTED, GUILD, OTHER_CHANNEL, ADMIN, (), None),
        (RESTRICTED, GUILD, OTHER_CHANNEL, USER, (ADMIN_ROLE,), None),
        # roles: any one of them will do
        (RESTRICTED, GUILD, CHANNEL, USER, (OTHER_ROLE, 999), None),
        (RESTRICTED, GUILD, CHANNEL, USER, (), NEED_ROLE),
        (RESTRICTED, GUILD, CHANNEL, USER, (999,), NEED_ROLE),
        (RESTRICTED, GUILD, CHANNEL, ADMIN, (), None),
        (RESTRICTED, GUILD, CHANNEL, USER, (ADMIN_ROLE,), None),
    ],
)
def test_access_denied(
    perms: PermissionsConfig,
    guild: int | None,
    channel: int | None,
    user: int,
    roles: tuple[int, ...],
    expected: str | None,
) -> None:
    got = access_denied(perms, guild_id=guild, channel_id=channel, user_id=user, role_ids=roles)
    assert got == expected


def test_role_reason_mentions_a_single_role() -> None:
    perms = PermissionsConfig(allowed_roles=(ROLE,))
    got = access_denied(perms, guild_id=GUILD, channel_id=CHANNEL, user_id=USER, role_ids=[])
    assert got == f"You need one of the roles <@&{ROLE}> to use this bot."


@pytest.mark.parametrize(
    ("user", "roles", "expected"),
    [
        (ADMIN, (), True),
        (USER, (ADMIN_ROLE,), True),
        (USER, {ROLE, ADMIN_ROLE}, True),
        (USER, (ROLE,), False),
        (USER, (), False),
    ],
)
def test_is_admin(user: int, roles: tuple[int, ...], expected: bool) -> None:
    assert is_admin(RESTRICTED, user_id=user, role_ids=roles) is expected


def test_nobody_is_admin_by_default() -> None:
    assert not is_admin(PermissionsConfig(), user_id=USER, role_ids=(ROLE,))


MOD = ModerationConfig(
    banned_words=("gore", "c++", "bad  thing"),
    banned_patterns=(r"\bblood(y|ied)?\b", r"^secret"),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat in a hat", None),
        ("", None),
        # words: whole words, any case
        ("gore", 'the banned word "gore"'),
        ("lots of GORE here", 'the banned word "gore"'),
        ("gore, everywhere", 'the banned word "gore"'),
        ("(gore)", 'the banned word "gore"'),
        ("gorey", None),
        ("a gorerific scene", None),
        ("algore", None),
        ("gore_fest", None),  # _ is a word character
        # words that end in a symbol still need a word boundary of their own kind
        ("learning c++ today", 'the banned word "c++"'),
        ("c++17", None),
        ("abc++", None),
        # phrases match across any whitespace
        ("a bad thing", 'the banned word "bad  thing"'),
        ("a Bad\n  Thing", 'the banned word "bad  thing"'),
        ("a bad things", None),
        # patterns: re.search, any case
        ("so Bloodied", "the pattern /\\bblood(y|ied)?\\b/"),
        ("bloodhound", None),
        ("Secret sauce", "the pattern /^secret/"),
        ("my secret", None),
        # words are checked before patterns
        ("bloody gore", 'the banned word "gore"'),
    ],
)
def test_banned_rule(text: str, expected: str | None) -> None:
    assert banned_rule(MOD, text) == expected


def test_nothing_banned_by_default() -> None:
    assert banned_rule(ModerationConfig(), "gore and blood") is None


def test_regex_metacharacters_in_words_are_literal() -> None:
    mod = ModerationConfig(banned_words=("a.b",))
    assert banned_rule(mod, "axb") is None
    assert banned_rule(mod, "see a.b now") == 'the banned word "a.b"'


# --- disguises: the text is folded before it is matched --------------------------------------

GORE = ModerationConfig(banned_words=("gore",), banned_patterns=(r"\bblood(y|ied)?\b",))


@pytest.mark.parametrize(
    "text",
    [
        "lots of g\u200bore",  # a zero-width space inside the word
        "lots of g\u200dor\u00ade",  # a zero-width joiner and a soft hyphen
        "lots of g\u043er\u0435",  # Cyrillic о and е
        "lots of \uff47\uff4f\uff52\uff45",  # fullwidth letters
        "lots of \U0001d420\U0001d428\U0001d42b\U0001d41e",  # mathematical bold
        "lots of GORE",
    ],
)
def test_disguised_banned_words_are_caught(text: str) -> None:
    assert banned_rule(GORE, text) == 'the banned word "gore"'


def test_patterns_match_the_folded_text_too() -> None:
    assert banned_rule(GORE, "a bl\u043e\u043ed\u0443 mess") == r"the pattern /\bblood(y|ied)?\b/"
    assert banned_rule(GORE, "a \u0432l\u043e\u043ed mess") is None  # в does not look like b


@pytest.mark.parametrize("text", ["a gory tale", "gorest", "ore g", "a forest glade"])
def test_folding_does_not_invent_matches(text: str) -> None:
    assert banned_rule(GORE, text) is None


def test_fold_keeps_other_scripts_that_do_not_look_latin() -> None:
    assert fold("Ünïcödé 漢字 Ж") == "ünïcödé 漢字 ж"
    assert fold("\u200bA\u00adB") == "ab"


def test_a_pattern_that_would_backtrack_forever_runs_in_linear_time() -> None:
    """With Python's re this call would not return in the lifetime of the machine (the test's
    timeout would fail it); RE2 answers at once."""
    evil = ModerationConfig(banned_patterns=(r"(a+)+$",))
    assert banned_rule(evil, "a" * 50_000 + "!") is None


def test_patterns_re2_cannot_run_are_refused_at_start_up(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[moderation]\nbanned_patterns = ['gore(?=s)']\n")
    with pytest.raises(
        ConfigError, match=r"banned_patterns\[0\] is not a pattern .*RE2.*lookarounds"
    ):
        load_config(config, env={})
