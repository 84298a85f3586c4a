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
 * Every function works on uint32 ids and counts, and none allocates: Python owns
 * all memory, and releases the GIL around these calls so that threads run them in
 * parallel on disjoint position ranges.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
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
 * (prev == NULL). Positions are bucketed by context, in by-word order, so each
 * bucket comes out sorted by word: one stable counting sort instead of a sort.
 * A position holding the word `start` (a sentence start marker; NONE for none)
 * only ever begins n-grams: no m-gram of order 2 or more ends there, and so none
 * spans it.
 *
 * Writes cur[i] = id of the m-gram ending at i (NONE where none does), the
 * table words/counts (n_m entries) and offsets (n_ctx + 1 entries); returns n_m.
 * hist needs n_ctx + 1 entries, sorted n entries. */
i64 count_order(const u32 *tokens, i64 n, const u32 *by_word, const u32 *prev, u32 n_ctx, u32 start,
                u32 *hist, u32 *sorted, u32 *cur, u32 *words, u32 *counts, u32 *offsets)
{
    memset(hist, 0, (size_t)(n_ctx + 1) * sizeof(u32));
    memset(cur, 0xff, (size_t)n * sizeof(u32));
#define CONTEXT_OF(i) (prev == NULL ? 0u : ((i) == 0 || tokens[i] == start ? NONE : prev[(i) - 1]))
    for (i64 i = 0; i < n; i++) {
        u32 c = CONTEXT_OF(i);
        if (c != NONE) hist[c + 1]++;
    }
    for (u32 c = 0; c < n_ctx; c++) hist[c + 1] += hist[c];
    i64 n_valid = hist[n_ctx];
    for (i64 j = 0; j < n; j++) {
        u32 i = by_word[j];
        u32 c = CONTEXT_OF(i);
        if (c != NONE) sorted[hist[c]++] = i;
    }
    /* hist[c] is now the end of bucket c. */
    i64 id = -1;
    u32 last_c = NONE, last_w = NONE, next_ctx = 0;
    for (i64 j = 0; j < n_valid; j++) {
        u32 i = sorted[j];
        u32 c = CONTEXT_OF(i), w = tokens[i];
        if (c != last_c || w != last_w) {
            id++;
            while (next_ctx <= c) offsets[next_ctx++] = (u32)id;
            words[id] = w;
            counts[id] = 0;
            last_c = c;
            last_w = w;
        }
        counts[id]++;
        cur[i] = (u32)id;
    }
#undef CONTEXT_OF
    while (next_ctx <= n_ctx) offsets[next_ctx++] = (u32)(id + 1);
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

/* Importable as a module only so that Python can find this library's path. */
static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels", "N-gram teacher kernels, called through ctypes.", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
