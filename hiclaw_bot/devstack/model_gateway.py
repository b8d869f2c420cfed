"""The data plane of the gateway simulator: the OpenAI-compatible calls a worker's model makes.

A worker's ``openclaw.json`` points its model provider at ``<gateway_url>/v1`` with its consumer's
key. Real Higress serves that on its gateway port, apart from the console, and lets a request
through only when the key belongs to a consumer on the matched AI route's allow list (key-auth),
answering 401 otherwise. This simulator does the same on a listener of its own, reading the allow
lists from the console simulator's data plane (:meth:`HigressConsoleSimulator.is_authorized`), so
taking a consumer off a route through the console API shows at once as a 401 to the worker.

Behind it sits one deterministic model, ``echo``-like whatever model is asked for: it answers
``echo: <last user message>``, unless a test scripted an answer for a prompt containing some text
(:meth:`ModelGateway.script`). Streaming (``"stream": true``) answers in server-sent events as
OpenAI does. Every call is recorded (:attr:`ModelGateway.calls`) with the model and the consumer,
never the key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hiclaw_bot.devstack.service import Service, listen

__all__ = ["ModelCall", "ModelGateway"]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
Authorizer = Callable[[str | None, str], tuple[str | None, bool]]
"""``(key, path) -> (consumer owning the key or None, whether it may call path)``."""


@dataclass(frozen=True)
class ModelCall:
    """One call that reached the data plane: who (by consumer), which model, what it got."""

    path: str
    consumer: str | None
    model: str | None
    prompt: str
    status: int
    answer: str = ""


class ModelGateway(Service):
    """OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions`` behind consumer key-auth."""

    def __init__(self, authorize: Authorizer, models: Callable[[], Sequence[str]]) -> None:
        self._authorize = authorize
        self._models = models
        self._scripts: list[tuple[str, str]] = []
        self.calls: list[ModelCall] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner, self.url = await listen(app)
        logger.info("gateway simulator data plane listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def script(self, prompt_contains: str, answer: str) -> None:
        """Answer ``answer`` to any prompt whose last user message contains ``prompt_contains``
        (the latest script wins)."""
        self._scripts.insert(0, (prompt_contains, answer))

    def answer_for(self, prompt: str) -> str:
        for needle, answer in self._scripts:
            if needle in prompt:
                return answer
        return f"echo: {prompt}"

    def _consumer(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        """The consumer of the request's key, and the 401 to answer when key-auth refuses it."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        consumer, allowed = self._authorize(key.strip() if scheme.lower() == "bearer" and key.strip() else None,
                                            request.path)
        if not allowed:
            # Higress's key-auth plugin answers 401 with a plain reason, before any upstream.
            return consumer, web.json_response(
                {"error": {"message": "Request denied by Key Auth check. Unauthorized consumer.",
                           "type": "invalid_request_error", "code": "401"}}, status=401)
        return consumer, None

    async def _list_models(self, request: web.Request) -> web.Response:
        consumer, denied = self._consumer(request)
        if denied is not None:
            self.calls.append(ModelCall(request.path, consumer, None, "", 401))
            return denied
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "hiclaw-sim"} for m in self._models()]
        self.calls.append(ModelCall(request.path, consumer, None, "", 200))
        return web.json_response({"object": "list", "data": data})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return web.json_response({"error": {"message": "model and messages are required",
                                                "type": "invalid_request_error"}}, status=400)
        model = str(body["model"])
        prompt = _last_user_text(body["messages"])
        consumer, denied = self._consumer(request)
        if denied is not None:
            self.calls.append(ModelCall(request.path, consumer, model, prompt, 401))
            return denied
        answer = self.answer_for(prompt)
        self.calls.append(ModelCall(request.path, consumer, model, prompt, 200, answer))
        ident = f"chatcmpl-sim{len(self.calls)}"
        created = int(time.time())
        if body.get("stream"):
            return await self._stream(request, ident, created, model, answer)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return web.json_response({
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": usage,
        })

    async def _stream(self, request: web.Request, ident: str, created: int, model: str,
                      answer: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(delta: Mapping[str, Any], finish: str | None) -> None:
            chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""}, None)
        words = answer.split(" ")
        for index, word in enumerate(words):
            await send({"content": word if index == 0 else f" {word}"}, None)
        await send({}, "stop")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


_CONTEXT_BLOCK = re.compile(r"<<<BEGIN_([A-Z_]+)>>>.*?<<<END_\1>>>", re.DOTALL)
"""A runtime's own context, sent as a user message: OpenClaw wraps it in
``<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>`` … ``<<<END_OPENCLAW_INTERNAL_CONTEXT>>>``."""


def _last_user_text(messages: Sequence[Any]) -> str:
    """What the person last said: the last user message that is more than a runtime's context block
    (string content, or the text parts of a content list)."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content
                               if isinstance(part, dict) and part.get("type") == "text")
        text = _CONTEXT_BLOCK.sub("", content).strip() if isinstance(content, str) else ""
        if text:
            return text
    return ""
