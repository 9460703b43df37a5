/*  trace.h - an opt-in trace of the spans on a task's critical path.

    With EMADS_TRACE=<file> in a process's environment (emadsctl up passes
    its own environment to every daemon), each traced span is appended to
    <file> as one line

      <start_us> <end_us> <cause> <task> <process> <what>

    times in microseconds of the real-time clock (comparable across the
    processes of one host), cause one of the TRACE_* names below, task the
    task id ("-" when the span does not name one), what a detail ("-"
    when none; the ledger: the request type). Each line is one write() on a descriptor opened
    with O_APPEND, so the lines of several processes do not interleave.
    bench/e2e reads the file to split a task's end-to-end time into causes.
    Without the variable nothing is opened and a span costs one branch.

    Causes (who emits them):
      ledger  a ledger request, from its receipt to its durable reply (ledger)
      store   a task-store transaction's commit, once per task it wrote
              (orchestrator)
      tool    a tool call (agents)
      llm     an LLM call, retries included (agents)
      orch    the orchestrator's own work in a poll iteration (handling what
              arrived, planning, sending), commit excluded, once per task it
              handled (orchestrator)
*/
#ifndef EMADS_TRACE_H_INCLUDED
#define EMADS_TRACE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#define TRACE_LEDGER "ledger"
#define TRACE_STORE  "store"
#define TRACE_TOOL   "tool"
#define TRACE_LLM    "llm"
#define TRACE_ORCH   "orch"

/* True when EMADS_TRACE names a file this process could open. */
bool trace_on(void);

/* Now, in microseconds of the real-time clock (the trace's time base). */
int64_t trace_now_us(void);

/* Append one span (no-op when tracing is off; a failed write is dropped:
   the trace never stops the process). task and what may be NULL. */
void trace_span(const char *cause, const char *task, const char *what, int64_t start_us,
                int64_t end_us);

#endif
