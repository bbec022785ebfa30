// Canonical slot order of a layered graph, up to permutations of the slots within each layer.
//
// The steps, and every tie-break in them, are those of `pytts._reference.canonical_order` (its
// comment block explains them): twin classes become one quotient node each; colour refinement
// across layers; individualisation-refinement with automorphism pruning where classes remain.
// Both backends must return the same order, not merely an equally canonical one, because the
// order also fixes the vote order of a graph's sinks.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace pytts {

class CanonicalForm {
public:
    // order[l * W + k] = the k-th slot of layer l in canonical order, then -1. A slot holds a
    // node where model >= 0 and an edge is any nonzero byte; requires W <= 64.
    void run(const std::int16_t* model, const std::int8_t* role, const std::uint8_t* edges,
             int D, int W, std::int32_t* order) {
        build_quotient(model, role, edges, D, W);
        first_ = best_ = Leaf{};
        generators_.clear();
        Partition p = initial_partition();
        std::vector<int> all(n_), path;
        for (int q = 0; q < n_; ++q) all[q] = q;
        refine(p, all);
        search(p, path);
        std::fill(order, order + static_cast<std::size_t>(D) * W, -1);
        if (n_ == 0) return;
        std::vector<int> at(n_);
        for (int q = 0; q < n_; ++q) at[best_.colour[q]] = q;
        for (int l = 0; l < D; ++l) {
            int k = 0;
            // Colours keep the layers in order, so positions start_[l].. are layer l's classes.
            for (int pos = start_[l]; pos < start_[l + 1]; ++pos)
                for (int i : members_[at[pos]]) order[l * W + k++] = i;
        }
    }

private:
    // The ordered partition of the quotient's nodes. A node's colour is the position where its
    // cell starts; the reference numbers cells 0, 1, 2, ... instead, which orders them the same
    // way, so every comparison and every result agrees. Positions let a split relabel only the
    // cell it splits.
    struct Partition {
        std::vector<int> colour;  // per node
        std::vector<int> elems;   // per position: a node; each cell is contiguous
        std::vector<int> size;    // per position that starts a cell: the cell's size, else 0
        int n_cells = 0;
    };

    struct Leaf {
        bool set = false;
        std::vector<std::uint64_t> code;
        std::vector<int> colour, path;
    };

    int n_ = 0;
    std::vector<int> layer_, start_;
    std::vector<std::vector<int>> members_, preds_, succs_;
    std::vector<std::array<int, 4>> label_;  // layer, model, role, multiplicity
    Leaf first_, best_;
    std::vector<std::vector<int>> generators_;
    std::vector<int> sig_;  // scratch of refine: sorted neighbour colours, node after node

    void build_quotient(const std::int16_t* model, const std::int8_t* role,
                        const std::uint8_t* edges, int D, int W) {
        const auto act = [&](int l, int i) { return model[l * W + i] >= 0; };
        std::vector<std::uint64_t> pm(static_cast<std::size_t>(D) * W, 0), sm(pm.size(), 0);
        for (int l = 0; l + 1 < D; ++l)
            for (int i = 0; i < W; ++i) {
                if (!act(l, i)) continue;
                const std::uint8_t* row = edges + (static_cast<std::size_t>(l) * W + i) * W;
                for (int j = 0; j < W; ++j)
                    if (row[j] && act(l + 1, j)) {
                        sm[l * W + i] |= std::uint64_t{1} << j;
                        pm[(l + 1) * W + j] |= std::uint64_t{1} << i;
                    }
            }
        members_.clear();
        label_.clear();
        layer_.clear();
        start_.assign(D + 1, 0);
        std::vector<int> class_of(static_cast<std::size_t>(D) * W, -1);
        for (int l = 0; l < D; ++l) {
            start_[l] = static_cast<int>(members_.size());
            for (int i = 0; i < W; ++i) {
                if (!act(l, i)) continue;
                const int s = l * W + i;
                int q = start_[l];
                for (; q < static_cast<int>(members_.size()); ++q) {
                    const int t = l * W + members_[q][0];
                    if (model[t] == model[s] && role[t] == role[s] && pm[t] == pm[s] &&
                        sm[t] == sm[s])
                        break;
                }
                if (q == static_cast<int>(members_.size())) {
                    members_.emplace_back();
                    layer_.push_back(l);
                }
                members_[q].push_back(i);
                class_of[s] = q;
            }
            for (int q = start_[l]; q < static_cast<int>(members_.size()); ++q) {
                const int s = l * W + members_[q][0];
                label_.push_back({l, model[s], role[s], static_cast<int>(members_[q].size())});
            }
        }
        n_ = static_cast<int>(members_.size());
        start_[D] = n_;
        preds_.assign(n_, {});
        succs_.assign(n_, {});
        for (int q = 0; q < n_; ++q) {
            const int l = layer_[q], s = l * W + members_[q][0];
            for (int i = 0; i < W; ++i) {
                if (pm[s] >> i & 1) preds_[q].push_back(class_of[(l - 1) * W + i]);
                if (sm[s] >> i & 1) succs_[q].push_back(class_of[(l + 1) * W + i]);
            }
            dedupe(preds_[q]);
            dedupe(succs_[q]);
        }
    }

    static void dedupe(std::vector<int>& v) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
    }

    Partition initial_partition() const {
        Partition p;
        p.colour.assign(n_, 0);
        p.size.assign(n_, 0);
        p.elems.resize(n_);
        for (int q = 0; q < n_; ++q) p.elems[q] = q;
        std::sort(p.elems.begin(), p.elems.end(),
                  [&](int a, int b) { return label_[a] < label_[b]; });
        for (int k = 0, start = 0; k < n_; ++k) {
            if (k > 0 && label_[p.elems[k]] != label_[p.elems[k - 1]]) start = k;
            if (start == k) ++p.n_cells;
            p.colour[p.elems[k]] = start;
            ++p.size[start];
        }
        return p;
    }

    void append_sorted_colours(const std::vector<int>& nodes, const std::vector<int>& colour) {
        const std::size_t from = sig_.size();
        for (int r : nodes) sig_.push_back(colour[r]);
        std::sort(sig_.begin() + static_cast<std::ptrdiff_t>(from), sig_.end());
    }

    // Colour refinement to the coarsest stable partition finer than `p`; `changed` lists the
    // nodes whose cell changed since `p` was last stable. Each round ranks (colour, sorted
    // predecessor colours, sorted successor colours) as the reference does, but only in cells
    // next to a node whose cell changed the round before: no other cell can split, so the
    // rounds, and their results, are the reference's.
    void refine(Partition& p, std::vector<int> changed) {
        std::vector<char> marked(n_, 0);
        std::vector<int> cells, new_colour(n_), up(n_), mid(n_), end(n_);
        std::vector<std::pair<int, std::vector<int>>> splits;  // cell start, members in order
        while (!changed.empty()) {
            cells.clear();
            const auto mark = [&](int r) {
                const int c = p.colour[r];
                if (p.size[c] > 1 && !marked[c]) {
                    marked[c] = 1;
                    cells.push_back(c);
                }
            };
            for (int q : changed) {
                for (int r : preds_[q]) mark(r);
                for (int r : succs_[q]) mark(r);
            }
            changed.clear();
            splits.clear();
            // Every signature from this round's colours first, then every split.
            for (int c : cells) {
                marked[c] = 0;
                std::vector<int> members(p.elems.begin() + c, p.elems.begin() + c + p.size[c]);
                sig_.clear();
                for (int q : members) {
                    up[q] = static_cast<int>(sig_.size());
                    append_sorted_colours(preds_[q], p.colour);
                    mid[q] = static_cast<int>(sig_.size());
                    append_sorted_colours(succs_[q], p.colour);
                    end[q] = static_cast<int>(sig_.size());
                }
                const int* s = sig_.data();
                const auto less = [&](int a, int b) {
                    if (!std::equal(s + up[a], s + mid[a], s + up[b], s + mid[b]))
                        return std::lexicographical_compare(s + up[a], s + mid[a], s + up[b],
                                                            s + mid[b]);
                    return std::lexicographical_compare(s + mid[a], s + end[a], s + mid[b],
                                                        s + end[b]);
                };
                std::sort(members.begin(), members.end(), less);
                if (!less(members.front(), members.back())) continue;
                for (std::size_t k = 0, start = c; k < members.size(); ++k) {
                    if (k > 0 && less(members[k - 1], members[k])) {
                        start = c + k;
                        ++p.n_cells;
                    }
                    new_colour[members[k]] = static_cast<int>(start);
                }
                splits.emplace_back(c, std::move(members));
            }
            for (auto& [c, members] : splits)
                for (std::size_t k = 0; k < members.size(); ++k) {
                    const int q = members[k];
                    p.elems[c + k] = q;
                    p.size[c + k] = 0;
                    changed.push_back(q);
                }
            for (int q : changed) {
                p.colour[q] = new_colour[q];
                ++p.size[new_colour[q]];
            }
        }
    }

    std::vector<std::uint64_t> encode(const std::vector<int>& colour) const {
        std::vector<int> at(n_);
        for (int q = 0; q < n_; ++q) at[colour[q]] = q;
        std::vector<std::uint64_t> code(n_, 0);
        for (int pos = 0; pos < n_; ++pos) {
            const int q = at[pos];
            const int base = layer_[q] ? start_[layer_[q] - 1] : 0;
            for (int r : preds_[q]) code[pos] |= std::uint64_t{1} << (colour[r] - base);
        }
        return code;
    }

    void add_automorphism(const std::vector<int>& colour, const std::vector<int>& other) {
        std::vector<int> at(n_), gamma(n_);
        for (int q = 0; q < n_; ++q) at[other[q]] = q;
        for (int q = 0; q < n_; ++q) gamma[q] = at[colour[q]];
        generators_.push_back(std::move(gamma));
    }

    // Orbits of the automorphisms found so far that fix a path, grown as more are found.
    struct Orbits {
        std::vector<int> parent;
        std::size_t seen = 0;  // generators_ already merged (or skipped)
        int find(int x) {
            while (parent[x] != x) x = parent[x] = parent[parent[x]];
            return x;
        }
    };

    bool same_orbit(Orbits& o, int v, const std::vector<int>& explored,
                    const std::vector<int>& path) {
        if (o.parent.empty()) {
            o.parent.resize(n_);
            for (int q = 0; q < n_; ++q) o.parent[q] = q;
        }
        for (; o.seen < generators_.size(); ++o.seen) {
            const auto& gamma = generators_[o.seen];
            bool fixes = true;
            for (int x : path) fixes = fixes && gamma[x] == x;
            if (!fixes) continue;
            for (int x = 0; x < n_; ++x) o.parent[o.find(x)] = o.find(gamma[x]);
        }
        for (int w : explored)
            if (o.find(w) == o.find(v)) return true;
        return false;
    }

    // Returns the depth to unwind to, or -1 to go on.
    int search(const Partition& p, std::vector<int>& path) {
        if (p.n_cells == n_) return leaf(p.colour, path);
        int target = 0;
        while (p.size[target] == 1) target += 1;
        Orbits orbits;
        std::vector<int> explored;
        const int depth = static_cast<int>(path.size());
        for (int v = 0; v < n_; ++v) {
            if (p.colour[v] != target) continue;
            if (!explored.empty() && same_orbit(orbits, v, explored, path)) continue;
            // v keeps the cell's first position; the rest of the cell starts one later.
            Partition child = p;
            const int size = p.size[target];
            std::vector<int> cell(p.elems.begin() + target, p.elems.begin() + target + size);
            child.elems[target] = v;
            for (int k = 1, i = 0; k < size; ++i)
                if (cell[i] != v) {
                    child.elems[target + k++] = cell[i];
                    child.colour[cell[i]] = target + 1;
                }
            child.size[target] = 1;
            child.size[target + 1] = size - 1;
            ++child.n_cells;
            refine(child, cell);
            path.push_back(v);
            const int jump = search(child, path);
            path.pop_back();
            explored.push_back(v);
            if (jump >= 0 && jump < depth) return jump;
        }
        return -1;
    }

    int leaf(const std::vector<int>& colour, const std::vector<int>& path) {
        auto code = encode(colour);
        if (!first_.set) {
            first_ = Leaf{true, code, colour, path};
            best_ = first_;
            return -1;
        }
        for (const Leaf* other : {&first_, &best_})
            if (code == other->code) {
                add_automorphism(colour, other->colour);
                // This leaf's subtree mirrors one explored already: resume where the paths part.
                int k = 0;
                while (path[k] == other->path[k]) ++k;
                return k;
            }
        if (code < best_.code) best_ = Leaf{true, std::move(code), colour, path};
        return -1;
    }
};

}  // namespace pytts
