"""Reply schemas and compact contexts: every agent reply the schema admits passes the parser,
the optimizer's schema yields parseable replies, the short compact form round-trips, and the
context views shrink."""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_search_fakes import ToyEvaluator, make_searcher

from pytts.errors import AgentReplyError
from pytts.probgraph import ProbGraph
from pytts.search import Accuracy
from pytts.search.llm_io import (
    MAX_LISTED_REGIONS,
    AgentContext,
    ScoredGraph,
    agent_reply_schema,
    describe_compact,
    extract_json_object,
    feasible_regions,
    graph_from_compact,
    graph_to_compact,
    optimizer_reply_schema,
    parse_feedback,
    region_min_flops,
    render_context,
)


def instances(schema: dict) -> st.SearchStrategy:
    """Values a JSON schema admits, for the subset of JSON Schema the reply schemas use."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([instances(s) for s in schema["anyOf"]])
    kind = schema["type"]
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.from_regex(schema["pattern"], fullmatch=True)
    if kind == "object":
        assert set(schema["required"]) == set(schema["properties"])
        return st.fixed_dictionaries({k: instances(v) for k, v in schema["properties"].items()})
    assert kind == "array", schema
    if "prefixItems" in schema:
        return st.tuples(*map(instances, schema["prefixItems"])).map(list)
    return st.lists(instances(schema["items"]), min_size=schema.get("minItems", 0),
                    max_size=schema.get("maxItems"))


def scored_context(n_graphs: int = 30, budget: str = "5x m", seed: int = 1,
                   template: tuple[int, int] = (3, 3)) -> AgentContext:
    s = make_searcher("random", seed=seed, template=template, budget=budget)
    ev = ToyEvaluator()
    scored = []
    for i, g in enumerate(s.ask(n_graphs)):
        r = ev.result(g)
        scored.append(ScoredGraph(i, g, r.accuracy, r.accuracy, r.n_questions,
                                  r.mean_latency_s, r.mean_flops))
    return AgentContext(s.template, s.budget, s.cost, Accuracy(), scored,
                        [n_graphs - 2, n_graphs - 1],
                        ProbGraph.uniform(*s.template, s.model_names), 3)


CTX = scored_context(budget="2x m")
SHOWN = [e["id"] for e in CTX.to_json(5, True)["evaluated"]]
AGENT_SCHEMA = agent_reply_schema(CTX, SHOWN)


def test_reply_schemas_are_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(AGENT_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(optimizer_reply_schema(["a", "b"], (3, 3), 4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=instances(AGENT_SCHEMA))
def test_every_reply_the_agent_schema_admits_passes_the_parser(reply):
    jsonschema.validate(reply, AGENT_SCHEMA)
    text, update = parse_feedback(json.dumps(reply), CTX)
    assert text == reply["feedback"].strip()
    assert (update.anchor, update.widths, update.step_size) == (
        reply["anchor"], reply["widths"], reply["step_size"])
    assert update.model_weights == reply["model_weights"]
    assert update.later_model_weights == reply["later_model_weights"]
    assert update.depth == (len(reply["widths"]) if reply["widths"] else None)


@pytest.mark.parametrize("field, value", [
    ("anchor", 999),                                       # not a shown graph
    ("model_weights", {"s": 0.5, "m": 0.5, "l": 0.5, "gpt-9": 1.0}),
    ("model_weights", {"s": 0.0, "m": 0.0, "l": 0.0}),     # all zero
    ("step_size", 1.5),
    ("feedback", "   "),
    ("widths", [3, 3, 3]),                                 # does not fit the budget
])
def test_the_agent_schema_refuses_what_the_parser_refuses(field, value):
    reply = {"feedback": "Widen layer 0.", "anchor": None, "widths": None,
             "model_weights": None, "later_model_weights": None, "fuser_prob": None,
             "edge_density": None, "step_size": 0.5}
    jsonschema.validate(reply, AGENT_SCHEMA)
    reply[field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(reply, AGENT_SCHEMA)
    with pytest.raises(AgentReplyError):
        parse_feedback(json.dumps(reply), CTX)


def test_feasible_regions_are_the_width_profiles_that_fit():
    ctx = scored_context(budget="2x m")
    d_max, w_max = ctx.template
    brute = [list(w) for d in range(1, d_max + 1)
             for w in itertools.product(range(1, w_max + 1), repeat=d)
             if region_min_flops(w, ctx.cost) <= ctx.budget]
    assert sorted(feasible_regions(ctx.template, ctx.cost, ctx.budget)) == sorted(brute)
    assert 1 < len(brute) < 3 ** 3 + 3 ** 2 + 3      # the budget does exclude some
    assert feasible_regions((4, 6), ctx.cost, 1e30, limit=MAX_LISTED_REGIONS) is None


def test_past_the_listing_limit_widths_are_range_checked_only():
    widths = agent_reply_schema(scored_context(budget="1e30"), [0])["properties"]["widths"]
    assert len(widths["enum"]) == 1 + 3 + 9 + 27       # every profile of 3x3, and null
    wide = scored_context(budget="1e30", template=(4, 6))   # 1554 profiles
    widths = agent_reply_schema(wide, [0])["properties"]["widths"]
    assert "enum" not in widths
    jsonschema.validate([6, 1, 2, 5], widths)
    for bad in ([7], [1, 1, 1, 1, 1], []):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, widths)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=instances(optimizer_reply_schema(["s", "m", "l"], (3, 3), 4)))
def test_optimizer_schema_replies_parse_into_graphs_or_named_errors(reply):
    data = extract_json_object(json.dumps(reply))
    assert 1 <= len(data["graphs"]) <= 4
    for item in data["graphs"]:
        try:
            graph = graph_from_compact(item, ["s", "m", "l"], (3, 3))
        except AgentReplyError:
            continue        # an input slot past its previous layer's width: counted invalid
        assert graph.depth == len(item["layers"])


def test_short_compact_form_round_trips_and_is_shorter():
    s = make_searcher("random", seed=3, template=(3, 3), budget="1e30")
    for g in s.ask(40):
        full, short = graph_to_compact(g), graph_to_compact(g, short=True)
        for form in (full, short):
            back = graph_from_compact(json.loads(json.dumps(form)), s.model_names, s.template)
            assert back.canonical_key() == g.canonical_key()
        assert len(json.dumps(short)) <= len(json.dumps(full))
        assert all(isinstance(node, str) for node in short["layers"][0])


def test_context_views_shrink_and_keep_the_latest_graphs():
    ctx = scored_context(n_graphs=40)
    views = AgentContext.views(20)
    for summary in (False, True):   # fewer graphs, shorter context, within each form
        sizes = [len(render_context(ctx.to_json(*view))) for view in views
                 if view.summary == summary]
        assert sizes == sorted(sizes, reverse=True)
    sizes = [len(render_context(ctx.to_json(*view))) for view in views]
    assert min(sizes) == sizes[-1] < sizes[0] / 4
    for view in views:
        data = ctx.to_json(*view)
        ids = [e["id"] for e in data["evaluated"]]
        assert set(ctx.latest) <= set(ids) and ctx.best().id in ids
        assert data["latest_ids"] == ctx.latest and data["best_id"] == ctx.best().id
    compact = ctx.to_json(1, True)
    assert "budget_tflops" in compact and "budget_flops" not in compact
    assert compact["budget_tflops"] == pytest.approx(ctx.budget / 1e12, abs=1e-3)


def test_the_summary_views_write_each_graph_as_one_line_and_keep_the_per_call_costs():
    ctx = scored_context(n_graphs=40)
    summaries = [view for view in AgentContext.views(20) if view.summary]
    assert summaries and summaries[-1] == AgentContext.views(20)[-1]
    for view in summaries:
        data = ctx.to_json(*view)
        by_id = ctx.by_id()
        assert all(e["graph"] == describe_compact(by_id[e["id"]].graph)
                   for e in data["evaluated"])
        assert data["tflops_per_call"] == {
            m.name: pytest.approx(ctx.cost.call_flops(m.name) / 1e12, abs=1e-3)
            for m in ctx.cost.pool}
        assert data["budget_tflops"] == pytest.approx(ctx.budget / 1e12, abs=1e-3)
        assert "pool" not in data and "prompt_tokens" not in data
