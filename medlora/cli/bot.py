"""The bot's commands: ``chat``, ``serve``, ``merge`` and ``push``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from medlora.cli.common import AdaptersDirOpt, ConfigOpt, ModelOpt, PresetOpt, config_from, console, run, setup_logging
from medlora.config import MedloraConfig
from medlora.errors import MedloraError

if TYPE_CHECKING:
    from medlora.service.llm_service import LLMService

CHAT_HELP = """Commands:
  /adapter NAME   answer with adapter NAME (or auto, or base)
  /adapters       list the loaded adapters
  /help           this help
  /quit           leave (Ctrl-D works too)"""


def _load_config(config: Path | None, preset: str | None, overrides: dict[str, Any]) -> MedloraConfig:
    return run(lambda: config_from(config, preset, overrides))


def _load_service(cfg: MedloraConfig) -> LLMService:
    from medlora.service.llm_service import LLMService

    service = LLMService(cfg)
    with console.status("Loading the model and adapters…"):
        run(service.load_model)
    return service


def _print_sources(answer: Any) -> None:
    if answer.sources:
        console.print("[bold]Sources:[/]")
        for source in answer.sources:
            link = f" — [link={escape(source.url)}]{escape(source.url)}[/link]" if source.url else ""
            console.print(f"  \\[{source.number}] {escape(source.title)}{link}", highlight=False)
    console.print(f"[dim italic]{escape(answer.disclaimer)}[/]")


def chat(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    adapters_dir: AdaptersDirOpt = None,
    adapter: Annotated[str, typer.Option("--adapter", help="adapter name, auto or base")] = "auto",
    max_new_tokens: Annotated[int | None, typer.Option(help="answer length budget in tokens")] = None,
) -> None:
    """Chat in the terminal: streamed answers with sources; /adapter NAME|auto|base switches."""
    setup_logging()
    cfg = _load_config(config, preset, {"models.llm.name": model, "models.llm.adapters_dir": adapters_dir,
                                        "service.max_new_tokens": max_new_tokens})
    service = _load_service(cfg)
    # Per-answer log lines would land in the middle of streamed text; the chat shows what matters itself.
    logging.getLogger("medlora.service").setLevel(logging.WARNING)
    run(lambda: service.set_adapter(adapter))
    names = ", ".join(a.name for a in service.list_adapters()) or "none"
    console.print(f"medlora chat on {service.base_model_id} — adapters: {names}; answering with "
                  f"[bold]{service.default_adapter}[/]. /help for commands.")
    while True:
        try:
            line = input("\n> " if sys.stdin.isatty() else "")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            if command in ("/quit", "/exit", "/q"):
                return
            if command == "/help":
                console.print(CHAT_HELP, markup=False)
            elif command == "/adapters":
                for info in service.list_adapters():
                    console.print(f"  {info.name} ({info.specialty or '?'}) — {info.path}", highlight=False)
                console.print("  auto, base")
            elif command == "/adapter" and arg.strip():
                try:
                    service.set_adapter(arg.strip())
                    console.print(f"answering with [bold]{escape(arg.strip())}[/]")
                except MedloraError as err:
                    console.print(f"[red]{escape(str(err))}[/]")
            else:
                console.print(f"unknown command {command!r}; /help lists them", markup=False)
            continue
        try:
            stream = service.stream(line)
            label = stream.adapter + (f" (auto, p={stream.route.probability:.2f})" if stream.route else "")
            console.print(f"[dim]{escape(label)}:[/]")
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
            if stream.answer is not None:
                _print_sources(stream.answer)
        except MedloraError as err:
            console.print(f"[red]error:[/] {escape(str(err))}")
        except KeyboardInterrupt:
            console.print("\n[dim](interrupted)[/]")


def serve(
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    adapters_dir: AdaptersDirOpt = None,
    host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0 exposes it to the network)")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    trusted_host: Annotated[list[str] | None, typer.Option(
        "--trusted-host", help="a host name clients use to reach the server (repeatable; '*' accepts any)")] = None,
    api_docs: Annotated[bool, typer.Option("--api-docs", help="serve /docs and /openapi.json")] = False,
) -> None:
    """Serve the OpenAI-compatible API and the web chat page (http://HOST:PORT/)."""
    from medlora.server.app import create_app, run_server

    setup_logging()
    overrides: dict[str, Any] = {"models.llm.name": model, "models.llm.adapters_dir": adapters_dir,
                                 "service.api_docs": api_docs or None}
    cfg = _load_config(config, preset, overrides)
    if trusted_host:
        cfg = _load_config(config, preset, {**overrides,
                                            "service.trusted_hosts": [*cfg.service.trusted_hosts, *trusted_host]})
    service = _load_service(cfg)
    app = create_app(service, bind_host=host)
    admin = "enabled" if os.environ.get(cfg.service.admin_token_env) else (
        f"disabled (set {cfg.service.admin_token_env} to enable)")
    names = ", ".join(a.name for a in service.list_adapters()) or "none"
    console.print(f"Serving {service.base_model_id} with adapters: {names} — http://{host}:{port}/ "
                  f"(API: /v1/chat/completions, adapter admin {admin})", markup=False, highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get(cfg.service.api_key_env):
        console.print(f"[yellow]warning:[/] listening on {host} without an API key: anyone who can reach this "
                      f"port can use the bot. Set {cfg.service.api_key_env} to require one.", highlight=False)
    run_server(app, host, port)


def merge(
    name: Annotated[str, typer.Argument(help="a loaded adapter's name (e.g. dermatology) or an adapter directory")],
    out_dir: Annotated[Path, typer.Argument(
        help="a new directory for the merged model (an earlier merge there is replaced; anything else is refused)")],
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    adapters_dir: AdaptersDirOpt = None,
) -> None:
    """Merge an adapter into its base and save a plain transformers model (no PEFT needed to load it)."""
    setup_logging()
    cfg = _load_config(config, preset, {"models.llm.name": model, "models.llm.adapters_dir": adapters_dir,
                                        "service.retrieval": False})
    service = _load_service(cfg)
    path = Path(name)
    if path.is_dir():
        same = [a.name for a in service.list_adapters() if a.path == path.resolve()]
        name = same[0] if same else run(lambda: service.load_adapter(None, path)).name
    out = run(lambda: service.merge(name, out_dir))
    console.print(f"Merged adapter [bold]{name}[/] into {service.base_model_id}: {out}\n"
                  f"Load it with AutoModelFor...from_pretrained({str(out)!r}) — no PEFT needed.")


def push(
    adapter_dir: Annotated[Path, typer.Argument(help="the adapter directory to publish")],
    repo_id: Annotated[str, typer.Argument(help="hub repository, OWNER/NAME")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate offline, upload nothing")] = False,
    force: Annotated[bool, typer.Option("--force", help="publish even if the evaluation gate failed")] = False,
    public: Annotated[bool, typer.Option(
        "--public", help="create the repository public (default: private; an existing repo keeps its visibility)")]
    = False,
    eval_data: Annotated[str | None, typer.Option(
        "--eval-data", help="judge the gate by the evaluation on this dataset hash (default: the adapter's own "
        "test split)")] = None,
) -> None:
    """Publish an adapter to the Hugging Face Hub, after validating it offline.

    The token comes from the environment only (HF_TOKEN, or `huggingface-cli login`): a flag would leave it
    in the shell history and the process list.
    """
    from medlora.service.hub import push_adapter

    setup_logging()
    result = run(lambda: push_adapter(adapter_dir, repo_id, dry_run=dry_run, force=force,
                                       private=not public, eval_data=eval_data))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.dry_run:
        console.print(f"Dry run: {adapter_dir} is ready to publish to {repo_id} ({len(result.files)} files: "
                      f"{', '.join(result.files)}). Nothing was uploaded.", highlight=False)
    else:
        console.print(f"Published {adapter_dir} to {result.url}")


def register(app: typer.Typer) -> None:
    """Add ``chat``, ``serve``, ``merge`` and ``push`` to the ``medlora`` app."""
    app.command()(chat)
    app.command()(serve)
    app.command()(merge)
    app.command()(push)
