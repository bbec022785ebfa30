"""How servers' self-descriptions and refusals are read: context windows from model cards and
llama.cpp's /props, overflow errors in each server's words, schema-form refusals."""

from __future__ import annotations

import pytest

from pytts.llm import dialects
from pytts.llm.dialects import SCHEMA_FORMS

LLAMA_CPP_PYTHON_OVERFLOW = (
    'HTTP 400: {"error":{"message":"This model\'s maximum context length is 2048 tokens. '
    'However, you requested 2151 tokens (2131 in the messages, 20 in the completion). Please '
    'reduce the length of the messages or completion.","type":"invalid_request_error",'
    '"param":"messages","code":"context_length_exceeded"}}')
LLAMA_SERVER_OVERFLOW = (
    'HTTP 400: {"error":{"code":400,"message":"the request exceeds the available context size, '
    'try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4100,'
    '"n_ctx":4096}}')
VLLM_OVERFLOW = ("HTTP 400: {\"object\":\"error\",\"message\":\"This model's maximum context "
                 "length is 32768 tokens. However, you requested 33000 tokens in the messages, "
                 "Please reduce the length of the messages.\",\"type\":\"BadRequestError\"}")
LLAMA_CPP_PYTHON_BAD_TYPE = (
    "gave up after 5 attempt(s); last cause: HTTP 500: {\"error\":{\"message\":\"1 validation "
    "error:\\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': "
    "\\\"Input should be 'text' or 'json_object'\\\"")


@pytest.mark.parametrize("message, window", [(LLAMA_CPP_PYTHON_OVERFLOW, 2048),
                                             (LLAMA_SERVER_OVERFLOW, 4096),
                                             (VLLM_OVERFLOW, 32768)])
def test_overflow_messages_of_each_server_are_recognised_with_their_window(message, window):
    assert dialects.is_overflow(400, message)
    assert dialects.window_from_overflow(message) == window


def test_other_failures_are_not_overflows():
    assert not dialects.is_overflow(400, 'HTTP 400: {"error": "temperature must be <= 2"}')
    assert not dialects.is_overflow(503, "HTTP 503: context length service overloaded")
    assert dialects.window_from_overflow("HTTP 400: context size exceeded") is None


def test_context_window_comes_from_the_named_model_card_or_props():
    vllm = {"data": [{"id": "a", "max_model_len": 8192}, {"id": "b", "max_model_len": 4096}]}
    assert dialects.window_from_models(vllm, "b") == 4096
    assert dialects.window_from_models(vllm, "c") is None      # two cards, none named c
    single = {"data": [{"id": "served", "context_length": 16384}]}
    assert dialects.window_from_models(single, "any-alias") == 16384
    bare = {"data": [{"id": "smollm2", "owned_by": "me"}]}     # llama-cpp-python says nothing
    assert dialects.window_from_models(bare, "smollm2") is None
    assert dialects.window_from_props({"default_generation_settings": {"n_ctx": 2048}}) == 2048
    assert dialects.window_from_props({"n_ctx": 1024}) == 1024
    for junk in (None, [], {"n_ctx": True}, {"n_ctx": -5}, {"n_ctx": float("nan")}, "x"):
        assert dialects.window_from_props(junk) is None
        assert dialects.window_from_models(junk, "m") is None


def test_a_refusal_is_a_400_422_or_a_failure_quoting_the_forms_field():
    llama, openai, vllm = SCHEMA_FORMS
    assert dialects.refuses_form(llama, 400, "HTTP 400: bad request")
    assert dialects.refuses_form(openai, 422, "HTTP 422: unprocessable")
    assert dialects.refuses_form(openai, 500, LLAMA_CPP_PYTHON_BAD_TYPE)
    assert not dialects.refuses_form(vllm, 500, LLAMA_CPP_PYTHON_BAD_TYPE)
    assert not dialects.refuses_form(llama, 503, "HTTP 503: overloaded")


def test_each_form_carries_the_schema_where_its_server_reads_it():
    schema = {"type": "object", "properties": {"x": {"enum": [1]}}, "required": ["x"]}
    llama, openai, vllm = (form.fields(schema) for form in SCHEMA_FORMS)
    assert llama == {"response_format": {"type": "json_object", "schema": schema}}
    assert openai["response_format"]["type"] == "json_schema"
    assert openai["response_format"]["json_schema"]["schema"] == schema
    assert vllm == {"guided_json": schema}


def test_vllm_model_cards_start_at_the_openai_form():
    assert dialects.preferred_form({"data": [{"id": "m", "max_model_len": 4096}]}) == 1
    assert SCHEMA_FORMS[1].name.startswith("openai")
    assert dialects.preferred_form({"data": [{"id": "m", "owned_by": "me"}]}) == 0
    assert dialects.preferred_form(None) == 0
