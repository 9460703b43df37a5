/*  kb_search.c - emads-kb-search, the default tool: search a folder of
    markdown notes for the words of a query (the search: kb.h).

      emads-kb-search --dir DIR [--top N]      (query on stdin)

    Reads the query from stdin (at most 4 KiB) and prints the best N
    paragraphs (default 3) as kb.h describes. Exit 0 on success (with or
    without matches), 2 on usage errors or an unreadable folder. The agent
    runs the same search in its own process for a tool whose command is
    emads-kb-search; this program serves other callers and a tool that names
    it by path.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agents/kb.h"

#define KB_MAX_QUERY 4096

int main(int argc, char **argv)
{
    const char *dir;
    int top;
    (void)argc;
    if (kb_parse_args(argv, &dir, &top) != 0) {
        fprintf(stderr, "usage: emads-kb-search --dir DIR [--top N] < query\n");
        return 2;
    }
    char query[KB_MAX_QUERY + 1];
    size_t qn = fread(query, 1, KB_MAX_QUERY, stdin);
    query[qn] = '\0';
    if (kb_search(dir, top, query, stdout, 0) != KB_OK) {
        fprintf(stderr, "emads-kb-search: cannot read %s: %s\n", dir, strerror(errno));
        return 2;
    }
    return 0;
}
