// Final answers in completion texts, found by hand-written scanners with the exact semantics of
// the regular expressions in `pytts._reference` (`extract_final_answer`, `extract_number`):
// leftmost matches, scanning on after each one, the last one kept, Python's Unicode classes.
//
// Texts are arrays of code points of any width (CPython stores a str as 1, 2 or 4 bytes per code
// point), so a caller hands over its text without converting it. Classes of code points above
// ASCII come from the caller's Unicode database (`TextClasses`), so that `\s`, `\d` and `\w`
// mean what they mean to Python's `re` module.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pytts {

// Plain function pointers returning int, so that C and Cython callers can fill them in.
struct TextClasses {
    int (*is_space)(std::uint32_t);  // str.isspace
    int (*is_word)(std::uint32_t);   // str.isalnum (re's \w, with '_')
    int (*decimal)(std::uint32_t);   // the digit's value if str.isdecimal, else -1
};

namespace text {

// Code points that re.IGNORECASE matches to ASCII letters ('i', 's', 'k') outside ASCII.
constexpr std::uint32_t kDotlessI = 0x131, kDottedI = 0x130, kLongS = 0x17F, kKelvin = 0x212A;

inline bool is_space(std::uint32_t c, const TextClasses& tc) {
    if (c < 128) return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20);
    return tc.is_space(c) != 0;
}

inline int decimal(std::uint32_t c, const TextClasses& tc) {
    if (c < 128) return c >= '0' && c <= '9' ? static_cast<int>(c - '0') : -1;
    return tc.decimal(c);
}

inline bool is_word(std::uint32_t c, const TextClasses& tc) {
    if (c < 128)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    return tc.is_word(c) != 0;
}

inline bool is_ascii_letter(std::uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

// Whether `c` matches the lowercase ASCII letter `want` under re.IGNORECASE.
inline bool letter_matches(std::uint32_t c, char want) {
    if (c < 128) return is_ascii_letter(c) && static_cast<char>(c | 0x20) == want;
    if (want == 'i') return c == kDotlessI || c == kDottedI;
    if (want == 's') return c == kLongS;
    if (want == 'k') return c == kKelvin;
    return false;
}

// `word` (lowercase letters and spaces) at s[k..], case-insensitively as re.IGNORECASE.
template <class C>
bool phrase_at(const C* s, std::size_t n, std::size_t k, const char* word, std::size_t len) {
    if (n - k < len) return false;
    for (std::size_t i = 0; i < len; ++i) {
        const std::uint32_t c = s[k + i];
        if (word[i] == ' ' ? c != ' ' : !letter_matches(c, word[i])) return false;
    }
    return true;
}

template <class C>
std::size_t skip_space(const C* s, std::size_t n, std::size_t k, const TextClasses& tc) {
    while (k < n && is_space(s[k], tc)) ++k;
    return k;
}

template <class C>
std::size_t skip_digits(const C* s, std::size_t n, std::size_t k, const TextClasses& tc) {
    while (k < n && decimal(s[k], tc) >= 0) ++k;
    return k;
}

// [A-Za-z0-9+\-] under re.IGNORECASE.
inline bool is_token(std::uint32_t c) {
    return is_ascii_letter(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
           c == kDotlessI || c == kDottedI || c == kLongS || c == kKelvin;
}

// str.upper() of a token character that is a letter.
inline std::uint32_t upper_letter(std::uint32_t c) {
    if (c < 128) return c & ~0x20u;
    if (c == kDotlessI) return 'I';
    if (c == kLongS) return 'S';
    return c;  // U+0130 and U+212A are their own upper case
}

// The end of the number -?\d{1,3}(?:,\d{3})+ at s[k..] (0 if none); with `digit_after_ok`
// false, the (?![\d]) of the last-number pattern follows it (so a group may be given back).
template <class C>
std::size_t grouped_number(const C* s, std::size_t n, std::size_t k, bool digit_after_ok,
                           const TextClasses& tc) {
    std::size_t j = k < n && s[k] == '-' ? k + 1 : k;
    const std::size_t run = skip_digits(s, n, j, tc) - j;
    if (run < 1 || run > 3) return 0;
    j += run;
    std::size_t before_last = 0, groups = 0;
    while (j + 4 <= n && s[j] == ',' && decimal(s[j + 1], tc) >= 0 &&
           decimal(s[j + 2], tc) >= 0 && decimal(s[j + 3], tc) >= 0) {
        before_last = j;
        j += 4;
        ++groups;
    }
    if (groups == 0) return 0;
    if (digit_after_ok || j == n || decimal(s[j], tc) < 0) return j;
    return groups > 1 ? before_last : 0;
}

// The end of -?\d+(?:\.\d+)? at s[k..] (0 if none).
template <class C>
std::size_t plain_number(const C* s, std::size_t n, std::size_t k, const TextClasses& tc) {
    std::size_t j = k < n && s[k] == '-' ? k + 1 : k;
    const std::size_t end = skip_digits(s, n, j, tc);
    if (end == j) return 0;
    if (end + 1 < n && s[end] == '.' && decimal(s[end + 1], tc) >= 0)
        return skip_digits(s, n, end + 1, tc);
    return end;
}

}  // namespace text

// The X of the last "the answer is X" (re.IGNORECASE; X a run of [A-Za-z0-9+-] after optional
// whitespace, ':' and '('), upper-cased when X is all letters. False when there is none.
template <class C>
bool final_answer(const C* s, std::size_t n, const TextClasses& tc,
                  std::vector<std::uint32_t>& out) {
    using namespace text;
    std::size_t k = 0, best_from = 0, best_to = 0;
    while (k < n) {
        // The first letter has no non-ASCII case variant: rule most positions out at once.
        if ((static_cast<std::uint32_t>(s[k]) | 0x20) != 't' ||
            !phrase_at(s, n, k, "the answer is", 13)) {
            ++k;
            continue;
        }
        std::size_t j = skip_space(s, n, k + 13, tc);
        if (j < n && s[j] == ':') j = skip_space(s, n, j + 1, tc);
        if (j < n && s[j] == '(') j = skip_space(s, n, j + 1, tc);
        const std::size_t from = j;
        while (j < n && is_token(s[j])) ++j;
        if (j > from) {
            best_from = from;
            best_to = j;
            k = j;
        } else {
            ++k;
        }
    }
    if (best_to == 0) return false;
    bool letters = true;
    for (std::size_t i = best_from; i < best_to; ++i) {
        const std::uint32_t c = s[i];
        letters = letters && !(c == '+' || c == '-' || (c >= '0' && c <= '9'));
    }
    out.clear();
    for (std::size_t i = best_from; i < best_to; ++i)
        out.push_back(letters ? upper_letter(s[i]) : static_cast<std::uint32_t>(s[i]));
    return true;
}

// What `number_answer` found.
constexpr int kNoNumber = 0, kIntegerNumber = 1, kDecimalNumber = 2;

// The number after the last "answer is" (re.IGNORECASE, optional ':', '*'s and '$' between),
// else the last number that does not continue a word or a decimal. kIntegerNumber: `out` is its
// canonical form (ASCII digits, no separators or leading zeros, no "-0"); kDecimalNumber:
// the number in ASCII digits, for the caller to read as a float.
template <class C>
int number_answer(const C* s, std::size_t n, const TextClasses& tc, std::string& out) {
    using namespace text;
    std::size_t from = 0, to = 0;
    for (std::size_t k = 0; k < n;) {
        if ((static_cast<std::uint32_t>(s[k]) | 0x20) != 'a' || !phrase_at(s, n, k, "answer", 6)) {
            ++k;
            continue;
        }
        std::size_t j = skip_space(s, n, k + 6, tc);
        std::size_t end = 0;
        if (j > k + 6 && phrase_at(s, n, j, "is", 2)) {
            j = skip_space(s, n, j + 2, tc);
            if (j < n && s[j] == ':') j = skip_space(s, n, j + 1, tc);
            while (j < n && s[j] == '*') ++j;
            j = skip_space(s, n, j, tc);
            if (j < n && s[j] == '$') ++j;
            j = skip_space(s, n, j, tc);
            end = grouped_number(s, n, j, true, tc);
            if (!end) end = plain_number(s, n, j, tc);
        }
        if (end) {
            from = j;
            to = end;
            k = end;
        } else {
            ++k;
        }
    }
    if (to == 0) {
        for (std::size_t k = 0; k < n;) {
            std::size_t end = 0;
            if ((s[k] == '-' || decimal(s[k], tc) >= 0) &&
                !(k > 0 && (is_word(s[k - 1], tc) || s[k - 1] == '.'))) {
                end = grouped_number(s, n, k, false, tc);
                if (!end) end = plain_number(s, n, k, tc);
            }
            if (end) {
                from = k;
                to = end;
                k = end;
            } else {
                ++k;
            }
        }
    }
    if (to == 0) return kNoNumber;
    out.clear();
    bool negative = s[from] == '-', dot = false;
    for (std::size_t i = from + (negative ? 1 : 0); i < to; ++i) {
        if (s[i] == ',') continue;
        if (s[i] == '.') {
            dot = true;
            out.push_back('.');
        } else {
            out.push_back(static_cast<char>('0' + decimal(s[i], tc)));
        }
    }
    if (dot) {
        if (negative) out.insert(out.begin(), '-');
        return kDecimalNumber;
    }
    const std::size_t nonzero = out.find_first_not_of('0');
    out.erase(0, nonzero == std::string::npos ? out.size() - 1 : nonzero);
    if (negative && out != "0") out.insert(out.begin(), '-');
    return kIntegerNumber;
}

}  // namespace pytts
