/*  kb.c - the knowledge-base search (see kb.h).

    Cost: one pass over the folder (readdir's d_type spares a stat per
    entry; other files are skipped by name), each file read once with
    open/read, and one linear scan per query word and paragraph. The
    deadline is checked before each folder and file.
*/
#define _GNU_SOURCE
#include "agents/kb.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KB_MAX_QUERY 4096
#define KB_MAX_TERMS 32
#define KB_MAX_FILES 2000
#define KB_MAX_FILE  (1024 * 1024)
#define KB_MAX_DEPTH 8

typedef struct {
    char *file; /* path relative to dir (owned by the file table) */
    char *text; /* paragraph text (points into the file's buffer) */
    size_t len;
    size_t order;
    int tf[KB_MAX_TERMS];
    double score;
} kb_para_t;

typedef struct {
    char terms[KB_MAX_TERMS][64];
    int n_terms;
    char **files;
    char **bufs;
    size_t n_files;
    kb_para_t *paras;
    size_t n_paras, cap_paras;
    int64_t deadline_us; /* CLOCK_MONOTONIC; 0 = none */
    bool late;           /* the deadline passed: the walk stopped */
} kb_t;

static int64_t s_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* True (and the walk stops) once the deadline has passed. */
static bool s_late(kb_t *kb)
{
    if (!kb->late && kb->deadline_us > 0 && s_mono_us() >= kb->deadline_us)
        kb->late = true;
    return kb->late;
}

static const char *const s_stop[] = {
    "the",   "and",  "for",   "with",  "that",  "this",  "from", "are",   "was",   "were",
    "our",   "you",  "your",  "but",   "not",   "all",   "any",  "can",   "has",   "have",
    "how",   "what", "when",  "where", "which", "who",   "why",  "will",  "would", "should",
    "could", "into", "about", "than",  "then",  "them",  "they", "their", "there", "these",
    "those", "its",  "use",   "using", "need",  "needs", NULL};

static bool s_stopword(const char *w)
{
    for (int i = 0; s_stop[i]; i++)
        if (strcmp(s_stop[i], w) == 0)
            return true;
    return false;
}

static void s_terms(kb_t *kb, const char *q)
{
    const unsigned char *p = (const unsigned char *)q;
    while (*p && kb->n_terms < KB_MAX_TERMS) {
        while (*p && !isalnum(*p))
            p++;
        char w[64];
        size_t n = 0;
        while (*p && isalnum(*p)) {
            if (n < sizeof w - 1)
                w[n++] = (char)tolower(*p);
            p++;
        }
        w[n] = '\0';
        if (n < 3 || s_stopword(w))
            continue;
        bool dup = false;
        for (int i = 0; i < kb->n_terms; i++)
            if (strcmp(kb->terms[i], w) == 0)
                dup = true;
        if (!dup)
            memcpy(kb->terms[kb->n_terms++], w, n + 1);
    }
}

/* Occurrences of term as a word prefix in text (case-folded compare), so
   "migrat" finds "migration" and "payment" finds "payments". */
static int s_count(const char *text, size_t len, const char *term)
{
    size_t tl = strlen(term);
    int count = 0;
    for (size_t i = 0; i + tl <= len; i++) {
        if (i > 0 && isalnum((unsigned char)text[i - 1]))
            continue;
        if (strncasecmp(text + i, term, tl) == 0) {
            count++;
            i += tl - 1;
        }
    }
    return count;
}

static int s_add_para(kb_t *kb, char *file, char *text, size_t len)
{
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0)
        return 0;
    if (kb->n_paras == kb->cap_paras) {
        size_t cap = kb->cap_paras ? kb->cap_paras * 2 : 256;
        kb_para_t *p = realloc(kb->paras, cap * sizeof *p);
        if (!p)
            return -1;
        kb->paras = p;
        kb->cap_paras = cap;
    }
    kb_para_t *para = &kb->paras[kb->n_paras];
    memset(para, 0, sizeof *para);
    para->file = file;
    para->text = text;
    para->len = len;
    para->order = kb->n_paras;
    for (int t = 0; t < kb->n_terms; t++)
        para->tf[t] = s_count(text, len, kb->terms[t]);
    kb->n_paras++;
    return 0;
}

static int s_load_file(kb_t *kb, const char *path, const char *rel)
{
    if (kb->n_files >= KB_MAX_FILES || s_late(kb))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    size_t want = KB_MAX_FILE;
    if (fstat(fd, &st) == 0 && st.st_size >= 0 && (size_t)st.st_size < want)
        want = (size_t)st.st_size;
    char *buf = malloc(want + 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    size_t n = 0;
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    char *name = strdup(rel);
    char **files = realloc(kb->files, (kb->n_files + 1) * sizeof *files);
    char **bufs = files ? realloc(kb->bufs, (kb->n_files + 1) * sizeof *bufs) : NULL;
    if (files)
        kb->files = files;
    if (bufs)
        kb->bufs = bufs;
    if (!name || !files || !bufs) {
        free(name);
        free(buf);
        return -1;
    }
    kb->files[kb->n_files] = name;
    kb->bufs[kb->n_files] = buf;
    kb->n_files++;
    /* paragraphs: split at blank lines */
    char *start = buf;
    for (char *p = buf; *p; p++) {
        if (p[0] == '\n') {
            char *q = p + 1;
            while (*q == ' ' || *q == '\t' || *q == '\r')
                q++;
            if (*q == '\n') {
                if (s_add_para(kb, name, start, (size_t)(p - start)) != 0)
                    return -1;
                start = q + 1;
                p = q;
            }
        }
    }
    return s_add_para(kb, name, start, strlen(start));
}

typedef struct {
    char *name;
    unsigned char type; /* DT_* from readdir; DT_UNKNOWN and links are stat()ed */
} kb_entry_t;

static int s_cmp_entry(const void *a, const void *b)
{
    return strcmp(((const kb_entry_t *)a)->name, ((const kb_entry_t *)b)->name);
}

static int s_walk(kb_t *kb, const char *dir, const char *rel, int depth)
{
    if (depth > KB_MAX_DEPTH || s_late(kb))
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return depth == 0 ? -1 : 0;
    kb_entry_t *names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t l = strlen(e->d_name);
        /* only folders and *.md files matter: skip the rest without a stat */
        if (e->d_type == DT_REG && !(l > 3 && strcmp(e->d_name + l - 3, ".md") == 0))
            continue;
        if (e->d_type != DT_REG && e->d_type != DT_DIR && e->d_type != DT_LNK &&
            e->d_type != DT_UNKNOWN)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 32;
            kb_entry_t *nn = realloc(names, c * sizeof *nn);
            if (!nn)
                break;
            names = nn;
            cap = c;
        }
        names[n].name = strdup(e->d_name);
        names[n].type = e->d_type;
        if (names[n].name)
            n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, s_cmp_entry); /* stable order: deterministic output */
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], sub[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i].name);
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i].name);
        size_t l = strlen(names[i].name);
        bool md = l > 3 && strcmp(names[i].name + l - 3, ".md") == 0;
        bool is_dir = names[i].type == DT_DIR, is_reg = names[i].type == DT_REG;
        struct stat st;
        if (!is_dir && !is_reg && stat(path, &st) == 0) {
            is_dir = S_ISDIR(st.st_mode);
            is_reg = S_ISREG(st.st_mode);
        }
        if (rc == 0) {
            if (is_dir)
                rc = s_walk(kb, path, sub, depth + 1);
            else if (is_reg && md)
                rc = s_load_file(kb, path, sub);
        }
        free(names[i].name);
    }
    free(names);
    return rc;
}

static int s_cmp_score(const void *a, const void *b)
{
    const kb_para_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void s_free(kb_t *kb)
{
    for (size_t i = 0; i < kb->n_files; i++) {
        free(kb->files[i]);
        free(kb->bufs[i]);
    }
    free(kb->files);
    free(kb->bufs);
    free(kb->paras);
}

int kb_parse_args(char *const *argv, const char **dir, int *top)
{
    *dir = NULL;
    *top = 3;
    for (int i = 1; argv[i]; i++) {
        if (argv[i + 1] && strcmp(argv[i], "--dir") == 0)
            *dir = argv[++i];
        else if (argv[i + 1] && strcmp(argv[i], "--top") == 0) {
            char *end;
            errno = 0;
            long t = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || t < 1 || t > 100)
                return -1;
            *top = (int)t;
        } else
            return -1;
    }
    return *dir ? 0 : -1;
}

kb_status_t kb_search(const char *dir, int top, const char *query, FILE *out, int64_t deadline_us)
{
    char q[KB_MAX_QUERY + 1];
    snprintf(q, sizeof q, "%s", query ? query : "");
    kb_t kb;
    memset(&kb, 0, sizeof kb);
    kb.deadline_us = deadline_us;
    s_terms(&kb, q);
    if (kb.n_terms == 0) {
        fprintf(out, "no matches (the query has no searchable words)\n");
        return KB_OK;
    }
    if (s_walk(&kb, dir, "", 0) != 0) {
        int e = errno;
        s_free(&kb);
        errno = e;
        return KB_ERR_DIR;
    }
    if (kb.late) {
        s_free(&kb);
        return KB_ERR_TIMEOUT;
    }
    int df[KB_MAX_TERMS] = {0};
    for (size_t i = 0; i < kb.n_paras; i++)
        for (int t = 0; t < kb.n_terms; t++)
            df[t] += kb.paras[i].tf[t] > 0;
    size_t hits = 0;
    for (size_t i = 0; i < kb.n_paras; i++) {
        double s = 0;
        for (int t = 0; t < kb.n_terms; t++)
            if (kb.paras[i].tf[t] > 0)
                s += (1.0 + log((double)kb.paras[i].tf[t])) *
                     log(1.0 + (double)kb.n_paras / (double)df[t]);
        kb.paras[i].score = s;
        hits += s > 0;
    }
    qsort(kb.paras, kb.n_paras, sizeof *kb.paras, s_cmp_score);
    if (hits == 0)
        fprintf(out, "no matches\n");
    for (size_t i = 0; i < kb.n_paras && i < (size_t)top && kb.paras[i].score > 0; i++)
        fprintf(out, "## %s (score %.2f)\n%.*s\n\n", kb.paras[i].file, kb.paras[i].score,
                (int)kb.paras[i].len, kb.paras[i].text);
    s_free(&kb);
    return KB_OK;
}
