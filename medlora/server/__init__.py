"""The bot's HTTP face: an OpenAI-compatible API and a web chat page (``medlora serve``)."""

from medlora.server.app import create_app

__all__ = ["create_app"]
