// Seeded pseudo-random bits for the kernels: splitmix64 for seeding, xoshiro256** for streams.
//
// No global state: every kernel call builds its own generator from the caller's seed, so a call is
// reproducible from (seed, inputs) alone and two calls never share a stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

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

// kLanes xoshiro256** generators side by side, for streams made in bulk. Lane i is seeded with
// splitmix64 outputs 4i .. 4i+3 of the seed (lane 0 is Xoshiro256ss(seed)); the stream is made a
// round at a time, round r being the r-th output of lanes 0, 1, ..., kLanes - 1 in that order.
// The lanes never interact, so a round is one SIMD step (a single generator's outputs form a
// chain of dependent steps), and the words come about three times cheaper.
constexpr int kLanes = 8;

struct XoshiroLanes {
    std::uint64_t s[4][kLanes];

    explicit XoshiroLanes(std::uint64_t seed) {
        std::uint64_t sm = seed;
        for (int i = 0; i < kLanes; ++i) {
            for (int k = 0; k < 4; ++k) s[k][i] = splitmix64_next(sm);
            if ((s[0][i] | s[1][i] | s[2][i] | s[3][i]) == 0) s[0][i] = 1;  // as Xoshiro256ss
        }
    }
};

// Writes `rounds` rounds of g's outputs to `out` as 32-bit words, each output's high half first
// (2 * kLanes words per round). Compiled for AVX-512 and AVX2 besides the portable baseline, and
// the machine's best is picked at load time: the words are the same on every path.
__attribute__((target_clones("avx512f", "avx2", "default"))) static inline void
xoshiro_lane_words(XoshiroLanes& g, std::uint32_t* out, std::size_t rounds) {
    std::uint64_t s0[kLanes], s1[kLanes], s2[kLanes], s3[kLanes];
    std::memcpy(s0, g.s[0], sizeof s0);
    std::memcpy(s1, g.s[1], sizeof s1);
    std::memcpy(s2, g.s[2], sizeof s2);
    std::memcpy(s3, g.s[3], sizeof s3);
    for (std::size_t r = 0; r < rounds; ++r) {
        std::uint64_t both[kLanes];  // each output with its halves swapped: high half first
        for (int i = 0; i < kLanes; ++i) {
            const std::uint64_t x = s1[i] * 5;
            const std::uint64_t result = ((x << 7) | (x >> 57)) * 9;
            both[i] = (result << 32) | (result >> 32);
            const std::uint64_t t = s1[i] << 17;
            s2[i] ^= s0[i];
            s3[i] ^= s1[i];
            s1[i] ^= s2[i];
            s0[i] ^= s3[i];
            s2[i] ^= t;
            s3[i] = (s3[i] << 45) | (s3[i] >> 19);
        }
        std::memcpy(out + r * 2 * kLanes, both, sizeof both);  // little-endian: low word first
    }
    std::memcpy(g.s[0], s0, sizeof s0);
    std::memcpy(g.s[1], s1, sizeof s1);
    std::memcpy(g.s[2], s2, sizeof s2);
    std::memcpy(g.s[3], s3, sizeof s3);
}

}  // namespace pytts
