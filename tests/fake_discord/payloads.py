"""Builders for realistic Discord API v10 JSON payloads (what Discord itself sends).

Every function returns a fresh ``dict`` shaped like the documented object, with ids as strings,
so discord.py parses it through its normal code paths. Nothing here does I/O.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import discord

Payload = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Interaction types (https://discord.com/developers/docs/interactions/receiving-and-responding).
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Application command option types.
OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11

# Message flags.
FLAG_EPHEMERAL = 64
FLAG_LOADING = 128
FLAG_COMPONENTS_V2 = 1 << 15

MEMBER_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_application_commands=True,
    use_external_emojis=True,
).value
BOT_PERMISSIONS = (
    discord.Permissions(MEMBER_PERMISSIONS)
    | discord.Permissions(manage_messages=True, send_messages_in_threads=True)
).value


class Snowflakes:
    """Generates unique, increasing snowflakes whose timestamp part is "now"."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return self._last


def timestamp() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int, username: str, *, bot: bool = False) -> Payload:
    return {
        "id": str(user_id),
        "username": username,
        "global_name": None if bot else username.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
    }


def bot_user(user_id: int, username: str) -> Payload:
    """The ``GET /users/@me`` answer for a bot account."""
    data = user(user_id, username, bot=True)
    data.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})
    return data


def application(app_id: int, *, name: str, owner: Payload, bot: Payload) -> Payload:
    return {
        "id": str(app_id),
        "name": name,
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "bot": bot,
        "bot_public": False,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "flags": 0,
        "owner": owner,
        "team": None,
        "hook": True,
        "is_monetized": False,
        "interactions_endpoint_url": None,
        "redirect_uris": [],
        "tags": [],
        "integration_types_config": {"0": {}, "1": {}},
        "approximate_guild_count": 1,
    }


def role(role_id: int, name: str, *, permissions: int, position: int) -> Payload:
    return {
        "id": str(role_id),
        "name": name,
        "description": None,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def member(user_payload: Payload, *, roles: list[int], joined_at: str | None = None) -> Payload:
    return {
        "user": user_payload,
        "nick": None,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in roles],
        "joined_at": joined_at or timestamp(),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
        "unusual_dm_activity_until": None,
    }


def text_channel(channel_id: int, *, guild_id: int, name: str, position: int) -> Payload:
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "topic": None,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "permission_overwrites": [],
        "flags": 0,
    }


def thread(channel_id: int, *, guild_id: int, parent_id: int, owner_id: int, name: str) -> Payload:
    """A public thread (type 11) under a text channel, as GUILD_CREATE lists active ones."""
    return {
        "id": str(channel_id),
        "type": 11,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": timestamp(),
            "locked": False,
        },
    }


def dm_channel(channel_id: int, recipient: Payload) -> Payload:
    return {"id": str(channel_id), "type": 1, "last_message_id": None, "recipients": [recipient]}


def guild(
    guild_id: int,
    *,
    name: str,
    owner_id: int,
    roles: list[Payload],
    channels: list[Payload],
    members: list[Payload],
    threads: Sequence[Payload] = (),
) -> Payload:
    """A GUILD_CREATE payload (the full guild the gateway sends after READY)."""
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(owner_id),
        "region": None,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "features": [],
        "roles": roles,
        "emojis": [],
        "stickers": [],
        "soundboard_sounds": [],
        "system_channel_id": channels[0]["id"] if channels else None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "vanity_url_code": None,
        "application_id": None,
        "joined_at": timestamp(),
        "large": False,
        "unavailable": False,
        "lazy": True,
        "member_count": len(members),
        "members": members,
        "channels": [{k: v for k, v in c.items() if k != "guild_id"} for c in channels],
        "threads": [{k: v for k, v in t.items() if k != "guild_id"} for t in threads],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "premium_progress_bar_enabled": False,
    }


def ready(
    *,
    user_payload: Payload,
    app_id: int,
    guild_ids: list[int],
    session_id: str,
    resume_url: str,
) -> Payload:
    return {
        "v": 10,
        "user": user_payload,
        "guilds": [{"id": str(g), "unavailable": True} for g in guild_ids],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_url,
        "shard": [0, 1],
        "application": {"id": str(app_id), "flags": 0},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["us-east"],
        "user_settings": {},
        "_trace": ['["fake-gateway",{"micros":1}]'],
    }


def app_command(spec: Payload, *, command_id: int, app_id: int, guild_id: int | None) -> Payload:
    """What Discord answers for one command of a bulk overwrite: the spec plus ids."""
    data: Payload = {
        "type": 1,
        "description": "",
        "options": [],
        "default_member_permissions": None,
        "nsfw": False,
        "contexts": None,
        "integration_types": [0],
        **spec,
        "id": str(command_id),
        "application_id": str(app_id),
        "version": str(command_id),
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    else:
        data.setdefault("dm_permission", True)
    return data


def attachment(
    attachment_id: int,
    *,
    filename: str,
    size: int,
    url: str,
    content_type: str | None,
    description: str | None = None,
    ephemeral: bool = False,
) -> Payload:
    data: Payload = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "placeholder": None,
        "flags": 0,
    }
    if description is not None:
        data["description"] = description
    if ephemeral:
        data["ephemeral"] = True
    return data


def interaction_metadata(
    *, interaction_id: int, interaction_type: int, user_payload: Payload, guild_id: int | None
) -> Payload:
    owners = {"0": str(guild_id)} if guild_id else {"1": user_payload["id"]}
    return {
        "id": str(interaction_id),
        "type": interaction_type,
        "user": user_payload,
        "authorizing_integration_owners": owners,
    }


def interaction(
    *,
    interaction_id: int,
    interaction_type: int,
    data: Payload,
    app_id: int,
    token: str,
    guild_id: int,
    channel: Payload,
    member_payload: Payload,
    member_permissions: int,
    app_permissions: int,
    attachment_size_limit: int,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    message: Payload | None = None,
) -> Payload:
    """An INTERACTION_CREATE payload for a guild channel, as Discord sends it in 2025."""
    payload: Payload = {
        "id": str(interaction_id),
        "application_id": str(app_id),
        "type": interaction_type,
        "data": data,
        "guild_id": str(guild_id),
        "guild": {"id": str(guild_id), "locale": guild_locale, "features": []},
        "channel_id": channel["id"],
        "channel": {**channel, "permissions": str(member_permissions)},
        "member": {**member_payload, "permissions": str(member_permissions)},
        "token": token,
        "version": 1,
        "app_permissions": str(app_permissions),
        "locale": locale,
        "guild_locale": guild_locale,
        "entitlement_sku_ids": [],
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild_id)},
        "context": 0,
        "attachment_size_limit": attachment_size_limit,
    }
    if message is not None:
        payload["message"] = message
    return payload


def interaction_token(interaction_id: int) -> str:
    """A token with the same alphabet and roughly the length of Discord's."""
    return f"aW50ZXJhY3Rpb246{interaction_id}_" + secrets.token_urlsafe(96)
