"""Loading the separator backends once per process (shared by every stream)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from seamcut.server.config import SeparatorConfig
from seamcut.server.models.separator import Separator

log = logging.getLogger(__name__)


def load_separators(
    cfg: SeparatorConfig,
    *,
    device: str,
    providers: Sequence[str | tuple[str, dict[str, str]]],
) -> dict[str, Separator]:
    """The built-in backend (unless the server is SPEECH-only) and the MDX model if set.

    ``device`` is the torch device for STFT/iSTFT ("cpu", "cuda:0"); ``providers`` the
    ONNX Runtime providers for the model.
    """
    out: dict[str, Separator] = {}
    if cfg.default_backend != "none":
        from seamcut.server.models.builtin import BuiltinSeparator

        out["builtin"] = BuiltinSeparator(device=device)
    if cfg.mdx_model_path:
        from seamcut.server.models.mdx import MdxOnnxSeparator

        mdx = MdxOnnxSeparator(
            cfg.mdx_model_path, providers=providers, overrides=cfg.mdx_overrides(),
            threads=cfg.threads, device=device,
            max_batch=cfg.max_batch or (1 if device == "cpu" else 8),
            runtime=cfg.mdx_runtime,
        )
        log.info("loaded separator %s (%s, runtime %s, providers %s)", mdx.name, mdx.params,
                 mdx.runtime, mdx.providers)
        out["mdx"] = mdx
    return out
