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

// One bucket of a Walker/Vose alias table: a draw that lands in bucket b keeps b when the low 32
// bits of the uniform are below `keep` (a probability scaled by 2^32, so 2^32 means always), else
// takes `alias`. O(1) and branch-free per draw, whatever the number of categories.
struct AliasSlot {
    std::uint64_t keep;
    std::int64_t alias;
};

// Alias tables of `rows` rows of n categories, from their log-probabilities.
inline void build_alias(const double* logp, std::int64_t rows, int n, AliasSlot* out) {
    std::vector<double> q(n);
    std::vector<int> small, large;
    small.reserve(n);
    large.reserve(n);
    for (std::int64_t r = 0; r < rows; ++r) {
        const double* lp = logp + r * n;
        AliasSlot* t = out + r * n;
        double total = 0.0;
        for (int k = 0; k < n; ++k) total += q[k] = std::exp(lp[k]);
        small.clear();
        large.clear();
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
}

// A category of a row from one 64-bit uniform: the high half picks the bucket (multiply-shift,
// bias below n / 2^32), the low half decides keep or alias.
inline int draw_alias(std::uint64_t r, const AliasSlot* row, int n) {
    const auto b = static_cast<std::uint32_t>(((r >> 32) * static_cast<std::uint64_t>(n)) >> 32);
    const AliasSlot& s = row[b];
    // Select by mask: a compiled branch here would mispredict on every other draw.
    const std::int64_t keep = -static_cast<std::int64_t>((r & 0xFFFFFFFFu) < s.keep);
    return static_cast<int>(s.alias ^ ((static_cast<std::int64_t>(b) ^ s.alias) & keep));
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

// Per-call tables. Edge tables are transposed to [l][j][i] so that drawing or scoring the column
// of predecessors of node (l+1, j) reads contiguous memory.
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
            build_alias(ldepth.data(), 1, D, depth_alias.data());
            build_alias(lwidth.data(), static_cast<std::int64_t>(D) * D, W, width_alias.data());
            build_alias(lmodel.data(), static_cast<std::int64_t>(D) * W, K, model_alias.data());
            build_alias(lrole.data(), static_cast<std::int64_t>(D) * W, R, role_alias.data());
            // One spare entry: the sampler reads thresholds in pairs, and the pair of an odd-width
            // column's last candidate may reach one past the end (its outcome is discarded).
            edge_thr.assign(ne + 1, 0);
            for (std::size_t e = 0; e < ne; ++e)
                edge_thr[e] =
                    static_cast<std::uint64_t>(std::llround(sigmoid(edge_t[e]) * 4294967296.0));
            // For narrow templates, every column's sum of chosen logits is tabulated by subset,
            // built by adding the highest member last so that each entry is the ascending sum
            // column_logp computes (bit for bit).
            if (W <= kSubsetMaxWidth) {
                const std::size_t nsub = std::size_t{1} << W;
                subset_sum.resize(static_cast<std::size_t>(D - 1) * W * nsub);
                for (int l = 0; l + 1 < D; ++l)
                    for (int j = 0; j < W; ++j) {
                        double* ss = subset_sum.data() + (static_cast<std::size_t>(l) * W + j) * nsub;
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

    const Logits& p_;
    std::vector<double> ldepth, lwidth, lmodel, lrole, edge_t, negsp, single_table, subset_sum;
    std::vector<AliasSlot> depth_alias, width_alias, model_alias, role_alias;
    std::vector<std::uint64_t> edge_thr;
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

// Output buffers of sample_graphs, with room for n graphs. role and edges must arrive zero-filled
// (a calloc'ed array costs nothing until touched); model is written in full.
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

// Draws graphs until n are accepted or max_draws have been drawn. When Conditioned, a graph whose
// FLOPs exceed `budget` is rejected as early as a bound allows: all models are drawn first (the
// draws are independent given depth and widths, so the order does not change the distribution),
// which bounds the FLOPs from below before any edge is drawn; then after each node, its exact
// partial sum plus the bound of the nodes still to come. The exact FLOPs are summed node by node
// in graph_cost's order, so acceptance agrees with feasible() bit for bit.
template <bool Conditioned>
SampleStats sample_graphs(const Logits& p, const ProbTables& t, const ModelCosts* mc,
                          double base_prompt, std::int64_t n, std::uint64_t seed, double budget,
                          std::int64_t max_draws, SampleOut out) {
    const int D = p.D, W = p.W, K = p.K, R = p.R;
    const std::int64_t nslot = static_cast<std::int64_t>(D) * W;
    const std::int64_t nedge = static_cast<std::int64_t>(D - 1) * W * W;
    Xoshiro256ss rng(seed);
    SampleStats st;

    // FLOPs of a node of model k: exact without predecessors (first layer, node_lower[k]), and
    // a lower bound with at least one (node_lower[K + k]).
    std::vector<double> node_lower(2 * static_cast<std::size_t>(K), 0.0);
    if (Conditioned) {
        double min_out = std::numeric_limits<double>::infinity();
        for (int k = 0; k < K; ++k) min_out = std::min(min_out, mc->out_tokens[k]);
        for (int k = 0; k < K; ++k) {
            node_lower[k] = mc->node_flops(k, base_prompt);
            node_lower[K + k] = mc->node_flops(k, base_prompt + min_out);
        }
    }
    const double* node0 = node_lower.data();
    std::vector<int> iota(nslot + kMaxWidth);
    for (int s = 0; s < nslot; ++s) iota[s] = s;

    // Early rejection with a partial sum plus the lower bound of the nodes still to come is only
    // sound up to rounding (the two sums run in different orders), so it demands a relative
    // margin of 1e-12, far above the rounding error of a few hundred terms; graphs within the
    // margin are decided by the exact sum.
    const bool early_exit = Conditioned && budget > 0.0;
    const double budget_margin = budget * (1.0 + 1e-12);

    int w[kMaxDepth];
    int m[kMaxDepth * kMaxWidth];
    // Slots of the graph's nodes in (layer, slot) order: one flat loop over nodes instead of a
    // loop per layer, whose random trip counts would each cost a branch misprediction.
    int slot[kMaxDepth * kMaxWidth + kMaxWidth];
    double rest[kMaxDepth * kMaxWidth + 1];  // lower bound of the FLOPs of nodes q, q+1, ...
    double out_prev[kMaxWidth];
    const double* subset = t.subset_sum.empty() ? nullptr : t.subset_sum.data();
    const std::size_t col_stride = static_cast<std::size_t>(W);  // between columns j, j+1
    const std::size_t subset_stride = subset ? std::size_t{1} << W : 0;

    while (st.accepted < n && st.drawn < max_draws) {
        ++st.drawn;
        const int d = draw_alias(rng.next(), t.depth_alias.data(), D) + 1;
        double ls = t.ldepth[d - 1];
        int nodes = 0;
        for (int l = 0; l < d; ++l) {
            const std::size_t row = (static_cast<std::size_t>(d - 1) * D + l) * W;
            const int k = draw_alias(rng.next(), t.width_alias.data() + row, W);
            w[l] = k + 1;
            ls += t.lwidth[row + k];
            // A fixed-length copy (slot and iota have spare entries): nothing to mispredict, and
            // for narrow templates a constant size that compiles to two vector moves.
            if (W <= 8)
                std::memcpy(slot + nodes, iota.data() + l * W, 8 * sizeof(int));
            else
                std::memcpy(slot + nodes, iota.data() + l * W, W * sizeof(int));
            nodes += k + 1;
        }
        // Lower bound on the FLOPs, node by node in graph_cost's order: a node after layer 0 has
        // at least one predecessor, so its prompt is at least base + the smallest output in the
        // pool. Each term is <= the exact one and rounding is monotone, so the bound never
        // exceeds the exact sum.
        double lm = 0.0, lower = 0.0;
        const int w0 = w[0];
        for (int q = 0; q < nodes; ++q) {
            const int sq = slot[q];
            const std::size_t s = static_cast<std::size_t>(sq) * K;
            const int k = draw_alias(rng.next(), t.model_alias.data() + s, K);
            m[sq] = k;
            lm += t.lmodel[s + k];
            if (Conditioned) {
                rest[q] = node_lower[static_cast<std::size_t>(q >= w0) * K + k];
                lower += rest[q];
            }
        }
        if (Conditioned && lower > budget) continue;
        if (early_exit) {
            rest[nodes] = 0.0;
            for (int q = nodes - 1; q >= 0; --q) rest[q] += rest[q + 1];
        }

        // Write into the next output row (role and edges arrive zeroed).
        std::int16_t* om = out.model + st.accepted * nslot;
        std::int8_t* orl = out.role + st.accepted * nslot;
        std::uint8_t* oe = out.edges + st.accepted * nedge;
        for (int s = 0; s < nslot; ++s) om[s] = -1;
        for (int q = 0; q < nodes; ++q) om[slot[q]] = static_cast<std::int16_t>(m[slot[q]]);
        double lr = 0.0;
        for (int q = w[0]; q < nodes; ++q) {
            const std::size_t s = static_cast<std::size_t>(slot[q]) * R;
            const int k = draw_alias(rng.next(), t.role_alias.data() + s, R);
            orl[slot[q]] = static_cast<std::int8_t>(k);
            lr += t.lrole[s + k];
        }

        double F = 0.0;
        if (Conditioned)
            for (int i = 0; i < w[0]; ++i) {
                F += node0[m[i]];
                out_prev[i] = mc->out_tokens[m[i]];
            }
        double lc = 0.0;
        bool rejected = false;
        int q_next = w[0];  // flat index of the node whose column is drawn next
        for (int l = 0; l + 1 < d && !rejected; ++l) {
            const int wl = w[l], wn = w[l + 1];
            // Per-layer bases; each column j then steps by a fixed stride.
            const std::size_t c0 = t.col_index(l, 0);
            const std::uint64_t* thr = t.edge_thr.data() + c0;
            const double* a = t.edge_t.data() + c0;
            const double* negsp = t.negsp.data() + c0 + (wl - 1);
            const double* sub = subset ? subset + c0 / W * subset_stride : nullptr;
            // Single-predecessor terms of this layer at width wl, column j at + j * W * W.
            const double* single =
                t.single_table.empty() ? nullptr : t.single_table.data() + t.single_index(l, 0, wl);
            const int* mn = m + (l + 1) * W;
            std::uint8_t* col = oe + static_cast<std::int64_t>(l) * W * W;  // + j, stride W over i
            for (int j = 0; j < wn; ++j, thr += col_stride, a += col_stride,
                     negsp += col_stride, col += 1, sub += subset_stride) {
                std::uint64_t mask = 0;
                double sum_a = 0.0;
                double prompt = base_prompt;
                if (wl == 1) {
                    // One candidate: drawn or not, the fallback makes the edge certain.
                    mask = 1;
                    col[0] = 1;
                    sum_a = a[0];
                    if (Conditioned) prompt += out_prev[0];
                } else {
                    // Both halves of each 64-bit output are uniforms; a trailing half is dropped.
                    for (int i = 0; i < wl; i += 2) {
                        const std::uint64_t r = rng.next();
                        const std::uint64_t x0 = static_cast<std::uint32_t>(r) < thr[i];
                        const std::uint64_t x1 = ((r >> 32) < thr[i + 1]) & (i + 1 < wl);
                        mask |= (x0 << i) | (x1 << (i + 1));
                        col[static_cast<std::size_t>(i) * W] = static_cast<std::uint8_t>(x0);
                        if (!sub) sum_a += select_or_zero(x0, a[i]);
                        if (Conditioned) prompt += select_or_zero(x0, out_prev[i]);
                        if (i + 1 < wl) {
                            col[static_cast<std::size_t>(i + 1) * W] = static_cast<std::uint8_t>(x1);
                            if (!sub) sum_a += select_or_zero(x1, a[i + 1]);
                            if (Conditioned) prompt += select_or_zero(x1, out_prev[i + 1]);
                        }
                    }
                    if (mask == 0) {
                        // No predecessor drawn: one, uniformly (the sums above are still zero).
                        const int is = static_cast<int>(
                            ((rng.next() >> 32) * static_cast<std::uint64_t>(wl)) >> 32);
                        mask = std::uint64_t{1} << is;
                        col[static_cast<std::size_t>(is) * W] = 1;
                        sum_a = a[is];
                        if (Conditioned) prompt += out_prev[is];
                    }
                    if (sub) sum_a = sub[mask];
                }
                // The column term of ProbTables::column_logp, with the per-layer pointers.
                const bool lone = (mask & (mask - 1)) == 0;
                const int first = __builtin_ctzll(mask);
                const double extra =
                    !lone ? 0.0
                          : single ? single[static_cast<std::size_t>(j) * W * W + first]
                                   : t.compute_single(l, first, j, wl);
                lc += (*negsp + sum_a) + extra;
                if (Conditioned) {
                    F += mc->node_flops(mn[j], prompt);
                    ++q_next;
                    if (early_exit && F + rest[q_next] > budget_margin) {
                        rejected = true;
                        break;
                    }
                }
            }
            if (Conditioned) {
                if (F > budget) rejected = true;
                for (int j = 0; j < wn; ++j) out_prev[j] = mc->out_tokens[mn[j]];
            }
        }
        if (rejected) {
            // Hand the row back zeroed to the next attempt.
            std::memset(orl, 0, static_cast<std::size_t>(nslot));
            std::memset(oe, 0, static_cast<std::size_t>(nedge));
            continue;
        }
        out.logp[st.accepted] = ((ls + lm) + lr) + lc;
        ++st.accepted;
    }
    return st;
}

}  // namespace pytts
