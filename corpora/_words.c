/* Word scanning for corpora/text.py, called through ctypes.
 *
 * A scan turns blocks of UTF-8 text (already checked by Python: valid, no NUL)
 * into provisional word ids, handed out in order of first use; id 0 is <eos>,
 * which also stands for every line end. Words are what Python's str.split()
 * returns (every character for which str.isspace() holds separates words) and
 * lines end at "\n", "\r\n" or a lone "\r", as in Python's text mode.
 *
 * The words are kept once each in an arena, each followed by a NUL (text never
 * holds one), so Python decodes the arena in one call and splits it; a hash
 * table (open addressing, power-of-two size, at most half full) maps a word to
 * its id. Allocation failures are reported, never fatal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* only so that setuptools builds an importable module */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef int64_t i64;
typedef uint64_t u64;

/* A slot of the hash table: a word's first 8 bytes (zero-padded: text never
 * holds NUL, so for a word shorter than 8 bytes they are the word), its hash,
 * and its id + 1 (0: the slot is empty). Most lookups touch nothing else. */
typedef struct {
    u64 head;
    u32 hash, id1;
} slot;

typedef struct {
    slot *slots;
    u32 *hashes;  /* the word's hash, by id (to rehash) */
    u64 mask;
    char *arena;  /* every word followed by NUL, in id order */
    i64 arena_len, arena_cap;
    i64 *starts;  /* starts[id]: the word's offset in the arena; starts[n_types] = arena_len */
    i64 *counts;  /* occurrences of each id */
    i64 n_types, cap_types;
} word_scan;

enum { WORD = 0, SPACE = 1, NEWLINE = 2, RETURN = 3 };
static u8 ascii_class[256];

static void init_classes(void)
{
    const char *spaces = " \t\x0b\x0c\x1c\x1d\x1e\x1f";
    for (const char *c = spaces; *c; c++) ascii_class[(u8)*c] = SPACE;
    ascii_class['\n'] = NEWLINE;
    ascii_class['\r'] = RETURN;
}

/* Length of the whitespace character at p (0 if none) among the multi-byte ones
 * str.isspace() accepts: U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000. The text is valid UTF-8, so a lead byte is followed
 * by its continuation bytes; `left` bounds the reads anyway. */
static int unicode_space(const u8 *p, i64 left)
{
    if (p[0] == 0xC2) return left >= 2 && (p[1] == 0x85 || p[1] == 0xA0) ? 2 : 0;
    if (left < 3) return 0;
    if (p[0] == 0xE1) return p[1] == 0x9A && p[2] == 0x80 ? 3 : 0;
    if (p[0] == 0xE2) {
        if (p[1] == 0x80) return (p[2] <= 0x8A || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF) && p[2] >= 0x80 ? 3 : 0;
        return p[1] == 0x81 && p[2] == 0x9F ? 3 : 0;
    }
    if (p[0] == 0xE3) return p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;
    return 0;
}

/* FNV-1a, a byte at a time: computed while the word's end is looked for. */
#define HASH_START 2166136261u
#define HASH_STEP(h, c) (((h) ^ (c)) * 16777619u)

static u64 head_of(const u8 *p, i64 n)
{
    u64 head = 0;
    for (i64 k = 0; k < n && k < 8; k++) head |= (u64)p[k] << (8 * k);
    return head;
}

static int same_bytes(const char *a, const u8 *b, i64 n)
{
    for (i64 i = 0; i < n; i++)
        if ((u8)a[i] != b[i]) return 0;
    return 1;
}

/* Room for `needed` bytes of arena. */
static int grow_arena(word_scan *s, i64 needed)
{
    if (needed <= s->arena_cap) return 0;
    i64 size = s->arena_cap ? s->arena_cap * 2 : 1 << 16;
    while (size < needed) size *= 2;
    char *arena = realloc(s->arena, (size_t)size);
    if (!arena) return -1;
    s->arena = arena;
    s->arena_cap = size;
    return 0;
}

/* Room for `needed` ids in hashes, starts (one more) and counts (new ones zero). */
static int grow_types(word_scan *s, i64 needed)
{
    if (needed + 1 <= s->cap_types) return 0;
    i64 size = s->cap_types ? s->cap_types * 2 : 1024;
    while (size < needed + 1) size *= 2;
    u32 *hashes = realloc(s->hashes, (size_t)size * sizeof(u32));
    if (!hashes) return -1;
    s->hashes = hashes;
    i64 *starts = realloc(s->starts, (size_t)size * sizeof(i64));
    if (!starts) return -1;
    if (!s->cap_types) starts[0] = 0;
    s->starts = starts;
    i64 *counts = realloc(s->counts, (size_t)size * sizeof(i64));
    if (!counts) return -1;
    memset(counts + s->cap_types, 0, (size_t)(size - s->cap_types) * sizeof(i64));
    s->counts = counts;
    s->cap_types = size;
    return 0;
}

static int rehash(word_scan *s, u64 n_slots)
{
    slot *slots = calloc(n_slots, sizeof(slot));
    if (!slots) return -1;
    for (i64 id = 0; id < s->n_types; id++) {
        u64 j = s->hashes[id] & (n_slots - 1);
        while (slots[j].id1) j = (j + 1) & (n_slots - 1);
        i64 start = s->starts[id], length = s->starts[id + 1] - start - 1;
        slots[j] = (slot){head_of((const u8 *)s->arena + start, length), s->hashes[id], (u32)(id + 1)};
    }
    free(s->slots);
    s->slots = slots;
    s->mask = n_slots - 1;
    return 0;
}

/* The id of the word p[0..n) whose hash is h and first bytes head, added if
 * new; -1 if memory ran out. */
static i64 word_id(word_scan *s, const u8 *p, i64 n, u32 h, u64 head)
{
    u64 j = h & s->mask;
    for (; s->slots[j].id1; j = (j + 1) & s->mask) {
        const slot *e = &s->slots[j];
        if (e->hash != h || e->head != head) continue;
        i64 id = (i64)e->id1 - 1;
        if (n < 8 || (s->starts[id + 1] - s->starts[id] - 1 == n && same_bytes(s->arena + s->starts[id], p, n)))
            return id;
    }
    i64 id = s->n_types;
    if (id >= (i64)UINT32_MAX - 1 || grow_types(s, id + 1) || grow_arena(s, s->arena_len + n + 1)) return -1;
    memcpy(s->arena + s->arena_len, p, (size_t)n);
    s->arena[s->arena_len + n] = 0;
    s->arena_len += n + 1;
    s->hashes[id] = h;
    s->starts[id + 1] = s->arena_len;
    s->slots[j] = (slot){head, h, (u32)(id + 1)};
    s->n_types++;
    if ((u64)s->n_types * 2 > s->mask + 1 && rehash(s, (s->mask + 1) * 2)) return -1;
    return id;
}

void words_free(word_scan *s)
{
    if (!s) return;
    free(s->slots);
    free(s->hashes);
    free(s->arena);
    free(s->starts);
    free(s->counts);
    free(s);
}

static u32 eos_hash(void)
{
    u32 h = HASH_START;
    for (const char *c = "<eos>"; *c; c++) h = HASH_STEP(h, (u8)*c);
    return h;
}

/* A new scan that knows one word, <eos> (id 0); NULL if memory ran out. */
word_scan *words_new(void)
{
    if (!ascii_class[' ']) init_classes();
    word_scan *s = calloc(1, sizeof(word_scan));
    if (!s || rehash(s, 1 << 16) || grow_types(s, 1) || word_id(s, (const u8 *)"<eos>", 5, eos_hash(), head_of((const u8 *)"<eos>", 5)) != 0) {
        words_free(s);
        return NULL;
    }
    return s;
}

/* A word found but not yet looked up (length -1: a line end). */
typedef struct {
    i64 begin, length;
    u64 head;
    u32 hash;
} found;

#define SCAN_BATCH 32 /* words found ahead, their slots prefetched, then looked up */

/* The next word or line end of text[*at..n) into f (advancing *at); 0 if none. */
static int next_token(const u8 *text, i64 n, i64 *at, found *f)
{
    i64 i = *at;
    while (i < n) {
        u8 c = text[i];
        int space = 0;
        if (c < 0x80) {
            u8 kind = ascii_class[c];
            if (kind == NEWLINE || kind == RETURN) {
                *at = i + ((kind == RETURN && i + 1 < n && text[i + 1] == '\n') ? 2 : 1);
                f->length = -1;
                return 1;
            }
            space = kind == SPACE;
        } else {
            space = unicode_space(text + i, n - i);
        }
        if (space) {
            i += space;
            continue;
        }
        i64 begin = i++;
        u32 h = HASH_STEP(HASH_START, c);
        u64 head = c;
        while (i < n) { /* to the end of the word */
            c = text[i];
            if (c < 0x80 ? ascii_class[c] != WORD : (c == 0xC2 || (c >= 0xE1 && c <= 0xE3)) && unicode_space(text + i, n - i))
                break;
            h = HASH_STEP(h, c);
            if (i - begin < 8) head |= (u64)c << (8 * (i - begin));
            i++;
        }
        *at = i;
        *f = (found){begin, i - begin, head, h};
        return 1;
    }
    *at = n;
    return 0;
}

/* Scan text[0..n): write the id of each word and line end to ids (room for n
 * ids is always enough) and return how many; -1 if memory ran out. A "\r\n" is
 * never split between two blocks by the caller. Words are found a batch ahead of
 * their lookups, so that the random reads of the hash table overlap. */
i64 words_scan(word_scan *s, const u8 *text, i64 n, u32 *ids)
{
    found batch[SCAN_BATCH];
    i64 out = 0, at = 0;
    for (;;) {
        int size = 0;
        while (size < SCAN_BATCH && next_token(text, n, &at, &batch[size])) {
            if (batch[size].length >= 0) __builtin_prefetch(&s->slots[batch[size].hash & s->mask]);
            size++;
        }
        if (!size) break;
        for (int k = 0; k < size; k++) {
            i64 id = batch[k].length < 0 ? 0
                   : word_id(s, text + batch[k].begin, batch[k].length, batch[k].hash, batch[k].head);
            if (id < 0) return -1;
            ids[out++] = (u32)id;
        }
    }
    for (i64 j = 0; j < out; j++) s->counts[ids[j]]++; /* apart: the lookups above run without waiting on it */
    return out;
}

/* Add the words of `from` to `into`, each new one after the others in from's
 * order of first use, with their occurrences: mapping[id in from] = id in into.
 * -1 if memory ran out. */
i64 words_merge(word_scan *into, const word_scan *from, u32 *mapping)
{
    for (i64 id = 0; id < from->n_types; id++) {
        const u8 *word = (const u8 *)from->arena + from->starts[id];
        i64 length = from->starts[id + 1] - from->starts[id] - 1;
        i64 to = word_id(into, word, length, from->hashes[id], head_of(word, length));
        if (to < 0) return -1;
        mapping[id] = (u32)to;
        into->counts[to] += from->counts[id];
    }
    return 0;
}

i64 words_types(const word_scan *s) { return s->n_types; }

/* The arena (every word followed by NUL) and each word's occurrences, either if not NULL. */
void words_export(const word_scan *s, char *arena, i64 *counts)
{
    if (arena) memcpy(arena, s->arena, (size_t)s->arena_len);
    if (counts) memcpy(counts, s->counts, (size_t)s->n_types * sizeof(i64));
}

i64 words_arena_bytes(const word_scan *s) { return s->arena_len; }

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_words", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__words(void) { return PyModule_Create(&module); }
