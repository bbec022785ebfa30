"""OpenAIClient against a server that misbehaves on purpose (tests/hostile_openai.py, in its own
process): every case ends in one LLMError or a correct retry, within a stated time, and grows
this process's memory by less than 64 MiB."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_openai import serving

from pytts.defaults import MAX_RETRIES
from pytts.errors import ConfigError, LLMError
from pytts.llm.openai import MAX_RESPONSE_BYTES, OpenAIClient, RetryPolicy

pytestmark = pytest.mark.server

MESSAGES = [{"role": "user", "content": "2+2?"}]
MEMORY_BOUND = 64 * 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """The base URL of a hostile server running in a child process."""
    with serving() as url:
        yield url


def hits(base_url: str) -> dict[str, int]:
    with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/hits", timeout=5) as resp:
        return json.loads(resp.read())


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


class PeakRss:
    """The largest resident-set growth of this process while the block runs (sampled every
    2 ms from /proc/self/statm, so a short spike is seen, not just where memory settles)."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


@dataclass(frozen=True)
class Case:
    mode: str
    error: str | None          # a regex the LLMError must match; None: a completion is returned
    within_s: float            # the stated time bound of the whole call, retries included
    attempts: int              # requests that reach the server (1: not retried)
    client: tuple = ()         # extra OpenAIClient keywords


CASES = [
    Case("endless", r"exceeds max_response_bytes = 16777216 bytes", 10.0, 1),
    Case("endless-sse", r"exceeds max_response_bytes = 16777216 bytes", 10.0, 1),
    Case("huge-declared", r"max_response_bytes = 16777216 bytes \(the server declared 1073741824",
         2.0, 1),
    Case("slow-drip", r"gave up after 2 attempt\(s\); last cause: timed out after 1.0s", 4.0, 2,
         (("timeout_s", 1.0), ("max_retries", 1))),
    Case("invalid-utf8", r"gave up after 2 attempt\(s\); last cause: malformed JSON", 2.0, 2,
         (("max_retries", 1),)),
    Case("wrong-schema", r"choices is \{.*, expected a list", 2.0, 1),
    Case("negative-usage", r"usage.prompt_tokens is -105000000000, expected an integer >= 0",
         2.0, 1),
    Case("non-string-content", r"choices\[0\].message.content is 12345, expected a string", 2.0,
         1),
    Case("retry-after-nan", None, 2.0, 2),
    Case("retry-after-inf", None, 2.0, 2),
    Case("retry-after-negative", None, 2.0, 2),
    Case("reset-then-ok", None, 2.0, 2),
    Case("reset", r"gave up after 3 attempt\(s\)", 3.0, 3, (("max_retries", 2),)),
    # one attempt: the request and the 9 redirects aiohttp follows before it gives up (5 attempts
    # of it, 50 requests, before the fix)
    Case("redirect-loop", r"TooManyRedirects", 3.0, 10),
]


@pytest.mark.parametrize("case", CASES, ids=[c.mode for c in CASES])
async def test_misbehaving_server_ends_in_one_error_or_a_correct_retry(hostile: str,
                                                                        case: Case) -> None:
    # backoff waits at most 0.05 s on the first retry; an honoured Retry-After could reach the
    # cap of 4 * backoff_max_s = 4 s, past every bound below
    kwargs = {"timeout_s": 5.0, "jitter_seed": 0, **dict(case.client)}
    retry = RetryPolicy(int(kwargs.pop("max_retries", MAX_RETRIES)), backoff_base_s=0.05,
                        backoff_max_s=1.0)
    before = hits(hostile).get(case.mode, 0)
    async with OpenAIClient(hostile, retry=retry, **kwargs) as client:
        await client.complete("ok", MESSAGES)           # warm: session and imports in place
        with PeakRss() as memory:
            t0 = time.perf_counter()
            if case.error is None:
                out = await client.complete(case.mode, MESSAGES)
                assert out[0].text == "4" and out[0].prompt_tokens == 7
            else:
                with pytest.raises(LLMError, match=case.error) as info:
                    await client.complete(case.mode, MESSAGES)
                assert info.value.endpoint == hostile and info.value.model == case.mode
            elapsed = time.perf_counter() - t0
    assert elapsed < case.within_s, f"{case.mode} took {elapsed:.2f} s"
    assert memory.growth < MEMORY_BOUND, f"{case.mode} grew RSS by {memory.growth >> 20} MiB"
    assert hits(hostile).get(case.mode, 0) - before == case.attempts


async def test_retry_after_as_an_http_date_is_honoured(hostile: str) -> None:
    # the server asks for "now + 2 s" as a date (whole seconds): a wait of 1-2 s, under the
    # cap of 4 * backoff_max_s = 4 s, then a second attempt that succeeds
    async with OpenAIClient(hostile, retry=RetryPolicy(backoff_base_s=0.01, backoff_max_s=1.0),
                            jitter_seed=0) as client:
        t0 = time.perf_counter()
        out = await client.complete("retry-after-date", MESSAGES)
        elapsed = time.perf_counter() - t0
    assert out[0].text == "4"
    assert 0.9 <= elapsed < 3.5


async def test_a_larger_configured_cap_admits_a_larger_body(hostile: str) -> None:
    async with OpenAIClient(hostile, max_response_bytes=4 * MAX_RESPONSE_BYTES) as client:
        with pytest.raises(LLMError, match="max_response_bytes = 67108864 bytes"):
            await client.complete("endless", MESSAGES)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/v1", "127.0.0.1:8000/v1",
                                 "http:///v1"])
def test_a_non_http_endpoint_is_refused_before_any_attempt(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http\\(s\\) URL"):
        OpenAIClient(url)


def _pool_file(tmp_path: Path, base_url: str, api_model: str) -> Path:
    pool = tmp_path / "pool.toml"
    pool.write_text(f'[[models]]\nname = "m"\nfamily = "f"\nparams_b = 1.0\n'
                    f'endpoint = "{base_url}"\napi_model = {json.dumps(api_model)}\n')
    return pool


def _one_call_graph(tmp_path: Path) -> Path:
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"template": {"depth": 1, "width": 1}, "edges": [],
                                 "nodes": [{"layer": 0, "slot": 0, "model": "m",
                                            "role": "assistant"}]}))
    return graph


def test_pytts_eval_scores_nothing_for_replies_that_exit_before_the_tests(hostile, tmp_path,
                                                                         capsys):
    # issue 10, item 1 end to end: this reply scored 1.000 on 10 HumanEval questions
    from pytts.cli import main
    reply = "```python\nimport sys\nsys.modules['__main__']._exit(0)\n```"
    pool = _pool_file(tmp_path, hostile, "reply:" + reply)
    code = main(["eval", str(_one_call_graph(tmp_path)), "--pool", str(pool), "--task",
                 "humaneval", "--n-questions", "10", "--budget", "1e15", "--concurrency", "2"])
    assert code == 0
    assert "accuracy 0.000" in capsys.readouterr().out


def test_pytts_eval_on_non_string_content_is_one_line_exit_2(hostile, tmp_path, capsys):
    from pytts.cli import main
    pool = _pool_file(tmp_path, hostile, "non-string-content")
    code = main(["eval", str(_one_call_graph(tmp_path)), "--pool", str(pool), "--task",
                 "arith", "--n-questions", "3", "--budget", "1e15"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "choices[0].message.content is 12345" in err


def test_llm_agent_given_non_string_content_falls_back_and_the_search_finishes(hostile,
                                                                              tmp_path):
    from pytts.cli import main
    before = hits(hostile).get("non-string-content", 0)
    code = main(["search", "--demo", "--runs-dir", str(tmp_path), "--name", "a", "--n-evals",
                 "8", "--batch-size", "4", "--agent", "llm", "--agent-endpoint", hostile,
                 "--agent-model", "non-string-content"])
    assert code == 0
    assert (tmp_path / "a" / "best_graph.json").is_file()
    assert hits(hostile).get("non-string-content", 0) > before      # the agent was asked
