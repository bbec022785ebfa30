// CPython's Unicode database as the `TextClasses` of extract.hpp, so that the compiled answer
// scanners class code points exactly as Python's `re` does. Shared by both bindings of the
// scanners (pybind11 in bindings.cpp, Cython in pytts/_answers.pyx).
#pragma once

#include <Python.h>

#include <cstdint>

#include "extract.hpp"

namespace pytts {

inline int py_is_space(std::uint32_t c) { return Py_UNICODE_ISSPACE(static_cast<Py_UCS4>(c)); }
inline int py_is_word(std::uint32_t c) { return Py_UNICODE_ISALNUM(static_cast<Py_UCS4>(c)); }
inline int py_decimal(std::uint32_t c) { return Py_UNICODE_TODECIMAL(static_cast<Py_UCS4>(c)); }

inline constexpr TextClasses kPythonText{py_is_space, py_is_word, py_decimal};

}  // namespace pytts
