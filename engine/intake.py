"""One way in for every prompt, wherever it comes from (/imagine, a remix box, `imagine-bot
local`): the user's preferences are applied, the prompt is parsed, each request gets the model
preset it will run on, and what was mapped, rounded or ignored is said in its notes.

    text = expand_prompt(prompt, prefs)  # the suffix and custom options: what moderation reads
    reading = read_prompt(text, config, prefs, find_profile=store.profile_style)
    jobs = prompt_jobs(reading, owner="1234", limit=10)

Pure Python (never imports torch): the Discord front-end calls it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from engine.config import FAMILY_NAMES, ConfigError, EngineConfig, JobLimits, ModelPreset
from engine.jobs import Job, imagine_job
from engine.plan import final_size, planned_steps
from engine.prompt import ImagineRequest, PromptError, parse_prompt, parse_prompts
from engine.prompt.flags import FLAGS, split_reference
from engine.prompt.parser import flag_name
from engine.prompt.permutations import DEFAULT_LIMIT
from engine.prompt.request import LoraUse

_STYLIZE_FLAG = re.compile(r"(?:^|\s)(?:--|—|–)(?:s|stylize)(?=\s|$)", re.IGNORECASE)

ProfileLookup = Callable[[str], str | None]  # a --p code → that profile's style text


@dataclass(frozen=True)
class Preferences:
    """What one user's saved settings bring to their prompts (all empty: none, as locally)."""

    suffix: str = ""  # appended to every prompt
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)  # --NAME → its value
    model: str | None = None  # used when the prompt has no --v; None: the server's default
    stylize: int | None = None  # used when the prompt has no --s
    profile: str | None = None  # the user's own personalization text, for `--p` without codes
    loras: tuple[str, ...] = ()  # [loras] names used when the prompt has no --lora


@dataclass(frozen=True)
class Prompt:
    """One request of a prompt (after permutations) and the preset it runs on."""

    request: ImagineRequest  # its notes include the intake's (version mapping, --p, …)
    model: str


@dataclass(frozen=True)
class Reading:
    prompts: tuple[Prompt, ...]

    @property
    def notes(self) -> tuple[str, ...]:
        """Every note of every request, once each, in order."""
        return tuple(dict.fromkeys(n for p in self.prompts for n in p.request.notes))


def is_option_name(name: str) -> bool:
    """Whether `name` may be a custom option (`/prefer option set`): not one of the parameters."""
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name)) and name not in FLAGS


def expand_prompt(text: str, prefs: Preferences) -> str:
    """The prompt with the user's suffix at its end and their custom options (`--NAME`)
    replaced by their values: a value's text joins the prompt's text, its parameters the
    parameters. PromptError when a custom option is given a value of its own."""
    text = f"{text.strip()} {prefs.suffix.strip()}".strip()
    words = text.split()
    custom = [i for i, word in enumerate(words) if (flag_name(word) or "") in prefs.options]
    custom = [i for i in custom if flag_name(words[i]) not in FLAGS]
    if not custom:
        return text
    first_flag = next(i for i, word in enumerate(words) if flag_name(word) is not None)
    texts, params = words[:first_flag], []
    added: list[str] = []
    for i, word in enumerate(words[first_flag:], first_flag):
        if i not in custom:
            params.append(word)
            continue
        following = words[i + 1] if i + 1 < len(words) else None
        if following is not None and flag_name(following) is None:
            raise PromptError(
                f"{word} is your own option (see /prefer option list) and takes no value, "
                f"got {following}",
                flag=word,
            )
        value = prefs.options[flag_name(word) or ""].split()
        cut = next((j for j, w in enumerate(value) if flag_name(w) is not None), len(value))
        texts += value[:cut]
        added += value[cut:]
    return " ".join([*texts, *params, *added])


def read_prompt(
    text: str,
    config: EngineConfig,
    prefs: Preferences | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    permutations: bool = True,
    find_profile: ProfileLookup | None = None,
    model_override: str | None = None,
    zoom: bool = False,
    images: int = 0,
) -> Reading:
    """Parse an expanded prompt (see `expand_prompt`) into requests and their presets.

    `permutations=False` refuses `{…}` sets (a remix box edits one job). `model_override` (the
    local command's --model) wins over --v. `zoom`: the prompt is Custom Zoom's, where --zoom
    counts (elsewhere it is dropped with a note). `images`: image prompt files given beside the
    text (the local command's --image), before its links. PromptError for a bad prompt.
    """
    prefs = prefs or Preferences()
    names = config.presets.keys()
    requests = (
        parse_prompts(text, limit=limit, models=names, images=images)
        if permutations
        else (parse_prompt(text, models=names, images=images),)
    )
    if prefs.stylize is not None and not _STYLIZE_FLAG.search(text):
        requests = tuple(dataclasses.replace(r, stylize=prefs.stylize) for r in requests)
    if not zoom:
        requests = tuple(_without_zoom(r) for r in requests)
    return Reading(
        tuple(_prompt(r, config, prefs, find_profile, model_override, images) for r in requests)
    )


ZOOM_ELSEWHERE = "`--zoom` works in Custom Zoom (under an upscaled image); it was ignored"


def _without_zoom(request: ImagineRequest) -> ImagineRequest:
    if request.zoom is None:
        return request
    return dataclasses.replace(request, zoom=None, notes=(*request.notes, ZOOM_ELSEWHERE))


def prompt_jobs(reading: Reading, owner: str, limit: int) -> list[Job]:
    """One job per request per --repeat run; PromptError when that is more than `limit`."""
    jobs = [
        imagine_job(prompt.request, model=prompt.model, owner=owner, repeat=run)
        for prompt in reading.prompts
        for run in range(prompt.request.repeat)
    ]
    if len(jobs) > limit:
        raise PromptError(
            f"this prompt makes {len(jobs)} jobs (permutations × --repeat); the limit is {limit}",
            title="Too many jobs",
        )
    return jobs


def _prompt(
    request: ImagineRequest,
    config: EngineConfig,
    prefs: Preferences,
    find_profile: ProfileLookup | None,
    model_override: str | None,
    images: int = 0,
) -> Prompt:
    notes: list[str] = []
    if model_override is not None:
        preset = config.preset(model_override)
        if request.model is not None or request.version is not None:
            asked = request.model or request.version
            notes.append(f"`--v {asked}` gave way to the command's --model: **{preset.name}** ran")
    else:
        preset = _preset(request, config, prefs.model, notes)
    if request.draft and preset.draft is not None:
        notes.append(f"`--draft` ran on **{preset.draft}**, the fast preset for {preset.name}")
        preset = config.preset(preset.draft)
        request = dataclasses.replace(request, draft=False)  # its own steps are already few
    if request.style is not None and preset.style_text(request.style) is None:
        notes.append(
            f"`--style {request.style}` is a niji style, and **{preset.name}** has none: "
            "it was ignored"
        )
    request = _with_loras(request, config, preset, prefs, notes)
    request = _personalize(request, prefs.profile, find_profile, notes)
    notes.extend(_limit_notes(request, preset, config.limits))
    notes.extend(_adapter_notes(request, preset, images))
    request = dataclasses.replace(request, notes=tuple(dict.fromkeys([*request.notes, *notes])))
    return Prompt(request, preset.name)


DigestOf = Callable[[str], Awaitable[str]]  # an image URL → the digest of its stored PNG


async def with_images(
    jobs: Sequence[Job], digest_of: DigestOf, first: tuple[str, ...] = ()
) -> list[Job]:
    """`jobs` with their images stored and named by digest: `first` (attachments, files) and
    then the prompt's links as image prompts, --sref and --oref. `digest_of` fetches and stores
    a link (the bot's safe fetcher); it is called once per link, whatever the job count."""
    digests: dict[str, str] = {}  # permutations share their images

    async def digest(url: str) -> str:
        if url not in digests:
            digests[url] = await digest_of(url)
        return digests[url]

    out = []
    for job in jobs:
        request = job.request
        styles = [split_reference(ref) for ref in request.style_refs]
        request = dataclasses.replace(
            request,
            image_inputs=first + tuple([await digest(url) for url in request.image_urls]),
            style_inputs=tuple([await digest(url) for url, _ in styles]),
            style_input_weights=tuple(weight for _, weight in styles),
            object_inputs=tuple([await digest(url) for url in request.object_refs]),
        )
        out.append(dataclasses.replace(job, request=request))
    return out


def image_links(job: Job) -> tuple[str, ...]:
    """Every image URL of a job: image prompts, --sref URLs, --oref."""
    request = job.request
    refs = (split_reference(ref)[0] for ref in (*request.style_refs, *request.object_refs))
    return (*request.image_urls, *refs)


def read_blend(
    links: Sequence[str],
    aspect: tuple[int, int],
    config: EngineConfig,
    prefs: Preferences | None = None,
) -> Reading:
    """/blend: the images (their links, as shown; the bot stores their bytes) mixed with equal
    weights and no text, at `aspect`, on the user's model, stylize and LoRAs (not their suffix):
    the prompt Midjourney shows for a blend, read as any pasted one is."""
    prefs = prefs or Preferences()
    text = " ".join([*links, f"--ar {aspect[0]}:{aspect[1]}"])
    mine = Preferences(model=prefs.model, stylize=prefs.stylize, loras=prefs.loras)
    return read_prompt(text, config, mine, permutations=False)


def _preset(
    request: ImagineRequest, config: EngineConfig, fallback: str | None, notes: list[str]
) -> ModelPreset:
    """--v NAME (and --niji) first; then --v VERSION through [versions]; then the user's model
    (while it is still a preset), then the server's default."""
    if request.model is not None:
        return config.preset(request.model)
    if request.version is not None and request.version in config.versions:
        preset = config.preset(config.versions[request.version])
    else:
        try:
            preset = config.preset(fallback)
        except ConfigError:  # the preset was removed from config.toml since the user chose it
            preset = config.preset(None)
    if request.version is not None:
        notes.append(
            f"`--v {request.version}` is a Midjourney model; here it ran on **{preset.name}**"
        )
    return preset


def _with_loras(
    request: ImagineRequest,
    config: EngineConfig,
    preset: ModelPreset,
    prefs: Preferences,
    notes: list[str],
) -> ImagineRequest:
    """--lora names made whole: each one's weight (its default unless given) and trigger words.
    Without --lora, the user's own (/settings) that fit the preset, at their default weights.
    PromptError names an unknown one; one for the other family is left out, with a note."""
    if not request.loras:
        mine = [config.loras.get(name) for name in prefs.loras]
        fitting = tuple(
            LoraUse(lora.name, lora.weight, lora.trigger)
            for lora in mine
            if lora is not None and lora.family in (None, preset.family)
        )
        return dataclasses.replace(request, loras=fitting) if fitting else request
    uses = []
    for use in request.loras:
        lora = config.loras.get(use.name)
        if lora is None:
            known = ", ".join(f"`{name}`" for name in sorted(config.loras))
            raise PromptError(
                f"--lora: there is no LoRA called `{use.name}` here; "
                + (f"the LoRAs are: {known}" if known else "this server has none"),
                flag="--lora",
            )
        if lora.family is not None and lora.family != preset.family:
            notes.append(
                f"`--lora {use.name}` is for {FAMILY_NAMES[lora.family]} models and "
                f"**{preset.name}** is not one: it was left out"
            )
            continue
        weight = lora.weight if use.weight is None else use.weight
        uses.append(LoraUse(use.name, weight, lora.trigger))
    return dataclasses.replace(request, loras=tuple(uses))


def _personalize(
    request: ImagineRequest,
    own: str | None,
    find_profile: ProfileLookup | None,
    notes: list[str],
) -> ImagineRequest:
    """--p: the user's own profile; --p CODE…: those profiles. Unknown codes are noted."""
    if request.personalize is None:
        return request
    styles: list[str] = []
    if not request.personalize:
        if own:
            styles.append(own)
        else:
            notes.append(
                "you have no personalization profile yet (make one with /prefer personalize): "
                "`--p` was ignored"
            )
    for code in request.personalize:
        bare = code.split("::")[0]
        style = find_profile(bare) if find_profile is not None else None
        if style is None:
            notes.append(f"`--p {bare}` is not a profile code on this server: it was ignored")
        else:
            styles.append(style)
    return dataclasses.replace(request, personal_styles=tuple(dict.fromkeys(styles)))


def _limit_notes(request: ImagineRequest, preset: ModelPreset, limits: JobLimits) -> list[str]:
    """What [limits] max_steps and max_pixels cut from `request`."""
    notes = []
    steps, capped = planned_steps(request, preset, limits)
    if capped:
        notes.append(f"at most {limits.max_steps} steps run here (--steps × --q): {steps} ran")
    width, height = final_size(request, preset, limits)
    wanted = final_size(request, preset, dataclasses.replace(limits, max_pixels=sys.maxsize))
    if (width, height) != wanted:
        notes.append(
            f"images here have at most {limits.max_pixels:,} pixels: "
            f"drawn at {width}×{height} instead of {wanted[0]}×{wanted[1]}"
        )
    return notes


def _adapter_notes(request: ImagineRequest, preset: ModelPreset, given: int = 0) -> list[str]:
    """What a preset without an IP-Adapter does with image prompts (`given` files and the
    links) and references."""
    if preset.ip_adapter is not None:
        return []
    notes = []
    if len(request.image_urls) + given > 1:
        notes.append(
            f"**{preset.name}** has no image adapter: the first image prompt was the starting "
            "image, the others were not used"
        )
    refs = [
        f"`--{flag}`"
        for flag, given in (("sref", request.style_refs), ("oref", request.object_refs))
        if given
    ]
    if refs:
        notes.append(f"**{preset.name}** has no image adapter: {' and '.join(refs)} ignored")
    return notes
