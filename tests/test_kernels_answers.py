"""Answers at the boundary with Python objects: interning and final-answer extraction give the
same results from Cython (``pytts._answers``), pybind11 (``pytts._core``) and the reference's
regular expressions, on any text, including Unicode that Python's ``re`` classes specially."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import require_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytts import _reference, kernels
from pytts.tasks.arith import ArithTask

PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXTRACTORS = ["extract_final_answer", "extract_number"]


def require_cython():
    """The Cython module; a hard failure where CI demands compiled modules."""
    try:
        from pytts import _answers
    except ImportError:
        require_core()  # fails under PYTTS_REQUIRE_EXTENSION, else skips if nothing is built
        pytest.skip("pytts._answers is not built (Cython was missing at build time)")
    return _answers


def compiled():
    return {"cython": require_cython(), "pybind11": require_core()}


# Characters that the patterns treat specially: the letters of "the answer is" and their
# non-ASCII case variants (dotted and dotless i, long s, Kelvin sign), separators, signs,
# Unicode whitespace and digits, word and non-word characters, a lone surrogate.
_SPECIAL = ("theanswrisTHEANSWRIS :()*$-+,._\n\t\u0130\u0131\u017f\u212a\u00a0\u2028\u3000"
            "\u0663\uff13\U0001d7d9\u00b2\u00bd\u00e9\u4e00\ud800")
_PIECES = ["the answer is ", "The Answer Is: (", "answer is ", "answer  IS **$ ", "ANSWER\tis:",
           "1,234", "12,345,6789", "-0", "007", "3.50", "1.0", "-2.25", "9" * 40 + ".0",
           "1" * 4400, "x", "."]
texts = st.lists(st.one_of(st.text(alphabet=_SPECIAL, max_size=6), st.sampled_from(_PIECES),
                           st.text(max_size=4)), max_size=14).map("".join)


@pytest.mark.sanitize
@PROPERTY
@given(texts)
def test_extractors_agree_with_the_reference_on_any_text(text):
    for name in EXTRACTORS:
        expected = getattr(_reference, name)(text)
        for impl, module in compiled().items():
            assert getattr(module, name)(text) == expected, (impl, name)


@pytest.mark.sanitize
def test_extractors_class_every_unicode_space_digit_and_case_variant_like_re():
    # every code point the patterns class specially, in every position that matters
    special = [c for c in map(chr, range(sys.maxunicode + 1))
               if c.isspace() or c.isdecimal()] + ["\u0130", "\u0131", "\u017f", "\u212a"]
    sample = [chr(c) for c in range(128, sys.maxunicode + 1, 97)]  # word and non-word alike
    templates = ["the answer is{c}x{c}", "the answer is ({c}", "answer{c}is {c}7",
                 "answer is {c}1,234", "x{c}12", "{c}1,234,567{c}", "1{c}2.5", "{c}-3",
                 "ANSWER IS {c}{c}{c}"]
    modules = compiled()
    for c in special + sample:
        for template in templates:
            text = template.format(c=c)
            for name in EXTRACTORS:
                expected = getattr(_reference, name)(text)
                for module in modules.values():
                    assert getattr(module, name)(text) == expected, (hex(ord(c)), template, name)


@pytest.mark.parametrize("text, final, number", [
    ("x. The answer is 12. Wait, the answer is 14.", "14", "14"),
    ("so THE ANSWER IS (b).", "B", None),
    ("I ran out of room before", None, None),
    ("the answer is the answer is 5", "THE", "5"),    # matches do not overlap
    ("the anſwer iſ ſ", "S", None),                    # long s matches s, upper-cases to S
    ("The answer is: 1,234,567.", "1", "1234567"),
    ("The answer is **$-0012**", None, "-12"),
    ("Total: 3.50 dollars", None, "3.5"),
    ("Total: 7.0", None, "7"),
    ("1,2345 apples", None, "2345"),                   # a group may not run into more digits
    ("v2 and a.5 and 6", None, "6"),                   # no number continuing a word or decimal
    ("the answer is \u0663\u0664", None, "34"),        # Arabic-Indic digits are \d, not [0-9]
    ("answer is " + "9" * 5000, None, "9" * 5000),     # longer than int() will parse
])
def test_extractors_known_answers(text, final, number):
    modules = {"python": _reference}
    try:
        modules.update(compiled())
    except pytest.skip.Exception:
        pass
    for impl, module in modules.items():
        assert (module.extract_final_answer(text), module.extract_number(text)) == \
            (final, number), impl


@pytest.mark.sanitize
@PROPERTY
@given(st.lists(st.one_of(st.none(), st.text(max_size=8), st.text(alphabet=_SPECIAL,
                                                                  max_size=8)), max_size=40))
def test_intern_answers_agrees_across_the_three_implementations(answers):
    expected = _reference.intern_answers(answers)
    for impl, module in compiled().items():
        np.testing.assert_array_equal(module.intern_answers(answers), expected, err_msg=impl)
        np.testing.assert_array_equal(module.intern_answers(tuple(answers)), expected,
                                      err_msg=impl)


@pytest.mark.sanitize
def test_cython_intern_answers_rejects_bad_input_naming_it():
    cy = require_cython()
    for bad in ("abc", b"abc", 7, None):
        with pytest.raises(ValueError, match="answers must be a list of str or None"):
            cy.intern_answers(bad)
    with pytest.raises(ValueError, match=r"answers\[1\] must be str or None, got int"):
        cy.intern_answers(["a", 3])
    ids = cy.intern_answers([])
    assert ids.shape == (0,) and ids.dtype == np.int64 and ids.flags.writeable


@pytest.mark.sanitize
def test_cython_intern_answers_runs_no_code_of_str_subclasses_while_reading_the_list():
    cy = require_cython()
    answers: list = []

    class Shrinking(str):
        def encode(self, *args, **kwargs):  # would empty the list mid-read, if it were called
            answers.clear()
            return b""

    answers += [Shrinking("\ud800"), "a", "b"]
    ids = cy.intern_answers(answers)
    assert len(answers) == 3
    np.testing.assert_array_equal(ids, _reference.intern_answers(["\ud800", "a", "b"]))


@pytest.mark.parametrize("name", EXTRACTORS)
def test_extractors_reject_a_non_str_naming_the_argument(name):
    modules = [kernels]
    try:
        modules += list(compiled().values())
    except pytest.skip.Exception:
        pass
    for module in modules:
        for bad in (None, b"the answer is 1", 12):
            with pytest.raises(ValueError, match="text must be a str"):
                getattr(module, name)(bad)


def test_the_cython_module_ships_where_it_was_built():
    cy = require_cython()
    if kernels.BACKEND == "core":
        assert kernels.ANSWERS_BACKEND == "cython" and kernels._answers_impl is cy


def test_arith_reads_its_answers_through_the_kernel():
    task = ArithTask(n=1)
    q = task.questions[0]
    assert task.extract(q, f"... so {q.answer} in all. The answer is {q.answer}.") == \
        str(q.answer)
    assert task.extract(q, "The answer is 1,000.0") == "1000"
