/*  kb.h - the knowledge-base search behind the default tool: the markdown
    notes under a folder scored against a query.

    The query is cut at 4 KiB and split into words (case folded, words
    shorter than 3 letters and common stop words dropped); every *.md file
    under the folder (recursively, at most 2000 files of at most 1 MiB each,
    8 folders deep) is split into paragraphs at blank lines and each
    paragraph is scored by TF-IDF: for each query word, (1 + log tf) *
    log(1 + N / df), N paragraphs in all, df paragraphs holding the word (a
    word matches as a word prefix: "migrat" finds "migration"). The report
    lists the best paragraphs, best first:

      ## notes/payments.md (score 2.41)
      <paragraph>

    or "no matches" when nothing matches. Deterministic: ties break by file
    name, then position.

    Two callers print the same report: emads-kb-search (kb_search.c), and
    the agent itself, which runs a tool whose command is emads-kb-search in
    its own process instead of spawning one per call (see tool.h).
*/
#ifndef AGENTS_KB_H_INCLUDED
#define AGENTS_KB_H_INCLUDED

#include <stdint.h>
#include <stdio.h>

typedef enum {
    KB_OK = 0,
    KB_ERR_DIR,    /* the folder cannot be read (errno says why) */
    KB_ERR_TIMEOUT /* the deadline passed before the search was done */
} kb_status_t;

/* The arguments of emads-kb-search, argv[0] being the program and the list
   NULL-terminated: --dir DIR (required) and --top N (1..100, default 3).
   0, or -1 on anything else (a usage error). */
int kb_parse_args(char *const *argv, const char **dir, int *top);

/* Search dir for query and write the report (its top paragraphs) to out.
   deadline_us: CLOCK_MONOTONIC microseconds after which the search stops
   with KB_ERR_TIMEOUT (0 = none); nothing is written then. */
kb_status_t kb_search(const char *dir, int top, const char *query, FILE *out, int64_t deadline_us);

#endif
