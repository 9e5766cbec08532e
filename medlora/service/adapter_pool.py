"""One base model in memory with any number of LoRA adapters on it, as PEFT modules of one ``PeftModel``.

PEFT's per-request adapter selection works through forward hooks, so generation, loading and unloading all
hold :attr:`AdapterPool.lock`; the service's batching, not threads, gives concurrency.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medlora.adapters.checks import check_adapter_base
from medlora.errors import MedloraError
from medlora.models.loading import LoadedModel
from medlora.service.registry import AUTO_NAME, BASE_NAME, AdapterInfo, AdapterNotFoundError

if TYPE_CHECKING:
    from peft import PeftModel


class AdapterPool:
    """The loaded base, the ``PeftModel`` over it (once an adapter is loaded) and the adapters by name."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # guards the model: generation, adapter loading and unloading
        self._loaded: LoadedModel | None = None
        self.peft: PeftModel | None = None
        self.adapters: dict[str, AdapterInfo] = {}

    def reset(self, loaded: LoadedModel) -> None:
        """A freshly loaded base, no adapters on it."""
        with self.lock:
            self._loaded = loaded
            self.peft = None
            self.adapters = {}

    @property
    def loaded_model(self) -> LoadedModel:
        if self._loaded is None:
            raise MedloraError("no model loaded: call LLMService.load_model() first")
        return self._loaded

    @property
    def generation_model(self) -> Any:
        """The model to call ``generate`` on: the PEFT wrapper when adapters are loaded, else the base."""
        return self.peft if self.peft is not None else self.loaded_model.model

    def add(self, info: AdapterInfo, path: Path) -> None:
        """Put the (validated) adapter ``info`` on the base; refuse another base's adapter or a name in use.

        ``path`` is the directory as the caller named it, for the messages.
        """
        with self.lock:
            loaded = self.loaded_model
            check_adapter_base(path, loaded)
            if info.name in self.adapters:
                raise MedloraError(f"an adapter named '{info.name}' is already loaded; unload it first or "
                                   "choose another name")
            from peft import PeftModel  # imported on the first adapter: a server with none never needs it

            try:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(loaded.model, str(info.path), adapter_name=info.name)
                else:
                    self.peft.load_adapter(str(info.path), adapter_name=info.name)
            except Exception as err:  # noqa: BLE001 - safetensors, torch and PEFT raise many kinds
                if self.peft is not None and info.name in self.peft.peft_config:
                    with contextlib.suppress(Exception):  # leave no half-loaded adapter behind
                        self.peft.delete_adapter(info.name)
                first = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
                raise MedloraError(f"{path}: PEFT could not load this adapter on "
                                   f"{loaded.source.base_model_id}: {first}") from None
            self.peft.eval()
            self.adapters[info.name] = info

    def remove(self, name: str) -> None:
        """Remove an adapter; the last one removed gives the plain base model back."""
        with self.lock:
            if name not in self.adapters:
                raise AdapterNotFoundError(self.unknown(name))
            assert self.peft is not None
            if len(self.adapters) == 1:
                self.loaded_model.model = self.peft.unload()
                self.peft = None
            else:
                if name in self.peft.active_adapters:  # switch first: PEFT warns when deleting the active one
                    self.peft.set_adapter(next(n for n in self.adapters if n != name))
                self.peft.delete_adapter(name)
            del self.adapters[name]

    def activate(self, name: str) -> None:
        """Make ``name`` PEFT's active adapter (the one a generation without ``adapter_names`` uses)."""
        if self.peft is not None and name in self.adapters:
            with self.lock:
                self.peft.set_adapter(name)

    def check_known(self, name: str) -> None:
        """``name`` is ``auto``, ``base`` or a loaded adapter."""
        if name not in (AUTO_NAME, BASE_NAME) and name not in self.adapters:
            raise AdapterNotFoundError(self.unknown(name))

    def check_still_loaded(self, names: Iterable[str | None]) -> None:
        """Called under the lock: an adapter may have been unloaded between routing and generating."""
        for name in names:
            if name is not None and name not in self.adapters:
                raise AdapterNotFoundError(f"adapter '{name}' was unloaded meanwhile; ask again")

    def unknown(self, name: str) -> str:
        known = ", ".join([BASE_NAME, AUTO_NAME, *self.adapters])
        return f"unknown adapter '{name}'; loaded: {known}"
