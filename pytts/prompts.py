"""Role prompts: how a node's messages are built from the task prompt and its inputs.

All role templates live here. A node with no predecessor answers the task prompt as is; an
assistant with predecessors refines (it sees their attempts); a fuser merges its predecessors'
candidate answers. The markers below are stable: simulated models parse them to tell roles apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from .llm.base import Message

REFINE_MARKER = "A previous attempt at this problem:"
FUSE_MARKER = "Candidate solutions from other solvers:"
ATTEMPT_OPEN = "<<<"
ATTEMPT_CLOSE = ">>>"

REFINE_TEMPLATE = (
    "{marker}\n{attempts}\n\n"
    "Check the attempt step by step. If it is wrong, correct it; if it is right, keep its answer. "
    "Finish with the final answer in the format asked for above."
)
FUSE_TEMPLATE = (
    "{marker}\n{attempts}\n\n"
    "Compare the candidates, decide which answer is right (or work it out yourself), and finish "
    "with the final answer in the format asked for above."
)

MAX_ATTEMPT_CHARS = 4000
"""An input longer than this is cut (from the front: answers sit at the end)."""


def _attempts(texts: Sequence[str]) -> str:
    blocks = []
    for k, text in enumerate(texts, start=1):
        body = text if len(text) <= MAX_ATTEMPT_CHARS else "..." + text[-MAX_ATTEMPT_CHARS:]
        blocks.append(f"[{k}] {ATTEMPT_OPEN}\n{body.strip()}\n{ATTEMPT_CLOSE}")
    return "\n".join(blocks)


def node_messages(task_messages: Sequence[Message], role: str,
                  inputs: Sequence[str]) -> list[dict[str, str]]:
    """Messages for one node (new dicts): the task prompt, plus the role's template over
    ``inputs``.

    ``role`` is "assistant" or "fuser"; ``inputs`` are the full texts of the predecessors'
    completions (empty for a first-layer node, which just answers).
    """
    messages = [dict(m) for m in task_messages]
    if not inputs:
        return messages
    template, marker = ((FUSE_TEMPLATE, FUSE_MARKER) if role == "fuser"
                        else (REFINE_TEMPLATE, REFINE_MARKER))
    addition = template.format(marker=marker, attempts=_attempts(inputs))
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"] = messages[-1]["content"] + "\n\n" + addition
    else:
        messages.append({"role": "user", "content": addition})
    return messages


def parse_node_messages(messages: Sequence[Message]) -> tuple[str, list[str]]:
    """Inverse of `node_messages` on the last user message: ``(kind, inputs)``.

    ``kind`` is "answer", "refine" or "fuse"; ``inputs`` are the attempts' texts.
    """
    content = messages[-1]["content"] if messages else ""
    for kind, marker in (("fuse", FUSE_MARKER), ("refine", REFINE_MARKER)):
        at = content.rfind(marker)
        if at >= 0:
            body = content[at + len(marker):]
            inputs = []
            for chunk in body.split(ATTEMPT_OPEN)[1:]:
                inputs.append(chunk.split(ATTEMPT_CLOSE)[0].strip())
            return kind, inputs
    return "answer", []


def strip_role_template(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The task prompt part of node messages (what `node_messages` started from), as new
    dicts."""
    out = [dict(m) for m in messages]
    if out:
        content = out[-1]["content"]
        for marker in (FUSE_MARKER, REFINE_MARKER):
            at = content.rfind("\n\n" + marker)
            if at >= 0:
                out[-1]["content"] = content[:at]
                break
    return out
