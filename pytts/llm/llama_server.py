"""llama-cpp-python's OpenAI-compatible server plus the one route it lacks: ``GET /props``,
which reports the context size the way llama.cpp's own server does, so that clients can fit
their prompts (`OpenAIClient.context_window`). Run as ``python -m pytts.llm.llama_server`` with
the flags of ``python -m llama_cpp.server``; `LocalServer` starts it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any, cast


def props(model_alias: str | None, n_ctx: int) -> dict[str, Any]:
    """The ``/props`` body: llama.cpp's shape, reduced to what this server knows for sure."""
    return {"model_alias": model_alias, "default_generation_settings": {"n_ctx": n_ctx}}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse llama_cpp.server's flags, build its app, add ``/props``, serve until stopped."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description=__doc__)
    add_args_from_model(parser, Settings)
    args = parser.parse_args(argv)
    # cast: llama_cpp annotates the model class as ``T`` (not ``type[T]``) and so types the
    # instance it returns as the class
    server = cast(ServerSettings, parse_model_from_args(ServerSettings, args))
    model = cast(ModelSettings, parse_model_from_args(ModelSettings, args))
    app = create_app(server_settings=server, model_settings=[model])
    if model.n_ctx > 0:  # 0 means "the GGUF's own", which is not known before loading
        body = props(model.model_alias, model.n_ctx)
        app.add_api_route("/props", lambda: body, methods=["GET"])
    uvicorn.run(app, host=os.getenv("HOST", server.host), port=int(os.getenv("PORT", server.port)))


if __name__ == "__main__":
    main()
