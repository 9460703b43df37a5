/*  planner_bench.c - planner speed and quality, printed as key=value lines.

    Part 1: random tight workflow problems of 12 steps x 5 options (3 agents,
    limits in all four dimensions, a critical-path deadline). Times
    planner_solve (defaults: beam then a bounded branch and bound), the beam
    alone and the exact solver, and compares the plans' quality (product of
    q, i.e. exp of the value) with the optimum where the exact solver proves
    one.

    Part 2: Khan's MMKP instances I01-I06 (directory given as argv[1]): the
    known optimum, what the beam reaches and how fast, and what the exact
    solver reaches within a node cap and whether it proved optimality.

    Usage: planner_bench [MMKP_DIR] [N_INSTANCES]
*/
#include "orchestrator/planner.h"
#include "tests/orchestrator/planner_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Mean wall time of `reps` calls of fn, in microseconds. */
typedef int (*s_solve_fn)(const planner_problem_t *, const planner_opts_t *, planner_result_t *);

static double s_time(s_solve_fn fn, const planner_problem_t *p, const planner_opts_t *o,
                     planner_result_t *res, int reps)
{
    double t0 = s_now_us();
    for (int i = 0; i < reps; i++)
        fn(p, o, res);
    return (s_now_us() - t0) / reps;
}

static void s_random_part(int n_inst)
{
    planner_opts_t dflt, beam_only, exact;
    planner_opts_default(&dflt);
    planner_opts_default(&beam_only);
    beam_only.node_budget = 0;
    planner_opts_default(&exact);

    double t_solve = 0, t_beam = 0, t_exact = 0;
    double frac_sum = 0, frac_worst = 1, sfrac_sum = 0, sfrac_worst = 1;
    int n_cmp = 0, n_feasible = 0, n_missed = 0, n_unproven = 0, n_proven_solve = 0;
    for (int i = 0; i < n_inst; i++) {
        planner_problem_t *p = gen_problem(1000 + (uint64_t)i, 12, 5);
        planner_result_t rs, rb, re;
        t_solve += s_time(planner_solve, p, &dflt, &rs, 5);
        t_beam += s_time(planner_beam, p, &beam_only, &rb, 5);
        t_exact += s_time(planner_exact, p, &exact, &re, 1);
        if (!re.proven) {
            n_unproven++;
        } else if (re.feasible) {
            n_feasible++;
            if (!rb.feasible)
                n_missed++;
            double f = rb.feasible ? exp(rb.value - re.value) : 0;
            double sf = rs.feasible ? exp(rs.value - re.value) : 0;
            frac_sum += f, sfrac_sum += sf;
            if (f < frac_worst)
                frac_worst = f;
            if (sf < sfrac_worst)
                sfrac_worst = sf;
            n_cmp++;
            n_proven_solve += rs.proven;
        }
        planner_problem_destroy(&p);
    }
    printf("planner_instances_12x5=%d\n", n_inst);
    printf("planner_feasible_12x5=%d\n", n_feasible);
    printf("planner_us_12x5=%.1f\n", t_solve / n_inst);
    printf("planner_beam_us_12x5=%.1f\n", t_beam / n_inst);
    printf("planner_exact_us_12x5=%.1f\n", t_exact / n_inst);
    printf("planner_exact_unproven_12x5=%d\n", n_unproven);
    printf("planner_beam_fraction_mean=%.5f\n", n_cmp ? frac_sum / n_cmp : 0);
    printf("planner_beam_fraction_worst=%.5f\n", n_cmp ? frac_worst : 0);
    printf("planner_beam_missed_feasible=%d\n", n_missed);
    printf("planner_solve_fraction_mean=%.5f\n", n_cmp ? sfrac_sum / n_cmp : 0);
    printf("planner_solve_fraction_worst=%.5f\n", n_cmp ? sfrac_worst : 0);
    printf("planner_solve_proven_fraction=%.3f\n", n_cmp ? (double)n_proven_solve / n_cmp : 0);
}

static void s_khan_part(const char *dir)
{
    static const struct {
        const char *name;
        double optimum;
    } inst[] = {{"I01", 173},  {"I02", 364},    {"I03", 1602},
                {"I04", 3597}, {"I05", 3905.7}, {"I06", 4799.3}};
    for (size_t i = 0; i < sizeof inst / sizeof inst[0]; i++) {
        planner_mmkp_t *mk = gen_load_khan(dir, inst[i].name);
        if (!mk) {
            printf("# %s/%s not readable: skipped\n", dir, inst[i].name);
            continue;
        }
        planner_opts_t ob, oe;
        planner_opts_default(&ob);
        ob.solver = PLANNER_BEAM;
        ob.node_budget = 0;
        ob.n_alternatives = 1;
        ob.subgradient_iters = 200;
        planner_opts_default(&oe);
        oe.solver = PLANNER_EXACT;
        oe.n_alternatives = 1;
        oe.subgradient_iters = 300;
        oe.exact_node_cap = 20000000; /* a second or two at most */
        planner_result_t rb, re;
        int reps = 20;
        double t0 = s_now_us();
        for (int r = 0; r < reps; r++)
            planner_mmkp_solve(mk, &ob, &rb);
        double tb = (s_now_us() - t0) / reps;
        t0 = s_now_us();
        planner_mmkp_solve(mk, &oe, &re);
        double te = s_now_us() - t0;
        const char *nm = inst[i].name;
        printf("mmkp_%s_optimum=%.2f\n", nm, inst[i].optimum);
        printf("mmkp_%s_beam=%.2f\n", nm, rb.feasible ? rb.value : 0);
        printf("mmkp_%s_beam_fraction=%.5f\n", nm, rb.feasible ? rb.value / inst[i].optimum : 0);
        printf("mmkp_%s_beam_us=%.1f\n", nm, tb);
        printf("mmkp_%s_exact=%.2f\n", nm, re.feasible ? re.value : 0);
        printf("mmkp_%s_exact_proven=%d\n", nm, re.proven ? 1 : 0);
        printf("mmkp_%s_exact_nodes=%lld\n", nm, (long long)re.nodes);
        printf("mmkp_%s_exact_us=%.0f\n", nm, te);
        planner_mmkp_destroy(&mk);
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data/mmkp-khan";
    int n_inst = argc > 2 ? atoi(argv[2]) : 200;
    if (n_inst < 1)
        n_inst = 200;
    s_random_part(n_inst);
    s_khan_part(dir);
    return 0;
}
