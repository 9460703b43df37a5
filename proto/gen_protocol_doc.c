/*  gen_protocol_doc.c - prints the message field tables of docs/PROTOCOL.md.

    The schema table in proto_schema.c is what every process enforces; this
    program renders it as markdown so the document cannot drift from the
    code. Its output sits between the "generated" markers of PROTOCOL.md,
    and the test proto_doc_current fails when the two differ. Usage:
    gen_protocol_doc > fields.md
*/
#include "proto/proto.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *s_type_name(proto_ftype_t t)
{
    switch (t) {
    case PF_STR:
        return "string";
    case PF_INT:
        return "int";
    case PF_FLOAT:
        return "float";
    case PF_BOOL:
        return "bool";
    case PF_AMOUNTS:
        return "amounts";
    case PF_MAP:
        return "map";
    case PF_ARRAY:
        return "array";
    case PF_ANY:
        return "any";
    }
    return "?";
}

static void s_range(const proto_field_t *f)
{
    if (f->min == INT64_MIN && f->max == INT64_MAX)
        printf("any int64");
    else if (f->max == INT64_MAX)
        printf("≥ %" PRId64, f->min);
    else
        printf("%" PRId64 "..%" PRId64, f->min, f->max);
}

static void s_constraint(const proto_field_t *f)
{
    switch (f->type) {
    case PF_STR:
        if (f->values) {
            printf("one of ");
            for (const char *const *v = f->values; *v; v++)
                printf("%s`%s`", v == f->values ? "" : ", ", *v);
        } else {
            printf("%" PRId64 "..%" PRId64 " bytes", f->min > 0 ? f->min : 0,
                   f->max > 0 ? f->max : (int64_t)PROTO_MAX_ID);
        }
        break;
    case PF_INT:
    case PF_FLOAT:
        s_range(f);
        break;
    case PF_AMOUNTS:
        printf("each dimension int ≥ -1");
        break;
    default:
        printf("—");
        break;
    }
}

int main(void)
{
    const char *groups[] = {"ledger", "orchestrator", "agent", "event", "any", "bus"};
    const char *titles[] = {"Service `ledger`",
                            "Service `orchestrator`",
                            "Agent services (`cto_agent`, `coo_agent`, `reconcile_gpt`)",
                            "Events (body of EVENT frames)",
                            "Any service (and the READY frame)",
                            "Service `bus` (answered by the broker itself)"};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        printf("### %s\n\n", titles[g]);
        for (const proto_schema_t *s = proto_schemas(); s->type; s++) {
            if (strcmp(s->service, groups[g]) != 0)
                continue;
            printf("#### `%s`\n\n%c%s.", s->type, toupper((unsigned char)s->doc[0]), s->doc + 1);
            if (!s->fields[0].name) {
                printf(" No fields besides `v` and `type`.\n\n");
                continue;
            }
            printf("\n\n| field | type | required | constraint | meaning |\n");
            printf("|---|---|---|---|---|\n");
            for (const proto_field_t *f = s->fields; f->name; f++) {
                printf("| `%s` | %s | %s | ", f->name, s_type_name(f->type),
                       f->required ? "yes" : "no");
                s_constraint(f);
                printf(" | ");
                for (const char *c = f->doc; *c; c++) {
                    if (*c == '|')
                        printf("\\|");
                    else
                        putchar(*c);
                }
                printf(" |\n");
            }
            printf("\n");
        }
    }
    return 0;
}
