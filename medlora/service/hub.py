"""``medlora push``: publish an adapter to the Hugging Face Hub, after checking it offline.

The checks run before any network call (and alone with ``dry_run``) because a half-published adapter — no
weights, a card without metadata, a config that does not parse — is worse than none: others would download
it. An adapter that failed its evaluation gate is refused unless forced, so a regression is not published by
accident — judged by the evaluation on the adapter's own test split, not by whichever evaluation ran last.

Only an allow-list of files is uploaded (weights, config, card, metadata, training log and curve), to a
private repository unless asked otherwise, with the token from the environment (``HF_TOKEN`` or
``huggingface-cli login``) — never from a command-line flag, which shell history and ``ps`` would keep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from medlora.adapters.checks import check_adapter_weights, check_lora_config, read_adapter_config
from medlora.adapters.layout import ADAPTER_CONFIG, CARD_FILE, PICKLE_WEIGHTS, PUBLISHED_FILES, SAFETENSORS_WEIGHTS
from medlora.adapters.metadata import gate_verdict, own_dataset_hash, read_metadata
from medlora.errors import MedloraError

log = logging.getLogger(__name__)

REQUIRED_FILES = (ADAPTER_CONFIG, SAFETENSORS_WEIGHTS, CARD_FILE)
# Everything a published adapter consists of; nothing else in the directory is uploaded.
ALLOWED_FILES = PUBLISHED_FILES


class PushError(MedloraError):
    """The adapter is not fit to publish, or the hub refused or could not be reached."""


@dataclass
class PushResult:
    repo_id: str
    files: list[str]
    dry_run: bool
    url: str | None = None
    warnings: list[str] = field(default_factory=list)


def validate_for_push(adapter_dir: Path) -> list[str]:
    """Return the problems that make ``adapter_dir`` unfit to publish (empty when it is fine)."""
    problems: list[str] = []
    if not adapter_dir.is_dir():
        return [f"{adapter_dir}: not a directory"]
    for name in REQUIRED_FILES:
        if not (adapter_dir / name).is_file():
            hint = " (only pickle weights found; re-save with safe_serialization=True)" if (
                name == SAFETENSORS_WEIGHTS and (adapter_dir / PICKLE_WEIGHTS).is_file()) else ""
            problems.append(f"missing {name}{hint}")
    if (adapter_dir / ADAPTER_CONFIG).is_file():
        try:
            config = read_adapter_config(adapter_dir)
            if not config.get("base_model_name_or_path"):
                problems.append(f"{ADAPTER_CONFIG} names no base_model_name_or_path")
            check_lora_config(config, ADAPTER_CONFIG)
        except MedloraError as err:
            problems.append(f"{ADAPTER_CONFIG} does not parse or is refused: {_short(err)}")
    if (adapter_dir / SAFETENSORS_WEIGHTS).is_file():
        try:
            check_adapter_weights(adapter_dir)  # LoRA matrices only, file complete: the same check as the bot
        except MedloraError as err:
            problems.append(f"{SAFETENSORS_WEIGHTS} does not load or is refused: {_short(err)}")
    card = adapter_dir / CARD_FILE
    if card.is_file():
        problems += _card_problems(card.read_text(encoding="utf-8", errors="replace"))
    return problems


def _card_problems(text: str) -> list[str]:
    """The hub reads the card's YAML front matter (base_model, library_name, license, tags)."""
    import yaml

    if not text.startswith("---\n"):
        return ["README.md has no YAML front matter (--- ... ---) for the hub's metadata"]
    end = text.find("\n---", 4)
    if end < 0:
        return ["README.md front matter is not closed by ---"]
    try:
        front = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as err:
        return [f"README.md front matter is not valid YAML: {err}"]
    if not isinstance(front, dict):
        return ["README.md front matter is not a mapping"]
    return [f"README.md front matter lacks '{key}'" for key in ("base_model", "library_name") if not front.get(key)]


def _short(err: Exception) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if text.startswith(("/", ".")) and ": " in text else text


def push_adapter(adapter_dir: str | Path, repo_id: str, dry_run: bool = False, force: bool = False, *,
                 private: bool = True, endpoint: str | None = None, eval_data: str | None = None) -> PushResult:
    """Validate ``adapter_dir`` and (unless ``dry_run``) upload it to ``repo_id`` (created private when missing).

    The token is the hub's own lookup (``HF_TOKEN`` or ``huggingface-cli login``); ``endpoint`` defaults to
    ``HF_ENDPOINT`` or the public hub. The gate verdict is the evaluation on the adapter's own test split, or
    on the data set hash ``eval_data``.
    """
    adapter_dir = Path(adapter_dir)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"repo id '{repo_id}' must look like OWNER/NAME")
    problems = validate_for_push(adapter_dir)
    if problems:
        raise PushError(f"{adapter_dir} is not ready to publish:\n  - " + "\n  - ".join(problems))

    metadata = read_metadata(adapter_dir)
    warnings: list[str] = []
    gate = gate_verdict(metadata, eval_data)
    on = f"data set {eval_data}" if eval_data else f"its own test split ({own_dataset_hash(metadata) or '?'})"
    if gate is False:
        if not force:
            raise PushError(f"{adapter_dir} failed its evaluation gate on {on}; improve it, or pass --force to "
                            "publish anyway")
        warnings.append(f"publishing although the evaluation gate failed on {on} (--force)")
    elif gate is None:
        warnings.append(f"not evaluated on {on} yet: run `medlora evaluate --gate` on that data so the card "
                        "carries its metrics")

    files = sorted(name for name in ALLOWED_FILES if (adapter_dir / name).is_file())
    result = PushResult(repo_id=repo_id, files=files, dry_run=dry_run, warnings=warnings)
    if dry_run:
        return result

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint)  # token: HF_TOKEN or the stored login, never an argument
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(adapter_dir),
                                   commit_message="Upload LoRA adapter with medlora",
                                   allow_patterns=list(files))
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message below
        raise PushError(_explain(err, repo_id, endpoint)) from None
    result.url = str(getattr(commit, "repo_url", "") or f"{api.endpoint}/{repo_id}")
    log.info("pushed %s to %s", adapter_dir, result.url)
    return result


def _explain(err: Exception, repo_id: str, endpoint: str | None) -> str:
    """One actionable line for the usual failures: offline, unreachable, no token, no permission."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    where = endpoint or "the Hugging Face Hub"
    first = (str(err).splitlines() or [""])[0][:200]
    if isinstance(err, OfflineModeIsEnabled):
        return f"cannot push to {where}: offline mode is on (HF_HUB_OFFLINE=1); unset it on a connected machine"
    if isinstance(err, LocalTokenNotFoundError):
        return "no hub token: set HF_TOKEN in the environment or run `huggingface-cli login`"
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"the hub refused the push to {repo_id} (HTTP {status}): check that the token has write "
                    "access to that namespace")
        return f"the hub answered an error for {repo_id} (HTTP {status}): {first}"
    if isinstance(err, (ConnectionError, TimeoutError, OSError)) or "connect" in type(err).__name__.lower() \
            or "timeout" in type(err).__name__.lower():
        return (f"could not reach {where} ({type(err).__name__}: {first}); check the network or HF_ENDPOINT, "
                "or try `--dry-run` to validate offline")
    return f"pushing {repo_id} to {where} failed ({type(err).__name__}: {first})"
