// Weighted majority vote over answer ids, one row (question) at a time.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "cost.hpp"  // BadValue

namespace pytts {

// Open-addressing table sized once per call (twice the row length, a power of two) and reused for
// every row: a slot is live only if its stamp equals the current row's, so moving to the next row
// costs nothing. Slots are also chained in order of first appearance, which is the tie order.
class RowTally {
public:
    explicit RowTally(std::int64_t row_len) {
        std::int64_t cap = 2;
        while (cap < 2 * row_len) cap <<= 1;
        mask_ = static_cast<std::uint64_t>(cap - 1);
        shift_ = 64 - __builtin_ctzll(static_cast<std::uint64_t>(cap));
        keys_.resize(cap);
        sums_.resize(cap);
        stamp_.assign(cap, 0);
        order_.resize(row_len > 0 ? row_len : 1);
    }

    void next_row() { ++row_; n_ = 0; }

    void add(std::int64_t id, double w) {
        // Fibonacci hashing: interned ids are already hashes, small ids get spread too.
        std::uint64_t h = (static_cast<std::uint64_t>(id) * 0x9E3779B97F4A7C15ULL) >> shift_;
        for (;; h = (h + 1) & mask_) {
            if (stamp_[h] != row_) {
                stamp_[h] = row_;
                keys_[h] = id;
                sums_[h] = w;
                order_[n_++] = static_cast<std::uint32_t>(h);
                return;
            }
            if (keys_[h] == id) {
                sums_[h] += w;
                return;
            }
        }
    }

    // The id with the largest total (the first to appear among equals), or -1 for an empty row.
    void winner(std::int64_t& id, double& support) const {
        id = -1;
        support = 0.0;
        for (std::int64_t k = 0; k < n_; ++k) {
            const std::uint32_t h = order_[k];
            if (k == 0 || sums_[h] > support) {
                id = keys_[h];
                support = sums_[h];
            }
        }
    }

private:
    std::uint64_t mask_;
    int shift_;
    std::uint64_t row_ = 0;
    std::int64_t n_ = 0;
    std::vector<std::int64_t> keys_;
    std::vector<double> sums_;
    std::vector<std::uint64_t> stamp_;
    std::vector<std::uint32_t> order_;
};

// winner[q], support[q] for each of the Q rows of ids[Q, B] (-1 = missing). weights may be null
// (each answer counts 1). Stops at the first bad value (id < -1, weight not finite or negative).
inline BadValue vote(const std::int64_t* ids, const double* weights, std::int64_t Q,
                     std::int64_t B, std::int64_t* winner, double* support) {
    BadValue bad;
    RowTally tally(B);
    for (std::int64_t q = 0; q < Q; ++q) {
        tally.next_row();
        const std::int64_t* row = ids + q * B;
        const double* wrow = weights ? weights + q * B : nullptr;
        for (std::int64_t k = 0; k < B; ++k) {
            const std::int64_t id = row[k];
            double w = 1.0;
            if (wrow) {
                w = wrow[k];
                if (!(std::isfinite(w) && w >= 0.0)) {
                    bad.set("weights", q * B + k, w);
                    return bad;
                }
            }
            if (id < -1) {
                bad.set("ids", q * B + k, static_cast<double>(id));
                return bad;
            }
            if (id != -1) tally.add(id, w);
        }
        tally.winner(winner[q], support[q]);
    }
    return bad;
}

}  // namespace pytts
