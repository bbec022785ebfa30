// Stable ids for canonical answer strings: FNV-1a 64 over the UTF-8 bytes, top bit cleared.
//
// A hash rather than a per-call dictionary so that the same answer gets the same id in every call
// and every process (the ResponseBank and the vote kernel compare ids across runs).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pytts {

constexpr std::uint64_t kFnvOffset = 0xCBF29CE484222325ULL;
constexpr std::uint64_t kFnvPrime = 0x100000001B3ULL;

inline std::int64_t intern_id(const char* s, std::size_t n) {
    std::uint64_t h = kFnvOffset;
    for (std::size_t k = 0; k < n; ++k) {
        h ^= static_cast<unsigned char>(s[k]);
        h *= kFnvPrime;
    }
    return static_cast<std::int64_t>(h & 0x7FFFFFFFFFFFFFFFULL);
}

// ids[k] for n strings given as (pointer, length); a null pointer stands for None (id -1).
// FNV-1a is a serial chain of multiplies, so four strings are hashed in lockstep to keep the
// multiplier busy while each chain waits on its previous step.
inline void intern_many(const char* const* ptrs, const std::size_t* lens, std::size_t n,
                        std::int64_t* ids) {
    std::size_t k = 0;
    for (; k + 4 <= n; k += 4) {
        std::uint64_t h[4];
        std::size_t common = static_cast<std::size_t>(-1);
        for (int t = 0; t < 4; ++t) {
            h[t] = kFnvOffset;
            if (ptrs[k + t] && lens[k + t] < common) common = lens[k + t];
            if (!ptrs[k + t]) common = 0;
        }
        for (std::size_t c = 0; c < common; ++c)
            for (int t = 0; t < 4; ++t) {
                h[t] ^= static_cast<unsigned char>(ptrs[k + t][c]);
                h[t] *= kFnvPrime;
            }
        for (int t = 0; t < 4; ++t) {
            if (!ptrs[k + t]) {
                ids[k + t] = -1;
                continue;
            }
            for (std::size_t c = common; c < lens[k + t]; ++c) {
                h[t] ^= static_cast<unsigned char>(ptrs[k + t][c]);
                h[t] *= kFnvPrime;
            }
            ids[k + t] = static_cast<std::int64_t>(h[t] & 0x7FFFFFFFFFFFFFFFULL);
        }
    }
    for (; k < n; ++k) ids[k] = ptrs[k] ? intern_id(ptrs[k], lens[k]) : -1;
}

}  // namespace pytts
