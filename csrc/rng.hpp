// Seeded pseudo-random bits for the kernels: splitmix64 for seeding, xoshiro256** for streams.
//
// No global state: every kernel call builds its own generator from the caller's seed, so a call is
// reproducible from (seed, inputs) alone and two calls never share a stream.
#pragma once

#include <cstdint>

namespace pytts {

// splitmix64 step: the seeding function recommended by xoshiro's authors, because consecutive
// outputs of it are decorrelated even for adjacent seeds (0, 1, 2, ...).
inline std::uint64_t splitmix64_next(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

class Xoshiro256ss {
public:
    explicit Xoshiro256ss(std::uint64_t seed) {
        std::uint64_t sm = seed;
        for (auto& w : s_) w = splitmix64_next(sm);
        // splitmix64 never yields four zero words in a row, but the all-zero state would be a
        // fixed point, so guard it anyway.
        if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

}  // namespace pytts
