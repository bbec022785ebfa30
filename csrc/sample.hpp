// The probabilistic graph's kernels: sample graphs (optionally conditioned on a FLOPs budget by
// rejection), their log-probabilities, and the score-function gradient used by REINFORCE.
//
// Every kernel first turns the logits into per-call tables (log-softmax, alias tables, Bernoulli
// thresholds, edge terms) so that the per-graph loops only index and add. The sampler and log_prob add the
// same terms in the same order, so a sampled graph's logp equals log_prob of it bit for bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <immintrin.h>

#include "cost.hpp"
#include "rng.hpp"

namespace pytts {

// Numerically stable log(1 + exp(a)).
inline double softplus(double a) { return std::max(a, 0.0) + std::log1p(std::exp(-std::fabs(a))); }
inline double sigmoid(double a) {
    if (a >= 0) return 1.0 / (1.0 + std::exp(-a));
    const double e = std::exp(a);
    return e / (1.0 + e);
}
inline double logaddexp(double x, double y) {
    const double m = std::max(x, y);
    return m + std::log1p(std::exp(-std::fabs(x - y)));
}

// Log-softmax of each of `rows` rows of length n.
inline void log_softmax_rows(const double* x, std::int64_t rows, int n, double* out) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* xr = x + r * n;
        double* o = out + r * n;
        const double mx = *std::max_element(xr, xr + n);
        double s = 0.0;
        for (int k = 0; k < n; ++k) s += std::exp(xr[k] - mx);
        const double lse = mx + std::log(s);
        for (int k = 0; k < n; ++k) o[k] = xr[k] - lse;
    }
}

// One bucket of a Walker/Vose alias table: a draw that lands in bucket b keeps b when its 32-bit
// fraction is below `keep` (a probability scaled by 2^32, so 2^32 means always), else takes
// `alias`. O(1) and branch-free per draw, whatever the number of categories.
struct AliasSlot {
    std::uint64_t keep;
    std::int64_t alias;
};

// The alias table of one row of n categories with the given (unnormalised) weights. The
// operations and their order are part of the sampler's definition: pytts._reference builds the
// same table, bit for bit.
inline void build_alias(const double* weights, int n, AliasSlot* t, std::vector<double>& q,
                        std::vector<int>& small, std::vector<int>& large) {
    q.resize(n);
    small.clear();
    large.clear();
    double total = 0.0;
    for (int k = 0; k < n; ++k) total += q[k] = weights[k];
    for (int k = 0; k < n; ++k) {
        q[k] = q[k] / total * n;
        (q[k] < 1.0 ? small : large).push_back(k);
    }
    while (!small.empty() && !large.empty()) {
        const int sk = small.back(), lk = large.back();
        small.pop_back();
        t[sk].keep = static_cast<std::uint64_t>(std::llround(q[sk] * 4294967296.0));
        t[sk].alias = lk;
        q[lk] = (q[lk] + q[sk]) - 1.0;
        if (q[lk] < 1.0) {
            large.pop_back();
            small.push_back(lk);
        }
    }
    // What is left holds (up to rounding) exactly one bucket's worth: it always keeps.
    for (int k : small) t[k] = {std::uint64_t{1} << 32, k};
    for (int k : large) t[k] = {std::uint64_t{1} << 32, k};
}

// Alias tables of `rows` rows of n categories, from their log-probabilities.
inline void build_alias_rows(const double* logp, std::int64_t rows, int n, AliasSlot* out) {
    std::vector<double> w(n), q;
    std::vector<int> small, large;
    for (std::int64_t r = 0; r < rows; ++r) {
        for (int k = 0; k < n; ++k) w[k] = std::exp(logp[r * n + k]);
        build_alias(w.data(), n, out + r * n, q, small, large);
    }
}

// A category of a row from one 32-bit word u: u * n splits into the bucket (its high 32 bits,
// multiply-shift, bias below n / 2^32) and a 32-bit fraction uniform within the bucket (to
// within n / 2^32), which decides keep or alias.
inline int draw_alias(std::uint32_t u, const AliasSlot* row, int n) {
    const std::uint64_t x = static_cast<std::uint64_t>(u) * static_cast<std::uint32_t>(n);
    const auto b = static_cast<std::uint32_t>(x >> 32);
    const AliasSlot& s = row[b];
    // Select by mask: a compiled branch here would mispredict on every other draw.
    const std::int64_t keep = -static_cast<std::int64_t>((x & 0xFFFFFFFFu) < s.keep);
    return static_cast<int>(s.alias ^ ((static_cast<std::int64_t>(b) ^ s.alias) & keep));
}

// A uniform index in [0, n) from one 32-bit word (multiply-shift).
inline int draw_uniform(std::uint32_t u, int n) {
    return static_cast<int>((static_cast<std::uint64_t>(u) * static_cast<std::uint32_t>(n)) >> 32);
}

// The random words every draw of the sampler reads: the outputs of kLanes xoshiro256**
// generators, round by round (see XoshiroLanes), each output giving two 32-bit words, its high
// half first. Words are made a block at a time; before each graph, `reserve` makes sure the block
// holds as many as a graph can read, so that a draw is a load, and a draw that may or may not
// happen (depending on what was drawn before) can load its word and advance by 0 or 1 without a
// branch.
class WordStream {
public:
    static constexpr std::size_t kRound = 2 * kLanes;  // words per round of the generators

    // Room for a few graphs' words: enough to amortise the refills, little to make for one.
    WordStream(std::uint64_t seed, std::size_t max_per_graph)
        : rng_(seed), words_(4 * std::max<std::size_t>(64, max_per_graph) + kRound) {}

    // Makes sure that at least k words (k <= max_per_graph) are buffered from the read position
    // `at` on (a pointer this returned before, or nullptr at the start) and returns the read
    // position. The caller reads through a local pointer: one it keeps in a register, where a
    // member would be reloaded after every store through the output's char pointers.
    const std::uint32_t* reserve(std::size_t k, const std::uint32_t* at) {
        pos_ = at ? static_cast<std::size_t>(at - words_.data()) : pos_;
        if (end_ - pos_ < k) {
            // Keep the unread words, in order; they end with a whole round, so the next round's
            // words follow them.
            const std::size_t left = end_ - pos_;
            std::memmove(words_.data(), words_.data() + pos_, left * sizeof(std::uint32_t));
            const std::size_t rounds = (words_.size() - left) / kRound;
            xoshiro_lane_words(rng_, words_.data() + left, rounds);
            end_ = left + rounds * kRound;
            pos_ = 0;
        }
        return words_.data() + pos_;
    }

private:
    XoshiroLanes rng_;
    std::vector<std::uint32_t> words_;
    std::size_t pos_ = 0, end_ = 0;
};

// Predecessor candidates are drawn in chunks of this many: one alias draw over the 2^kChunk
// subsets of a chunk replaces kChunk Bernoulli draws (the chunk's candidates are independent,
// so the subset distribution is the product of their Bernoullis; candidates past the previous
// layer's width are drawn and dropped, which marginalises them out exactly).
constexpr int kChunk = 4;
constexpr int kChunkOutcomes = 1 << kChunk;

// kSpread8.bytes[x]: the 8 bits of x spread to one per byte (byte i holds bit i).
struct Spread8 {
    std::uint64_t bytes[256];
    constexpr Spread8() : bytes() {
        for (int x = 0; x < 256; ++x)
            for (int i = 0; i < 8; ++i)
                bytes[x] |= static_cast<std::uint64_t>((x >> i) & 1) << (8 * i);
    }
};
constexpr Spread8 kSpread8{};

// Which code the sampler may use: the best this CPU runs, or the portable baseline only (a test
// hook, and a way out should a machine misreport its instruction sets). Both write the same
// bytes.
enum class SamplerIsa { best, baseline };

// Whether this CPU runs AVX-512F and AVX-512BW.
inline bool cpu_has_avx512bw() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

// The edges of one layer of a W = 8 template are 64 bytes, byte 8i + j for edge (l, i) ->
// (l + 1, j): bit 8i + j of the layer's bit matrix, one byte per bit. AVX-512BW expands a mask
// register to bytes in one masked move; the portable path spreads a byte at a time. This writes
// layers 0 .. layers - 1 of a graph (bits[l] for l < live, zeros after) in one call: only this
// store is compiled for AVX-512 (the whole sampler compiled so runs slower on this machine), and
// it cannot be inlined into code compiled without it.
__attribute__((target("avx512f,avx512bw"), noinline)) inline void expand_layers_avx512bw(
    std::uint8_t* dst, const std::uint64_t* bits, int layers, int live) {
    const __m512i one = _mm512_set1_epi8(1);
    for (int l = 0; l < layers; ++l)
        _mm512_storeu_si512(dst + 64 * static_cast<std::size_t>(l),
                            _mm512_maskz_mov_epi8(l < live ? bits[l] : 0, one));
}

// Parameters of a ProbGraph as the kernels read them.
struct Logits {
    int D, W, K, R;
    const double* depth;  // [D]
    const double* width;  // [D, D, W]
    const double* model;  // [D, W, K]
    const double* role;   // [D, W, R]
    const double* edge;   // [D-1, W, W]
};

// `v` if `take`, else +0.0, without a branch (the Bernoulli outcomes are coin flips, so a branch
// on them would mispredict half the time). Adding the +0.0 leaves a sum unchanged.
inline double select_or_zero(std::uint64_t take, double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits &= 0 - take;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

// Tables derived from the logits. Edge tables are transposed to [l][j][i] so that drawing or
// scoring the column of predecessors of node (l+1, j) reads contiguous memory.
//
// A column's log-probability is, for the predecessor set `mask` drawn among w candidates,
//   (negsp[l][j][w] + sum_{i in mask, ascending} a_i) + (|mask| == 1 ? single[l][j][w][i*] : 0)
// with negsp = -sum_{i<w} softplus(a_i) and single = logaddexp(a*, -log w) - a*: the
// independent-Bernoulli term plus, for a lone predecessor, the chance that it was the uniform
// fallback. The sampler and log_prob both evaluate exactly this expression.
class ProbTables {
public:
    explicit ProbTables(const Logits& p, bool for_sampling) : p_(p) {
        const int D = p.D, W = p.W, K = p.K, R = p.R;
        ldepth.resize(D);
        lwidth.resize(static_cast<std::size_t>(D) * D * W);
        lmodel.resize(static_cast<std::size_t>(D) * W * K);
        lrole.resize(static_cast<std::size_t>(D) * W * R);
        log_softmax_rows(p.depth, 1, D, ldepth.data());
        log_softmax_rows(p.width, static_cast<std::int64_t>(D) * D, W, lwidth.data());
        log_softmax_rows(p.model, static_cast<std::int64_t>(D) * W, K, lmodel.data());
        log_softmax_rows(p.role, static_cast<std::int64_t>(D) * W, R, lrole.data());

        const std::size_t ne = static_cast<std::size_t>(D - 1) * W * W;
        edge_t.resize(ne);
        negsp.resize(ne);
        for (int l = 0; l + 1 < D; ++l)
            for (int j = 0; j < W; ++j) {
                double acc = 0.0;
                for (int i = 0; i < W; ++i) {
                    const double a = p.edge[(static_cast<std::size_t>(l) * W + i) * W + j];
                    edge_t[col_index(l, j) + i] = a;
                    acc += softplus(a);
                    negsp[col_index(l, j) + i] = -acc;  // entry w-1 holds the sum over i < w
                }
            }
        // The single-predecessor term depends on (l, j, w_l, i*): tabulate it when the table is
        // small (the common templates), else compute it when needed.
        if (ne * W <= (1u << 18)) {
            single_table.resize(ne * W);
            for (int l = 0; l + 1 < D; ++l)
                for (int j = 0; j < W; ++j)
                    for (int w = 1; w <= W; ++w)
                        for (int i = 0; i < w; ++i)
                            single_table[single_index(l, j, w) + i] = compute_single(l, i, j, w);
        }

        if (for_sampling) {
            depth_alias.resize(D);
            width_alias.resize(static_cast<std::size_t>(D) * D * W);
            model_alias.resize(static_cast<std::size_t>(D) * W * K);
            role_alias.resize(static_cast<std::size_t>(D) * W * R);
            build_alias_rows(ldepth.data(), 1, D, depth_alias.data());
            build_alias_rows(lwidth.data(), std::int64_t{D} * D, W, width_alias.data());
            build_alias_rows(lmodel.data(), std::int64_t{D} * W, K, model_alias.data());
            build_alias_rows(lrole.data(), static_cast<std::int64_t>(D) * W, R, role_alias.data());
            // The subset alias table of each chunk c of each column (l, j): outcome o sets
            // candidate 4c + t when bit t of o is set; its weight is the product, over t in
            // order, of sigmoid(a) or sigmoid(-a) (0 or 1 past the template's width).
            nchunk = (W + kChunk - 1) / kChunk;
            chunk_alias.resize(static_cast<std::size_t>(D - 1) * W * nchunk * kChunkOutcomes);
            std::vector<double> weight(kChunkOutcomes), q;
            std::vector<int> small, large;
            for (int l = 0; l + 1 < D; ++l)
                for (int j = 0; j < W; ++j)
                    for (int c = 0; c < nchunk; ++c) {
                        const double* a = edge_t.data() + col_index(l, j);
                        for (int o = 0; o < kChunkOutcomes; ++o) {
                            double w = 1.0;
                            for (int t = 0; t < kChunk; ++t) {
                                const int i = c * kChunk + t;
                                const bool set = (o >> t) & 1;
                                w = w * (i < W ? sigmoid(set ? a[i] : -a[i]) : (set ? 0.0 : 1.0));
                            }
                            weight[o] = w;
                        }
                        build_alias(weight.data(), kChunkOutcomes,
                                    chunk_alias.data() + chunk_index(l, j, c), q, small, large);
                    }
            // For narrow templates, every column's sum of chosen logits is tabulated by subset,
            // built by adding the highest member last so that each entry is the ascending sum
            // column_logp computes (bit for bit).
            if (W <= kSubsetMaxWidth) {
                const std::size_t nsub = std::size_t{1} << W;
                subset_sum.resize(static_cast<std::size_t>(D - 1) * W * nsub);
                for (int l = 0; l + 1 < D; ++l)
                    for (int j = 0; j < W; ++j) {
                        double* ss =
                            subset_sum.data() + (static_cast<std::size_t>(l) * W + j) * nsub;
                        const double* a = edge_t.data() + col_index(l, j);
                        ss[0] = 0.0;
                        for (std::size_t mask = 1; mask < nsub; ++mask) {
                            const int hi = 63 - __builtin_clzll(mask);
                            ss[mask] = ss[mask & ~(std::size_t{1} << hi)] + a[hi];
                        }
                    }
            }
        }
    }

    static constexpr int kSubsetMaxWidth = 8;

    std::size_t col_index(int l, int j) const {
        return (static_cast<std::size_t>(l) * p_.W + j) * p_.W;
    }
    std::size_t chunk_index(int l, int j, int c) const {
        return ((static_cast<std::size_t>(l) * p_.W + j) * nchunk + c) * kChunkOutcomes;
    }
    std::size_t single_index(int l, int j, int w) const {
        return ((static_cast<std::size_t>(l) * p_.W + j) * p_.W + (w - 1)) * p_.W;
    }

    double compute_single(int l, int i, int j, int w) const {
        const double a = edge_t[col_index(l, j) + i];
        return logaddexp(a, -std::log(static_cast<double>(w))) - a;
    }
    double single(int l, int i, int j, int w) const {
        if (!single_table.empty()) return single_table[single_index(l, j, w) + i];
        return compute_single(l, i, j, w);
    }

    // The column expression above, given the sum of the chosen logits.
    double column_logp(int l, int j, int w, std::uint64_t mask, double sum_a) const {
        const bool lone = (mask & (mask - 1)) == 0;
        const double extra = lone ? single(l, __builtin_ctzll(mask), j, w) : 0.0;
        return (negsp[col_index(l, j) + w - 1] + sum_a) + extra;
    }
    double column_logp(int l, int j, int w, std::uint64_t mask) const {
        const double* a = edge_t.data() + col_index(l, j);
        double sum_a = 0.0;
        for (int i = 0; i < w; ++i) sum_a += select_or_zero((mask >> i) & 1u, a[i]);
        return column_logp(l, j, w, mask, sum_a);
    }

    const Logits p_;  // pointers into arrays that outlive the tables
    int nchunk = 0;   // chunks per column (sampling tables only)
    std::vector<double> ldepth, lwidth, lmodel, lrole, edge_t, negsp, single_table, subset_sum;
    std::vector<AliasSlot> depth_alias, width_alias, model_alias, role_alias, chunk_alias;
};

// One graph's structure as the kernels read it: depth, widths, models, roles, and the
// predecessor set of each node (l+1, j) as a bit mask over i.
struct ParsedGraph {
    int d = 0;
    int w[kMaxDepth];
    int m[kMaxDepth * kMaxWidth];
    int r[kMaxDepth * kMaxWidth];
    std::uint64_t pred[(kMaxDepth - 1) * kMaxWidth];
};

enum class Parse { ok, zero_probability, bad_value };

// Reads graph b and checks it against the support of the distribution (see log_prob). Value
// ranges are checked over the whole graph first so that a bad value is reported even in a graph
// that also has probability 0.
inline Parse parse_graph(const std::int16_t* model, const std::int8_t* role,
                         const std::uint8_t* edges, std::int64_t b, int D, int W, int K, int R,
                         ParsedGraph& g, BadValue& bad) {
    const std::int64_t nslot = static_cast<std::int64_t>(D) * W;
    const std::int64_t per_graph = static_cast<std::int64_t>(D - 1) * W * W;
    if (!load_models(model, b, D, W, K, g.m, bad)) return Parse::bad_value;
    for (std::int64_t s = 0; s < nslot; ++s) {
        const int v = role[b * nslot + s];
        if (v < 0 || v >= R) {
            bad.set("role", b * nslot + s, v);
            return Parse::bad_value;
        }
        g.r[s] = v;
    }
    if (!check_edges(edges, b, per_graph, bad)) return Parse::bad_value;

    int d = 0;
    for (int l = 0; l < D; ++l)
        for (int i = 0; i < W; ++i)
            if (g.m[l * W + i] >= 0) d = l + 1;
    if (d == 0) return Parse::zero_probability;
    g.d = d;
    for (int l = 0; l < D; ++l) {
        const int* ml = g.m + l * W;
        int w = 0;
        while (w < W && ml[w] >= 0) ++w;
        for (int i = w; i < W; ++i)
            if (ml[i] >= 0) return Parse::zero_probability;  // not a prefix
        if (l < d && w == 0) return Parse::zero_probability;
        g.w[l] = w;
    }
    for (int i = 0; i < g.w[0]; ++i)
        if (g.r[i] != 0) return Parse::zero_probability;  // first-layer nodes are assistants

    // Edges, without branching on their values: bits of real candidates go into the predecessor
    // masks, anything else (from or to an empty slot, or past the last layer) is a stray edge.
    const std::uint8_t* eb = edges + b * per_graph;
    for (int l = 0; l + 1 < D; ++l) {
        std::uint64_t* pl = g.pred + l * W;
        std::fill(pl, pl + W, 0);
        const bool live = l < d - 1;
        const int wi = live ? g.w[l] : 0, wj = live ? g.w[l + 1] : 0;
        unsigned stray = 0;
        for (int i = 0; i < W; ++i) {
            const std::uint8_t* row = eb + (static_cast<std::int64_t>(l) * W + i) * W;
            if (i < wi) {
                for (int j = 0; j < W; ++j) {
                    const unsigned x = row[j] != 0;  // 0/1 even if the array changes under us
                    pl[j] |= static_cast<std::uint64_t>(x) << i;
                    stray |= x & static_cast<unsigned>(j >= wj);
                }
            } else {
                for (int j = 0; j < W; ++j) stray |= row[j];
            }
        }
        if (stray) return Parse::zero_probability;
        for (int j = 0; j < wj; ++j)
            if (pl[j] == 0) return Parse::zero_probability;  // every node is reachable
    }
    return Parse::ok;
}

// log P(graph), summed as the sampler sums it: four partial sums (structure, models, roles,
// columns) so that the sampler's dependency chains stay short, combined in a fixed order.
inline double graph_logp(const ProbTables& t, const ParsedGraph& g) {
    const int D = t.p_.D, W = t.p_.W, K = t.p_.K, R = t.p_.R, d = g.d;
    double ls = t.ldepth[d - 1];
    for (int l = 0; l < d; ++l) ls += t.lwidth[(static_cast<std::size_t>(d - 1) * D + l) * W + g.w[l] - 1];
    double lm = 0.0, lr = 0.0, lc = 0.0;
    for (int l = 0; l < d; ++l)
        for (int i = 0; i < g.w[l]; ++i)
            lm += t.lmodel[static_cast<std::size_t>(l * W + i) * K + g.m[l * W + i]];
    for (int l = 1; l < d; ++l)
        for (int i = 0; i < g.w[l]; ++i)
            lr += t.lrole[static_cast<std::size_t>(l * W + i) * R + g.r[l * W + i]];
    for (int l = 0; l + 1 < d; ++l)
        for (int j = 0; j < g.w[l + 1]; ++j) lc += t.column_logp(l, j, g.w[l], g.pred[l * W + j]);
    return ((ls + lm) + lr) + lc;
}

// logp[b] for b in [0, B); -inf outside the support. Stops at the first bad value.
inline BadValue log_prob(const Logits& p, const std::int16_t* model, const std::int8_t* role,
                         const std::uint8_t* edges, std::int64_t B, double* logp) {
    BadValue bad;
    const ProbTables t(p, false);
    ParsedGraph g;
    for (std::int64_t b = 0; b < B; ++b) {
        const Parse r = parse_graph(model, role, edges, b, p.D, p.W, p.K, p.R, g, bad);
        if (r == Parse::bad_value) break;
        logp[b] = r == Parse::ok ? graph_logp(t, g) : -std::numeric_limits<double>::infinity();
    }
    return bad;
}

// Gradient outputs (zero-initialised by the caller), shaped like the logits.
struct LogitGrads {
    double *depth, *width, *model, *role, *edge;
};

// sum_b weights[b] * d logp(graph b) / d logits (weights finite, of any sign). Categorical terms are accumulated as weighted
// one-hot counts plus the total weight per row, and the softmax part is subtracted once per row
// at the end, so the per-graph work is O(nodes + edges), not O(nodes * categories).
// `zero_graph` receives the index of the first graph with probability 0 (an error: its score is
// undefined), or stays -1.
inline BadValue grad_log_prob(const Logits& p, const std::int16_t* model,
                              const std::int8_t* role, const std::uint8_t* edges,
                              const double* weights, std::int64_t B, LogitGrads out,
                              std::int64_t& zero_graph) {
    BadValue bad;
    zero_graph = -1;
    const int D = p.D, W = p.W, K = p.K, R = p.R;
    const ProbTables t(p, false);
    double tot_depth = 0.0;
    std::vector<double> tot_width(static_cast<std::size_t>(D) * D, 0.0);
    std::vector<double> tot_model(static_cast<std::size_t>(D) * W, 0.0);
    std::vector<double> tot_role(static_cast<std::size_t>(D) * W, 0.0);
    // Total weight of the columns (l, j) scored with w_l = w, indexed [l][j][w-1].
    std::vector<double> tot_col(static_cast<std::size_t>(std::max(D - 1, 0)) * W * W, 0.0);
    ParsedGraph g;
    for (std::int64_t b = 0; b < B; ++b) {
        const double wt = weights[b];
        // Negative weights are allowed: REINFORCE passes advantages (reward - baseline).
        if (!std::isfinite(wt)) {
            bad.set("weights", b, wt);
            break;
        }
        const Parse r = parse_graph(model, role, edges, b, D, W, K, R, g, bad);
        if (r == Parse::bad_value) break;
        if (r == Parse::zero_probability) {
            zero_graph = b;
            break;
        }
        const int d = g.d;
        out.depth[d - 1] += wt;
        tot_depth += wt;
        for (int l = 0; l < d; ++l) {
            const std::size_t row = static_cast<std::size_t>(d - 1) * D + l;
            out.width[row * W + g.w[l] - 1] += wt;
            tot_width[row] += wt;
            for (int i = 0; i < g.w[l]; ++i) {
                const std::size_t s = static_cast<std::size_t>(l) * W + i;
                out.model[s * K + g.m[s]] += wt;
                tot_model[s] += wt;
                if (l > 0) {
                    out.role[s * R + g.r[s]] += wt;
                    tot_role[s] += wt;
                }
            }
        }
        for (int l = 0; l + 1 < d; ++l) {
            const int w = g.w[l];
            for (int j = 0; j < g.w[l + 1]; ++j) {
                const std::uint64_t mask = g.pred[l * W + j];
                tot_col[(static_cast<std::size_t>(l) * W + j) * W + w - 1] += wt;
                double* ge = out.edge + static_cast<std::size_t>(l) * W * W + j;  // stride W over i
                if (mask & (mask - 1)) {
                    for (int i = 0; i < w; ++i)
                        if ((mask >> i) & 1u) ge[static_cast<std::size_t>(i) * W] += wt;
                } else {
                    // A lone predecessor may also be the uniform fallback: its score is
                    // sigmoid(a* + log w) rather than 1.
                    const int is = __builtin_ctzll(mask);
                    const double a = t.edge_t[t.col_index(l, j) + is];
                    ge[static_cast<std::size_t>(is) * W] +=
                        wt * sigmoid(a + std::log(static_cast<double>(w)));
                }
            }
        }
    }
    if (bad || zero_graph >= 0) return bad;

    auto subtract_softmax = [](double* g, const double* lsm, const double* tot, std::size_t rows,
                               int n) {
        for (std::size_t r = 0; r < rows; ++r)
            if (tot[r] != 0.0)
                for (int k = 0; k < n; ++k) g[r * n + k] -= tot[r] * std::exp(lsm[r * n + k]);
    };
    subtract_softmax(out.depth, t.ldepth.data(), &tot_depth, 1, D);
    subtract_softmax(out.width, t.lwidth.data(), tot_width.data(), tot_width.size(), W);
    subtract_softmax(out.model, t.lmodel.data(), tot_model.data(), tot_model.size(), K);
    subtract_softmax(out.role, t.lrole.data(), tot_role.data(), tot_role.size(), R);
    // Every scored column subtracts sigmoid(a_i) for each candidate i < w_l.
    for (int l = 0; l + 1 < D; ++l)
        for (int j = 0; j < W; ++j) {
            const double* tc = tot_col.data() + (static_cast<std::size_t>(l) * W + j) * W;
            double suffix = 0.0;  // total weight of columns with w_l > i
            for (int i = W - 1; i >= 0; --i) {
                suffix += tc[i];
                if (suffix == 0.0) continue;
                const std::size_t e = (static_cast<std::size_t>(l) * W + i) * W + j;
                out.edge[e] -= suffix * sigmoid(p.edge[e]);
            }
        }
    return bad;
}

// Output buffers of sample_graphs, with room for n graphs; every byte of an accepted graph's rows
// is written (the buffers need no initialisation).
struct SampleOut {
    std::int16_t* model;  // [n, D, W]
    std::int8_t* role;    // [n, D, W]
    std::uint8_t* edges;  // [n, D-1, W, W]
    double* logp;         // [n]
};

struct SampleStats {
    std::int64_t accepted = 0;
    std::int64_t drawn = 0;
};

// Draws graphs until n are accepted or max_draws have been drawn; the draws, in the order they
// read words from the stream, are those of pytts._reference (its docstring states them):
//   depth; the width of each layer; the model of each node, in (layer, slot) order; then column
//   by column (node (l+1, j) in that order) its predecessors: nothing drawn when layer l has one
//   node (the edge is certain), else one subset draw per chunk of candidates and, if no
//   candidate came up, one uniform pick among them; last, the role of each node after layer 0.
// When Conditioned, a graph whose FLOPs exceed `budget` is rejected as early as a bound allows:
// after the models (which bound the FLOPs from below before any edge is drawn), and after each
// column (its exact partial sum plus the bound of the nodes still to come). The exact FLOPs are
// summed node by node in graph_cost's order, so acceptance agrees with feasible() bit for bit.
// Roles do not change the cost, so they come last, and a rejected graph draws none.
//
// Models and roles are drawn in one flat loop over the graph's nodes, and the chunks of a column
// in a loop of fixed length whose draws that do not happen load their word and advance by 0:
// widths are random, and loops or branches on them would be mispredicted often.
template <bool Conditioned>
SampleStats sample_graphs(const ProbTables& t, const ModelCosts* mc, double base_prompt,
                          std::int64_t n, std::uint64_t seed, double budget,
                          std::int64_t max_draws, SampleOut out,
                          SamplerIsa isa = SamplerIsa::best) {
    const Logits& p = t.p_;
    const int D = p.D, W = p.W, K = p.K, R = p.R, C = t.nchunk;
    const std::int64_t nslot = static_cast<std::int64_t>(D) * W;
    const std::int64_t nedge = static_cast<std::int64_t>(D - 1) * W * W;
    const std::size_t max_words = 1 + D + 2 * static_cast<std::size_t>(nslot) +
                                  static_cast<std::size_t>(D - 1) * W * (C + 1);
    WordStream words(seed, max_words);
    const std::uint32_t* wp = nullptr;  // the next word to read
    SampleStats st;

    // Early rejection with a partial sum plus the lower bound of the nodes still to come is only
    // sound up to rounding (the two sums run in different orders), so it demands a relative
    // margin of 1e-12, far above the rounding error of a few hundred terms; graphs within the
    // margin are decided by the exact sum.
    const bool early_exit = Conditioned && budget > 0.0;
    const double budget_margin = budget * (1.0 + 1e-12);

    // Per node q, in (layer, slot) order, with room for a whole template row past the last:
    // its slot and its layer.
    int slot[kMaxDepth * kMaxWidth + kMaxWidth];
    int layer[kMaxDepth * kMaxWidth + kMaxWidth];
    int w[kMaxDepth];                           // width of each layer
    int m[kMaxDepth * kMaxWidth];               // model of each slot
    double outs[kMaxDepth * kMaxWidth];         // its output tokens (read masked, so kept finite)
    std::fill(outs, outs + nslot, 0.0);
    double done[kMaxDepth * kMaxWidth];         // [q]: the FLOPs bound of nodes 0, 1, ..., q
    double min_out[kMaxDepth + 1];              // [l + 1]: smallest output of layer l; [0] = 0
    std::uint64_t live[kMaxWidth + 1];          // [w]: the low w bits
    for (int w = 0; w <= kMaxWidth; ++w)
        live[w] = w == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << w) - 1;
    const double* subset = t.subset_sum.empty() ? nullptr : t.subset_sum.data();
    // The tables read per draw, as plain pointers: the output rows are written through char
    // pointers, which may alias anything, so members read through `t` would be reloaded.
    const AliasSlot *depth_alias = t.depth_alias.data(), *width_alias = t.width_alias.data(),
                    *model_alias = t.model_alias.data(), *role_alias = t.role_alias.data();
    const double *ldepth = t.ldepth.data(), *lwidth = t.lwidth.data(),
                 *lmodel = t.lmodel.data(), *lrole = t.lrole.data();
    const std::size_t subset_stride = subset ? std::size_t{1} << W : 0;
    // Narrow templates (the subset table exists): a layer's edges are one 8x8 bit matrix, bit
    // 8i + j for edge (l, i) -> (l + 1, j), written out once the graph is accepted.
    const bool narrow = subset != nullptr;
    const bool expand64 = W == 8 && isa == SamplerIsa::best && cpu_has_avx512bw();
    std::uint64_t layer_bits[kMaxDepth];
    const std::uint8_t* edges_end = out.edges + n * nedge;

    while (st.accepted < n && st.drawn < max_draws) {
        ++st.drawn;
        wp = words.reserve(max_words, wp);
        const int d = draw_alias(*wp++, depth_alias, D) + 1;
        double ls = ldepth[d - 1];
        int nodes = 0, first_later = 0;  // first_later: flat index after layer 0
        for (int l = 0; l < d; ++l) {
            const std::size_t row = (static_cast<std::size_t>(d - 1) * D + l) * W;
            const int k = draw_alias(*wp++, width_alias + row, W);
            ls += lwidth[row + k];
            w[l] = k + 1;
            for (int i = 0; i < W; ++i) {
                slot[nodes + i] = l * W + i;
                layer[nodes + i] = l;
            }
            nodes += k + 1;
            first_later = l == 0 ? nodes : first_later;
        }
        // Models, and when Conditioned a lower bound on the FLOPs, node by node in graph_cost's
        // order: a node after layer 0 reads at least one answer of the layer before, so its
        // prompt is at least base + the smallest output among that layer's models (complete by
        // the time its first node comes: nodes run in layer order). Each term is <= the exact
        // one and rounding is monotone, so the bound never exceeds the exact sum. What is left
        // of it after node q is lower - done[q].
        // The models go straight to the next output row (rewritten whole if this graph is
        // rejected).
        std::int16_t* om = out.model + st.accepted * nslot;
        std::fill(om, om + nslot, std::int16_t{-1});
        double lm = 0.0, lower = 0.0;
        if (Conditioned)  // every layer of the template: a loop of fixed length
            for (int l = 0; l <= D; ++l)
                min_out[l] = l == 0 ? 0.0 : std::numeric_limits<double>::infinity();
        for (int q = 0; q < nodes; ++q) {
            const int s = slot[q];
            const std::size_t row = static_cast<std::size_t>(s) * K;
            const int k = draw_alias(*wp++, model_alias + row, K);
            m[s] = k;
            om[s] = static_cast<std::int16_t>(k);
            lm += lmodel[row + k];
            if (Conditioned) {
                const int l = layer[q];
                outs[s] = mc->out_tokens[k];
                min_out[l + 1] = std::min(min_out[l + 1], outs[s]);
                lower += mc->node_flops(k, base_prompt + min_out[l]);
                done[q] = lower;
            }
        }
        if (Conditioned && lower > budget) continue;

        // The exact FLOPs so far: layer 0's nodes, whose bound terms are exact (prompt base +
        // 0.0), summed in the same order.
        double F = Conditioned ? done[first_later - 1] : 0.0;
        double lc = 0.0;
        bool rejected = false;
        std::uint8_t* oe = out.edges + st.accepted * nedge;
        if (!narrow) std::memset(oe, 0, static_cast<std::size_t>(nedge));  // columns land here
        int q = first_later;  // flat index of the node whose column is drawn next
        for (int l = 0; l + 1 < d && !rejected; ++l) {
            const int wl = w[l], wn = w[l + 1];
            // This layer's tables; column j is a fixed stride further.
            const std::uint64_t keep_mask = live[wl];
            const AliasSlot* chunk = t.chunk_alias.data() + t.chunk_index(l, 0, 0);
            const std::size_t chunk_stride = static_cast<std::size_t>(C) * kChunkOutcomes;
            const double* negsp = t.negsp.data() + static_cast<std::size_t>(l) * W * W + wl - 1;
            const double* single =
                t.single_table.empty() ? nullptr : t.single_table.data() + t.single_index(l, 0, wl);
            const double* sub = narrow ? subset + static_cast<std::size_t>(l) * W * subset_stride
                                       : nullptr;
            const double* a = t.edge_t.data() + static_cast<std::size_t>(l) * W * W;
            const double* o = outs + static_cast<std::size_t>(l) * W;
            std::uint8_t* col = oe + static_cast<std::size_t>(l) * W * W;  // + j, stride W over i
            std::uint64_t bits = 0;
            const int drawn_chunks = wl > 1 ? (wl + kChunk - 1) / kChunk : 0;
            for (int j = 0; j < wn; ++j, ++q, chunk += chunk_stride, negsp += W, a += W) {
                // The first ceil(wl / kChunk) chunks (none when wl == 1): a loop whose length
                // is the same for every column of the layer, so it is predicted.
                std::uint64_t mask = 0;
                for (int c = 0; c < drawn_chunks; ++c) {
                    const auto x = static_cast<std::uint64_t>(
                        draw_alias(*wp++, chunk + c * kChunkOutcomes, kChunkOutcomes));
                    mask |= x << (c * kChunk);
                }
                mask &= keep_mask;
                mask |= static_cast<std::uint64_t>(wl == 1);  // one candidate: the edge is certain
                // No candidate came up: one uniform pick (rare enough for a branch).
                if (mask == 0) mask = std::uint64_t{1} << draw_uniform(*wp++, wl);

                double sum_a = 0.0;
                if (narrow) {
                    bits |= kSpread8.bytes[mask] << j;
                    sum_a = sub[static_cast<std::size_t>(j) * subset_stride + mask];
                } else {
                    for (int i = 0; i < W; ++i) {
                        const std::uint64_t x = (mask >> i) & 1u;
                        col[j + static_cast<std::size_t>(i) * W] = static_cast<std::uint8_t>(x);
                        sum_a += select_or_zero(x, a[i]);
                    }
                }
                // The column term of ProbTables::column_logp.
                const std::uint64_t lone = (mask & (mask - 1)) == 0;
                const int first = __builtin_ctzll(mask);
                const double extra =
                    single
                        ? select_or_zero(lone, single[static_cast<std::size_t>(j * W * W + first)])
                           : (lone ? t.compute_single(l, first, j, wl) : 0.0);
                lc += (*negsp + sum_a) + extra;
                if (Conditioned) {
                    double prompt = base_prompt;
                    for (int i = 0; i < wl; ++i) prompt += select_or_zero((mask >> i) & 1u, o[i]);
                    F += mc->node_flops(m[(l + 1) * W + j], prompt);
                    if (early_exit && F + (lower - done[q]) > budget_margin) {
                        rejected = true;
                        break;
                    }
                }
            }
            layer_bits[l] = bits;
        }
        if (Conditioned && F > budget) rejected = true;
        if (rejected) continue;
        // The graph is accepted: its roles (written to its output row as they are drawn), then
        // its edges. Every byte of the row is written.
        std::int8_t* orl = out.role + st.accepted * nslot;
        std::memset(orl, 0, static_cast<std::size_t>(nslot));
        double lr = 0.0;
        for (int q = first_later; q < nodes; ++q) {
            const std::size_t s = static_cast<std::size_t>(slot[q]) * R;
            const int k = draw_alias(*wp++, role_alias + s, R);
            orl[slot[q]] = static_cast<std::int8_t>(k);
            lr += lrole[s + k];
        }
        if (expand64) {
            expand_layers_avx512bw(oe, layer_bits, D - 1, d - 1);
        } else if (narrow) {
            // Row (l, i) of the edges is byte i of each column's spread mask: bits 8i.. of the
            // layer's matrix, spread again. Whole 8-byte stores, in ascending order, so that
            // the zero bytes past a row of W < 8 land on the next row before it is written;
            // only the output's very last graph stores its rows byte by byte.
            const bool spill = oe + nedge + 8 > edges_end;
            for (int l = 0; l + 1 < D; ++l) {
                const std::uint64_t bits = l + 1 < d ? layer_bits[l] : 0;
                for (int i = 0; i < W; ++i) {
                    const std::uint64_t row = kSpread8.bytes[(bits >> (8 * i)) & 0xFF];
                    std::uint8_t* dst = oe + (static_cast<std::size_t>(l) * W + i) * W;
                    if (!spill)
                        std::memcpy(dst, &row, 8);
                    else
                        for (int j = 0; j < W; ++j)
                            dst[j] = static_cast<std::uint8_t>(row >> (8 * j));
                }
            }
        }
        out.logp[st.accepted] = ((ls + lm) + lr) + lc;
        ++st.accepted;
    }
    return st;
}

}  // namespace pytts
