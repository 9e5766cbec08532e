"""The HTTP API's request bodies and its errors, in OpenAI's shapes."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from medlora.errors import AdapterMismatchError, MedloraError
from medlora.server.batching import OverloadedError
from medlora.server.security import scrub_paths
from medlora.service.limits import InputTooLargeError
from medlora.service.registry import AUTO_NAME, AdapterNotFoundError, AdminPathError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI "content parts": keep the text parts
            return "\n".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The subset of the OpenAI request the bot honours; sampling options are ignored (greedy decoding)."""

    model_config = ConfigDict(extra="ignore")

    model: str = AUTO_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="an adapter directory inside the server's adapters directory (its name)")
    name: str | None = None


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def api_error(err: MedloraError) -> APIError:
    message = scrub_paths(str(err))
    if isinstance(err, AdapterNotFoundError):
        return APIError(404, message, code="model_not_found")
    if isinstance(err, AdapterMismatchError):
        return APIError(409, message, code="adapter_base_mismatch")
    if isinstance(err, InputTooLargeError):
        return APIError(413, message, code="request_too_large")
    if isinstance(err, AdminPathError):
        return APIError(404, message, code="adapter_path_not_found")
    if isinstance(err, OverloadedError):
        return APIError(503, message, kind="server_error", code="overloaded",
                        headers={"Retry-After": str(err.retry_after_s)})
    return APIError(400, message)


def question_of(request: ChatRequest) -> str:
    """The last user message. The prompt format is single-turn (as in training), so earlier turns are not sent."""
    for message in reversed(request.messages):
        if message.role == "user" and message.text().strip():
            return message.text()
    raise APIError(400, "no user message with text in 'messages'")
