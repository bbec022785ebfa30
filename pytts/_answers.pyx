# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""Answers at the boundary with Python objects, in Cython: interning a list of str, and the final
answer of a completion text. Same names, signatures and results as `pytts._reference` (and as
the pybind11 versions in `pytts._core`); `pytts.kernels` picks the fastest (bench.answers).

Cython serves here because the work is mostly reading Python objects: a str's code points are
read in place (CPython stores them as 1, 2 or 4 bytes each), and the scanners of
csrc/extract.hpp run on them without a copy or a UTF-8 conversion.
"""

from cpython.sequence cimport PySequence_Check
from cpython.unicode cimport (PyUnicode_AsEncodedString, PyUnicode_AsUTF8AndSize,
                              PyUnicode_Check, PyUnicode_DATA, PyUnicode_FromKindAndData,
                              PyUnicode_GET_LENGTH, PyUnicode_KIND)
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libcpp.string cimport string
from libcpp.vector cimport vector

cimport numpy as cnp

cnp.import_array()

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    const int PyUnicode_1BYTE_KIND
    const int PyUnicode_2BYTE_KIND
    const int PyUnicode_4BYTE_KIND

cdef extern from "intern.hpp" namespace "pytts":
    int64_t intern_id(const char* s, size_t n) nogil

cdef extern from "extract.hpp" namespace "pytts":
    cdef cppclass TextClasses:
        pass
    const int kNoNumber, kIntegerNumber, kDecimalNumber
    bint final_answer[C](const C* s, size_t n, const TextClasses& tc,
                         vector[uint32_t]& out) nogil
    int number_answer[C](const C* s, size_t n, const TextClasses& tc, string& out) nogil

cdef extern from "py_text.hpp" namespace "pytts":
    const TextClasses kPythonText


def intern_answers(answers):
    """FNV-1a 64 of each string's UTF-8 bytes, masked to 63 bits; None -> -1."""
    if isinstance(answers, (str, bytes)) or not PySequence_Check(answers):
        raise ValueError("answers must be a list of str or None")
    # A list is read in place (the loop runs no Python code, so nothing can change it meanwhile).
    items = answers if type(answers) is list else list(answers)
    cdef Py_ssize_t k, n = len(items), size
    cdef cnp.npy_intp dims = n
    # NumPy's C API, not np.empty and a memoryview: on a vote's handful of answers, those two
    # Python-level steps would cost more than the hashing.
    out = cnp.PyArray_EMPTY(1, &dims, cnp.NPY_INT64, 0)
    cdef int64_t* ids = <int64_t*>cnp.PyArray_DATA(out)
    cdef const char* data
    for k in range(n):
        text = (<list>items)[k]
        if text is None:
            ids[k] = -1
            continue
        if not PyUnicode_Check(text):
            raise ValueError(f"answers[{k}] must be str or None, got {type(text).__name__}")
        if PyUnicode_IS_ASCII(text):  # ASCII is its own UTF-8
            data = <const char*>PyUnicode_DATA(text)
            size = PyUnicode_GET_LENGTH(text)
        else:
            try:
                data = PyUnicode_AsUTF8AndSize(text, &size)
            except UnicodeEncodeError:  # lone surrogates: hash their "surrogatepass" bytes
                # (the C API, not text.encode: a str subclass could override that and edit
                # the list being read)
                raw = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass")
                data = raw
                size = len(raw)
        ids[k] = intern_id(data, <size_t>size)
    return out


cdef inline void _require_str(text, str name) except *:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str, got {type(text).__name__}")


def extract_final_answer(text):
    """The X of the last "The answer is X" in ``text`` (letters upper-cased), else None."""
    _require_str(text, "text")
    cdef vector[uint32_t] out
    cdef size_t n = <size_t>PyUnicode_GET_LENGTH(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef bint found
    if kind == PyUnicode_1BYTE_KIND:
        found = final_answer[uint8_t](<const uint8_t*>data, n, kPythonText, out)
    elif kind == PyUnicode_2BYTE_KIND:
        found = final_answer[uint16_t](<const uint16_t*>data, n, kPythonText, out)
    else:
        found = final_answer[uint32_t](<const uint32_t*>data, n, kPythonText, out)
    if not found:
        return None
    return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out.data(), out.size())


def extract_number(text):
    """The number after the last "the answer is", else the last number in ``text``, written
    canonically (no thousands separators; "7.0" -> "7"). None when there is no number."""
    _require_str(text, "text")
    cdef string out
    cdef size_t n = <size_t>PyUnicode_GET_LENGTH(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef int found
    if kind == PyUnicode_1BYTE_KIND:
        found = number_answer[uint8_t](<const uint8_t*>data, n, kPythonText, out)
    elif kind == PyUnicode_2BYTE_KIND:
        found = number_answer[uint16_t](<const uint16_t*>data, n, kPythonText, out)
    else:
        found = number_answer[uint32_t](<const uint32_t*>data, n, kPythonText, out)
    if found == kNoNumber:
        return None
    number = out.decode("ascii")
    if found == kIntegerNumber:
        return number
    value = float(number)  # rare: a decimal point; Python's float and repr say how it reads
    return str(int(value)) if value.is_integer() else repr(value)
