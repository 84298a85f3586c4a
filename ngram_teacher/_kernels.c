/* Hot loops of the N-gram teacher, called through ctypes (see kernels.py).
 *
 * The count tables (FORMATS.md, "model directory") are a trie stored as flat
 * arrays, one set per order m = 1..N:
 *   words[id]            word of each m-gram, sorted by (context id, word)
 *   counts[id]           its count
 *   offsets[c]..[c+1]    the m-grams whose context is the (m-1)-gram with id c
 *                        (order 1 has a single context, id 0)
 *   cont_words/counts    the same groups re-sorted by count (desc), then word
 * The id of an m-gram is its index in words[]; so walking down the trie is one
 * binary search inside a (usually short) group per order.
 *
 * Every function works on uint32 ids and counts, and all but infini_rank (whose
 * working stack grows with the longest repeat of the text) leave allocation to
 * Python, which releases the GIL around these calls so that threads run them in
 * parallel on disjoint position ranges.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef uint32_t u32;
typedef int64_t i64;
typedef uint64_t u64;

#define NONE UINT32_MAX
#define MAX_ORDER 16 /* keep in step with kernels.py */
#define BATCH 64

/* ---- counting ------------------------------------------------------------ */

/* Stable counting sort of positions 0..n-1 by their word: out[] lists positions
 * grouped by word, ascending within a word. hist has vocab_size + 1 entries. */
void sort_positions_by_word(const u32 *tokens, i64 n, u32 vocab_size, u32 *hist, u32 *out)
{
    memset(hist, 0, (size_t)(vocab_size + 1) * sizeof(u32));
    for (i64 i = 0; i < n; i++) hist[tokens[i] + 1]++;
    for (u32 w = 0; w < vocab_size; w++) hist[w + 1] += hist[w];
    for (i64 i = 0; i < n; i++) out[hist[tokens[i]]++] = (u32)i;
}

/* Count the m-grams of one order. The m-gram ending at position i has context
 * prev[i-1] (the id of the (m-1)-gram ending at i-1), or context 0 for order 1
 * (prev == NULL). Positions are bucketed by context, in by-word order (by_word
 * holds the positions of word w at word_starts[w]..word_starts[w+1]), so each
 * bucket comes out sorted by word: one stable counting sort instead of a sort.
 * The buckets are then read in order, so a position's context is its bucket and
 * only its word is looked up (memory latency, not arithmetic, is the cost here).
 * A position holding the word `start` (a sentence start marker; NONE for none)
 * only ever begins n-grams: no m-gram of order 2 or more ends there, and so none
 * spans it.
 *
 * Writes cur[i] = id of the m-gram ending at i (NONE where none does), the
 * table words/counts (n_m entries) and offsets (n_ctx + 1 entries); returns n_m.
 * hist needs n_ctx + 1 entries, sorted n entries. */
i64 count_order(const u32 *tokens, i64 n, const u32 *by_word, const u32 *word_starts, u32 vocab_size,
                const u32 *prev, u32 n_ctx, u32 start, u32 *hist, u32 *sorted, u32 *cur, u32 *words,
                u32 *counts, u32 *offsets)
{
    memset(hist, 0, (size_t)(n_ctx + 1) * sizeof(u32));
    memset(cur, 0xff, (size_t)n * sizeof(u32));
#define CONTEXT_OF(i) (prev == NULL ? 0u : ((i) == 0 || tokens[i] == start ? NONE : prev[(i) - 1]))
    for (i64 i = 0; i < n; i++) {
        u32 c = CONTEXT_OF(i);
        if (c != NONE) hist[c + 1]++;
    }
#undef CONTEXT_OF
    for (u32 c = 0; c < n_ctx; c++) hist[c + 1] += hist[c];
    for (u32 w = 0; w < vocab_size; w++) {
        if (prev != NULL && w == start) continue;  /* nothing of order 2 or more ends at a start */
        for (u32 j = word_starts[w]; j < word_starts[w + 1]; j++) {
            u32 i = by_word[j];
            u32 c = prev == NULL ? 0u : (i == 0 ? NONE : prev[i - 1]);
            if (c != NONE) sorted[hist[c]++] = i;
        }
    }
    /* hist[c] is now the end of bucket c, and the start of bucket c + 1. */
    i64 id = -1;
    for (u32 c = 0, begin = 0; c < n_ctx; begin = hist[c++]) {
        offsets[c] = (u32)(id + 1);
        u32 last_w = NONE;
        for (u32 j = begin; j < hist[c]; j++) {
            u32 i = sorted[j], w = tokens[i];
            if (w != last_w) {
                id++;
                words[id] = w;
                counts[id] = 0;
                last_w = w;
            }
            counts[id]++;
            cur[i] = (u32)id;
        }
    }
    offsets[n_ctx] = (u32)(id + 1);
    return id + 1;
}

/* suffix[cur[i]] = lower[i] for every position i where an m-gram ends: the id
 * of each m-gram's last m-1 words (the (m-1)-gram ending at the same position)
 * in the order-(m-1) table. Every occurrence of an m-gram writes the same value. */
void suffix_ids(const u32 *cur, const u32 *lower, i64 n, u32 *suffix)
{
    for (i64 i = 0; i < n; i++)
        if (cur[i] != NONE) suffix[cur[i]] = lower[i];
}

/* ---- counting by packed keys ---------------------------------------------
 * When `order` words of `bits` bits each fit in 64 bits, the m-grams of every
 * order come from one sort: the key of position s packs the words s..s+order-1,
 * first word highest, with the sentinel (all ones) past the end of the stream
 * and, given a `stop` word, after it (sentences: nothing continues past </s>).
 * Sorted, the keys list the m-grams of every order m as their m-word prefixes,
 * in lexicographic order, which is the tables' (context id, word) order. numpy
 * sorts the keys (vectorised, in place): a fraction of count_order's random
 * reads, which it needs once per order. The keys are made and sorted in chunks
 * of first words, which bounds their memory. */

/* counts[w] += occurrences of w in tokens[0..n) (numpy's bincount would copy
 * the stream to 64-bit ids first). */
void count_words(const u32 *tokens, i64 n, i64 *counts)
{
    for (i64 i = 0; i < n; i++) counts[tokens[i]]++;
}

/* The keys of the positions of tokens[0..n) whose first word is in [lo, hi)
 * (keys[s] packs words s..s+order-1). With `bos` != NONE, a sentence start key
 * (bos, then the line's first words) comes before each line's first position
 * (a line starts at 0 and after every `stop`), if bos is in [lo, hi). Returns
 * the number of keys kept; keys needs room for one more. The window of words
 * is rolled along the stream, and cut after the next `stop` (filled with the
 * sentinel, all ones). */
i64 packed_keys(const u32 *tokens, i64 n, int order, int bits, u32 stop, u32 bos, u32 lo, u32 hi, u64 *keys)
{
    const u64 sentinel = (1ull << bits) - 1;
    const int width = order * bits;
    const u64 full = width == 64 ? ~0ull : (1ull << width) - 1;
    const int with_bos = bos != NONE && bos >= lo && bos < hi;
    u64 after[MAX_ORDER]; /* after[d]: the bits of the words after word d of a key */
    for (int d = 0; d < order; d++) after[d] = (1ull << ((order - 1 - d) * bits)) - 1;
    u64 window = 0;
    unsigned is_stop = 0; /* bit order-1-j: word j of the window is `stop` */
    for (int j = 0; j < order; j++) {
        u32 w = j < n ? tokens[j] : NONE;
        window = window << bits | (j < n ? w : sentinel);
        is_stop = is_stop << 1 | (w == stop);
    }
    const unsigned window_bits = (1u << order) - 1;
    i64 out = 0;
    for (i64 s = 0; s < n; s++) {
        unsigned cut = is_stop & ~1u; /* a stop before the window's last word cuts it */
        u64 key = cut ? window | after[order - 32 + __builtin_clz(cut)] : window;
        if (with_bos && (s == 0 || tokens[s - 1] == stop))
            keys[out++] = (u64)bos << ((order - 1) * bits) | key >> bits;
        keys[out] = key;
        out += (u32)(tokens[s] - lo) < (u32)(hi - lo); /* kept if its first word is in range */
        u32 next = s + order < n ? tokens[s + order] : NONE;
        window = (window << bits & full) | (s + order < n ? next : sentinel);
        is_stop = (is_stop << 1 | (next == stop)) & window_bits;
    }
    return out;
}

/* keys[i] packs row i of rows (n x width words, a word may be the sentinel),
 * cut after its first `stop` as packed_keys cuts; with `first` != NONE, the key
 * is first followed by the row's words but its first. */
void pack_rows(const u32 *rows, i64 n, int width, int bits, u32 stop, u32 first, u64 *keys)
{
    const u64 sentinel = (1ull << bits) - 1;
    for (i64 i = 0; i < n; i++) {
        const u32 *row = rows + i * width;
        u64 key = first == NONE ? row[0] : first;
        int live = first == NONE ? row[0] != stop : 1;
        for (int j = 1; j < width; j++) {
            key = key << bits | (live ? row[j] : sentinel);
            live &= row[j] != stop;
        }
        keys[i] = key;
    }
}

/* Append the m-grams of sorted keys to the tables of orders 1..order, each key
 * counting weights[i] times (once without weights): words,
 * counts and offsets are pointer tables indexed by order (as for rank_rows),
 * with room for every m-gram, and size[m] (MAX_ORDER + 1 entries, zero at
 * first) counts those of order m so far. Keys come in chunks by first word,
 * so a chunk never continues an m-gram of the one before. offsets[m][c] is set
 * as context c is made; with `dense` unigrams, order 1 is every word id (its
 * words, counts and offsets are the caller's) and offsets[2] is indexed by word,
 * so the caller fills the groups of words never seen. */
void packed_tables(const u64 *keys, i64 n, const u32 *weights, int order, int bits, int dense, u32 **words,
                   u32 **counts, u32 **offsets, i64 *size)
{
    const u64 mask = (1ull << bits) - 1;
    i64 id[MAX_ORDER + 1] = {0};
    for (i64 i = 0; i < n; i++) {
        int same = 0; /* leading words shared with the previous key */
        if (i > 0) {
            u64 x = keys[i] ^ keys[i - 1];
            same = x ? (order * bits - 64 + __builtin_clzll(x)) / bits : order;
        }
        u32 weight = weights ? weights[i] : 1;
        for (int m = 1; m <= order; m++) {
            u64 w = (keys[i] >> ((order - m) * bits)) & mask;
            if (w == mask) break; /* past the end: no m-gram here, nor longer */
            if (dense && m == 1) {
                id[1] = (i64)w;
            } else if (m <= same) {
                counts[m][id[m]] += weight;
                continue;
            } else {
                id[m] = size[m]++;
                words[m][id[m]] = (u32)w;
                counts[m][id[m]] = weight;
            }
            if (m < order && m > same) offsets[m + 1][id[m]] = (u32)size[m + 1];
        }
    }
}

/* suffix[g] for the m-grams g of one order (m >= 2): the id in order m-1 of g's
 * last m-1 words. For m = 2 that is g's word (dense unigram ids); above, the
 * (m-1)-gram (suffix of g's context, g's word), found by binary search in that
 * context's group of the order below. context_suffix is NULL for m = 2. Every
 * suffix of a counted m-gram is counted, so the search always finds it. */
void suffix_by_search(const u32 *words, const u32 *offsets, u32 n_ctx, const u32 *context_suffix,
                      const u32 *lower_words, const u32 *lower_offsets, u32 *suffix)
{
    for (u32 c = 0; c < n_ctx; c++) {
        for (u32 g = offsets[c]; g < offsets[c + 1]; g++) {
            if (!context_suffix) {
                suffix[g] = words[g];
                continue;
            }
            u32 s = context_suffix[c], lo = lower_offsets[s], hi = lower_offsets[s + 1];
            while (lo < hi) {
                u32 mid = lo + (hi - lo) / 2;
                if (lower_words[mid] < words[g]) lo = mid + 1; else hi = mid;
            }
            suffix[g] = lo;
        }
    }
}

static int by_key(const void *a, const void *b)
{
    u64 x = *(const u64 *)a, y = *(const u64 *)b;
    return (x > y) - (x < y);
}

/* Re-sort every group by count (desc), then word (asc). scratch holds as many
 * u64 as the largest group. */
void sort_continuations(const u32 *words, const u32 *counts, const u32 *offsets, u32 n_ctx,
                        u64 *scratch, u32 *cont_words, u32 *cont_counts)
{
    for (u32 c = 0; c < n_ctx; c++) {
        u32 lo = offsets[c], len = offsets[c + 1] - lo;
        /* key = (~count, word) sorts ascending as count desc, word asc */
        for (u32 j = 0; j < len; j++)
            scratch[j] = ((u64)(UINT32_MAX - counts[lo + j]) << 32) | words[lo + j];
        if (len <= 24) {
            for (u32 j = 1; j < len; j++) {
                u64 key = scratch[j];
                u32 h = j;
                while (h > 0 && scratch[h - 1] > key) { scratch[h] = scratch[h - 1]; h--; }
                scratch[h] = key;
            }
        } else {
            qsort(scratch, len, sizeof(u64), by_key);
        }
        for (u32 j = 0; j < len; j++) {
            cont_words[lo + j] = (u32)scratch[j];
            cont_counts[lo + j] = UINT32_MAX - (u32)(scratch[j] >> 32);
        }
    }
}

/* ---- lookup and ranking --------------------------------------------------- */

/* found[b] = id of the m-gram (context ctx[b], word w[b]), or NONE, for a batch
 * of n lookups. Each is a branchless binary search of the context's group
 * (sorted by word); the searches advance in lockstep so that their cache misses
 * overlap instead of queueing one behind the other. The same group of cont_words
 * is what the row of that position lists next, so it is fetched early too. */
static void children(const u32 *words, const u32 *offsets, const u32 *cont_words,
                     const u32 *ctx, const u32 *w, u32 *found, int n)
{
    const u32 *base[BATCH];
    u32 len[BATCH];
    for (int b = 0; b < n; b++) {
        u32 lo = ctx[b] == NONE ? 0 : offsets[ctx[b]];
        len[b] = ctx[b] == NONE ? 0 : offsets[ctx[b] + 1] - lo;
        base[b] = words + lo;
        __builtin_prefetch(cont_words + lo);
    }
    for (int busy = 1; busy;) {
        busy = 0;
        for (int b = 0; b < n; b++) {
            if (len[b] <= 1) continue;
            u32 half = len[b] / 2;
            base[b] = base[b][half] <= w[b] ? base[b] + half : base[b];
            len[b] -= half;
            busy = 1;
        }
    }
    for (int b = 0; b < n; b++)
        found[b] = len[b] == 1 && *base[b] == w[b] ? (u32)(base[b] - words) : NONE;
}

/* Rows start..stop-1 of the ranks of stream[]: for each position, the k words
 * the backoff lists given the words before it (FORMATS.md, "ranks file").
 * ids_out is u16 or u32 (id_bytes), rows relative to start; scores_out may be
 * NULL. The backoff stops at order min_order (1 = down to the unigrams), so a
 * row may end in padding when it is above 1. seen is scratch with vocab_size
 * entries. The tables are arrays indexed
 * by order (entry 0 unused); unigram_id[w] is the order-1 id of word w (NONE if
 * unseen), because order 1 has one group, the whole vocabulary, too big to search
 * for every token.
 *
 * Positions go in batches. For each order m, ending[m][1 + b] is the id of the
 * m-gram ending at position p = batch start + b (NONE if unseen), and column 0
 * holds the position before the batch. The m-gram ending at p is the child of
 * the (m-1)-gram ending at p-1, so a batch needs only the previous column; the
 * context of length j of position p is ending[j][b], the j-gram ending at p-1.
 * A block that starts mid-stream first replays the order-1 positions before it. */
void rank_rows(const u32 **words, const u32 **counts, const u32 **offsets,
               const u32 **cont_words, const u32 **cont_counts, const u32 *unigram_id,
               int order, u32 vocab_size, const u32 *stream, i64 start, i64 stop,
               int k, int gt_first, int min_order, u32 pad_id, int id_bytes,
               void *ids_out, uint8_t *orders_out, u32 *scores_out, u32 *seen)
{
    u32 ending[MAX_ORDER + 1][BATCH + 1];
    for (int m = 1; m <= order; m++) ending[m][0] = NONE;
    memset(seen, 0, (size_t)vocab_size * sizeof(u32));
    i64 first = start - (order - 1) < 0 ? 0 : start - (order - 1);

    for (i64 batch = first; batch < stop; batch += BATCH) {
        int n = stop - batch < BATCH ? (int)(stop - batch) : BATCH;
        const u32 *w = stream + batch;
        for (int b = 0; b < n; b++)
            ending[1][1 + b] = w[b] < vocab_size ? unigram_id[w[b]] : NONE;
        for (int m = 2; m <= order; m++)
            children(words[m], offsets[m], cont_words[m], ending[m - 1], w, ending[m] + 1, n);

        for (int b = 0; b < n; b++) {
            i64 i = batch + b;
            if (i < start) continue;
            u32 stamp = (u32)(i - start + 1), gt = w[b];
            i64 row = (i - start) * k;
            int filled = 0;
#define EMIT(word, m, count)                                                       \
            do {                                                                   \
                if (id_bytes == 2) ((uint16_t *)ids_out)[row + filled] = (uint16_t)(word); \
                else ((u32 *)ids_out)[row + filled] = (word);                      \
                orders_out[row + filled] = (uint8_t)(m);                           \
                if (scores_out) scores_out[row + filled] = (count);                \
                filled++;                                                          \
            } while (0)
            if (gt_first) {
                /* The ground truth leads the row, with the order of the deepest
                 * n-gram that has it (1 and count 0 if the teacher never saw it). */
                int deepest = 0;
                for (int m = order; m >= 1 && !deepest; m--)
                    if (ending[m][1 + b] != NONE) deepest = m;
                if (deepest) EMIT(gt, deepest, counts[deepest][ending[deepest][1 + b]]);
                else EMIT(gt, 1, 0);
                if (gt < vocab_size) seen[gt] = stamp;
            }
            for (int m = order; m >= min_order && filled < k; m--) {
                u32 c = m == 1 ? 0 : ending[m - 1][b];
                if (c == NONE) continue;
                const u32 *cw = cont_words[m], *cc = cont_counts[m];
                for (u32 j = offsets[m][c], end = offsets[m][c + 1]; j < end && filled < k; j++) {
                    u32 word = cw[j];
                    if (seen[word] == stamp) continue;
                    seen[word] = stamp;
                    EMIT(word, m, cc[j]);
                }
            }
#undef EMIT
            for (int f = filled; f < k; f++) {
                if (id_bytes == 2) ((uint16_t *)ids_out)[row + f] = (uint16_t)pad_id;
                else ((u32 *)ids_out)[row + f] = pad_id;
                orders_out[row + f] = 0;
                if (scores_out) scores_out[row + f] = 0;
            }
        }
        for (int m = 1; m <= order; m++) ending[m][0] = ending[m][n];
    }
}

/* ---- the unbounded-order teacher (FORMATS.md, "How the infini teacher ranks") ----
 *
 * tokens[0..n) is the stream; positions j < n_counted hold the words that count.
 * sa[] is the suffix array of the stream reversed, and lcp[x] the longest common
 * prefix of the suffixes sa[x] and sa[x+1]: the suffix at p reads the context of
 * position i = n - p backwards, so the positions whose contexts match position i's
 * in at least L tokens form one interval of sa[] around i's (a node of match length
 * L). Walking sa[] in order with a stack of the nodes that contain the current
 * suffix, each node's word counts are made once, when it opens, and serve every
 * position under it. Rows are written for positions first..stop-1 (row i - first);
 * with exclude_self, a position's own occurrence (it is in every node it is under)
 * is taken out of its rows. The level of match length 0 is the unigram list
 * (uni_sorted: the words by count desc then id, uni_count[w]). */

typedef struct { u32 word, count; } word_count;

typedef struct {
    i64 hi;        /* last suffix-array index of the node */
    u32 length;    /* its match length */
    i64 at, size;  /* its words in the pool: by word at [at, at+size), by count after */
} infini_node;

static int by_word(const void *a, const void *b)
{
    u32 x = *(const u32 *)a, y = *(const u32 *)b;
    return (x > y) - (x < y);
}

static int by_count_desc(const void *a, const void *b)
{
    const word_count *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return (x->word > y->word) - (x->word < y->word);
}

typedef struct {
    const u32 *tokens;
    const u32 *sa;
    i64 n, n_counted;
    u32 *count, *touched;  /* count[w] zero between uses */
    word_count *pool;
    i64 pool_used, pool_size;
    infini_node *stack;
    i64 depth, stack_size;
} infini_state;

static int grow(void **array, i64 *size, i64 needed, size_t item)
{
    if (needed <= *size) return 0;
    i64 size2 = *size ? *size : 1024;
    while (size2 < needed) size2 *= 2;
    void *bigger = realloc(*array, (size_t)size2 * item);
    if (!bigger) return -1;
    *array = bigger;
    *size = size2;
    return 0;
}

/* Push the node sa[lo..hi] of match length `length`: count its words. */
static int push_node(infini_state *s, i64 lo, i64 hi, u32 length)
{
    i64 m = 0;
    for (i64 y = lo; y <= hi; y++) {
        i64 j = s->n - (i64)s->sa[y];
        if (j >= s->n_counted) continue;
        u32 w = s->tokens[j];
        if (s->count[w]++ == 0) s->touched[m++] = w;
    }
    if (grow((void **)&s->pool, &s->pool_size, s->pool_used + 2 * m, sizeof(word_count)) ||
        grow((void **)&s->stack, &s->stack_size, s->depth + 1, sizeof(infini_node)))
        return -1;
    qsort(s->touched, (size_t)m, sizeof(u32), by_word);
    word_count *words = s->pool + s->pool_used;
    for (i64 e = 0; e < m; e++) {
        u32 w = s->touched[e];
        words[e].word = w;
        words[e].count = s->count[w];
        s->count[w] = 0;
    }
    memcpy(words + m, words, (size_t)m * sizeof(word_count));
    qsort(words + m, (size_t)m, sizeof(word_count), by_count_desc);
    s->stack[s->depth++] = (infini_node){hi, length, s->pool_used, m};
    s->pool_used += 2 * m;
    return 0;
}

static u32 node_count(const word_count *by_word_list, i64 size, u32 w)
{
    i64 lo = 0, hi = size;
    while (lo < hi) {
        i64 mid = (lo + hi) / 2;
        if (by_word_list[mid].word < w) lo = mid + 1;
        else hi = mid;
    }
    return lo < size && by_word_list[lo].word == w ? by_word_list[lo].count : 0;
}

typedef struct {
    int k, id_bytes, exclude_self;
    u32 pad_id;
    void *ids;
    uint8_t *orders;
    u32 *scores;
    u32 *seen;   /* seen[w] == stamp: w is already in the row */
} infini_rows;

static void put(const infini_rows *r, i64 row, int *filled, u32 word, u32 order, u32 count)
{
    i64 at = row * r->k + *filled;
    if (r->id_bytes == 2) ((uint16_t *)r->ids)[at] = (uint16_t)word;
    else ((u32 *)r->ids)[at] = word;
    r->orders[at] = (uint8_t)(order > 255 ? 255 : order);
    if (r->scores) r->scores[at] = count;
    (*filled)++;
}

/* One level's words, by count: the truth, whose own occurrence is taken out
 * (truth_count is its count without it), goes where that count puts it. */
static void put_level(const infini_rows *r, i64 row, int *filled, u32 stamp, const word_count *list, i64 size,
                      u32 order, u32 truth, int adjust, u32 truth_count)
{
    int pending = adjust && truth_count > 0 && r->seen[truth] != stamp;
    for (i64 e = 0; e < size && *filled < r->k; e++) {
        u32 w = list[e].word, c = list[e].count;
        if (adjust && w == truth) continue;
        if (pending && (truth_count > c || (truth_count == c && truth < w))) {
            r->seen[truth] = stamp;
            put(r, row, filled, truth, order, truth_count);
            pending = 0;
            if (*filled == r->k) return;
        }
        if (r->seen[w] == stamp) continue;
        r->seen[w] = stamp;
        put(r, row, filled, w, order, c);
    }
    if (pending && *filled < r->k) {
        r->seen[truth] = stamp;
        put(r, row, filled, truth, order, truth_count);
    }
}

/* A count without the position's own occurrence, when that is in it. */
static u32 elsewhere(u32 count, int adjust) { return adjust && count ? count - 1 : count; }

/* The row of position i, under the nodes s->stack[0..depth). */
static void infini_row(const infini_state *s, const infini_rows *r, i64 i, i64 row, int gt_first, int min_order,
                       const word_count *uni_sorted, i64 n_uni, const u32 *uni_count)
{
    u32 truth = s->tokens[i], stamp = (u32)(row + 1);
    int adjust = r->exclude_self, filled = 0;
    if (gt_first) {
        /* the truth first, with the deepest level where it occurs elsewhere */
        u32 order = 1, count = 0;
        for (i64 d = s->depth - 1; d >= 0 && !count; d--) {
            const infini_node *node = &s->stack[d];
            u32 c = elsewhere(node_count(s->pool + node->at, node->size, truth), adjust);
            if (c > 0) order = node->length + 1, count = c;
        }
        if (!count) count = elsewhere(uni_count[truth], adjust);
        r->seen[truth] = stamp;
        put(r, row, &filled, truth, order, count);
    }
    for (i64 d = s->depth - 1; d >= 0 && filled < r->k; d--) {
        const infini_node *node = &s->stack[d];
        if ((i64)node->length + 1 < min_order) break;
        const word_count *words = s->pool + node->at;
        put_level(r, row, &filled, stamp, words + node->size, node->size, node->length + 1, truth, adjust,
                  elsewhere(node_count(words, node->size, truth), adjust));
    }
    if (min_order <= 1 && filled < r->k)
        put_level(r, row, &filled, stamp, uni_sorted, n_uni, 1, truth, adjust,
                  elsewhere(uni_count[truth], adjust));
    for (i64 at = row * r->k + filled, end = (row + 1) * r->k; at < end; at++) {
        if (r->id_bytes == 2) ((uint16_t *)r->ids)[at] = (uint16_t)r->pad_id;
        else ((u32 *)r->ids)[at] = r->pad_id;
        r->orders[at] = 0;
        if (r->scores) r->scores[at] = 0;
    }
}

/* Returns 0, or -1 when memory ran out. progress[0] counts the suffixes walked. */
int infini_rank(const u32 *tokens, i64 n, i64 n_counted, const u32 *sa, const int32_t *lcp, i64 first, i64 stop,
                int exclude_self, const word_count *uni_sorted, i64 n_uni, const u32 *uni_count, int k,
                int gt_first, int min_order, u32 pad_id, int id_bytes, void *ids_out, uint8_t *orders_out,
                u32 *scores_out, u32 *count, u32 *touched, u32 *seen, volatile i64 *progress)
{
    infini_state s = {tokens, sa, n, n_counted, count, touched, NULL, 0, 0, NULL, 0, 0};
    infini_rows r = {k, id_bytes, exclude_self, pad_id, ids_out, orders_out, scores_out, seen};
    i64 *opened = NULL, opened_size = 0;  /* (hi, length) of the nodes that open at x */
    int failed = 0;
    if (first == 0 && stop > 0)  /* position 0: an empty context, under no node */
        infini_row(&s, &r, 0, 0, gt_first, min_order, uni_sorted, n_uni, uni_count);
    for (i64 x = 0; x < n && !failed; x++) {
        while (s.depth > 0 && s.stack[s.depth - 1].hi < x) s.pool_used = s.stack[--s.depth].at;
        /* the nodes that start at x: match lengths above the one shared with x - 1 */
        i64 before = x > 0 ? lcp[x - 1] : 0, length = x + 1 < n ? lcp[x] : 0, y = x, m = 0;
        while (length > before) {
            while (y + 1 < n && lcp[y] >= length) y++;
            if (grow((void **)&opened, &opened_size, 2 * (m + 1), sizeof(i64))) { failed = 1; break; }
            opened[2 * m] = y, opened[2 * m + 1] = length, m++;
            length = y + 1 < n ? lcp[y] : 0;
        }
        for (i64 e = m - 1; e >= 0 && !failed; e--)  /* the widest first: the stack is nested */
            failed = push_node(&s, x, opened[2 * e], (u32)opened[2 * e + 1]);
        i64 i = n - (i64)sa[x];
        if (!failed && i >= first && i < stop)
            infini_row(&s, &r, i, i - first, gt_first, min_order, uni_sorted, n_uni, uni_count);
        if ((x & 0xFFFF) == 0) *progress = x;
    }
    *progress = n;
    free(s.pool);
    free(s.stack);
    free(opened);
    return failed ? -1 : 0;
}

/* ---- ARPA text ------------------------------------------------------------ */

#define ARPA_DECIMALS 7 /* below float32's resolution for |x| >= 1 */
#define ARPA_LIMIT 1e11 /* |value| below this is written in fixed point */

/* value rounded to ARPA_DECIMALS places (half to even, as numpy's rint), trailing
 * zeros and a bare point dropped, "-" only if a nonzero digit follows; -inf as
 * Python writes it. Returns the end of the text. */
static char *put_value(char *p, float value)
{
    if (isinf(value)) {
        memcpy(p, "-inf", 4);
        return p + 4;
    }
    i64 scaled = llrint((double)value * 1e7);
    if (scaled < 0) {
        *p++ = '-';
        scaled = -scaled;
    }
    i64 whole = scaled / 10000000, fraction = scaled % 10000000;
    char digits[24];
    int n = 0;
    do digits[n++] = (char)('0' + whole % 10); while ((whole /= 10));
    while (n) *p++ = digits[--n];
    if (fraction) {
        *p++ = '.';
        for (int i = ARPA_DECIMALS - 1; i >= 0; i--, fraction /= 10) p[i] = (char)('0' + fraction % 10);
        int shown = ARPA_DECIMALS;
        while (p[shown - 1] == '0') shown--;
        p += shown;
    }
    return p;
}

/* The lines of n m-grams of an ARPA file ("prob<TAB>w1 .. wm[<TAB>backoff]\n"),
 * written to out: ngrams[i * m + j] indexes words_at/word_length (bytes of the
 * word buffer), backoff is NULL on the highest order. Returns the bytes written,
 * or -1 if a value is NaN, +inf or beyond ARPA_LIMIT (before writing anything
 * for that line). out must hold n * 43 bytes (two values of at most 20
 * characters, the tab before the backoff, the line end, a byte to spare) plus
 * the words' lengths and a separator before each word. */
i64 arpa_lines(const char *word_buffer, const i64 *words_at, const i64 *word_length, const int32_t *ngrams, i64 n,
               int m, const float *prob, const float *backoff, char *out)
{
    char *p = out;
    for (i64 i = 0; i < n; i++) {
        float values[2] = {prob[i], backoff ? backoff[i] : 0.0f};
        for (int v = 0; v < 2; v++)
            if (isnan(values[v]) || (isinf(values[v]) && values[v] > 0) || (!isinf(values[v]) && fabsf(values[v]) >= ARPA_LIMIT))
                return -1;
        p = put_value(p, prob[i]);
        for (int j = 0; j < m; j++) {
            int32_t w = ngrams[i * m + j];
            *p++ = j ? ' ' : '\t';
            memcpy(p, word_buffer + words_at[w], (size_t)word_length[w]);
            p += word_length[w];
        }
        if (backoff) {
            *p++ = '\t';
            p = put_value(p, backoff[i]);
        }
        *p++ = '\n';
    }
    return p - out;
}

/* Importable as a module only so that Python can find this library's path. */
static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels", "N-gram teacher kernels, called through ctypes.", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
