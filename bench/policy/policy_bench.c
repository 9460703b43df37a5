/*  policy_bench.c - how close policy learning brings the planner to the
    oracle, in simulation.

    For each seed: generate an environment (policy_sim) whose priors are
    wrong on purpose, keep it only if the untrained planner scores below
    80 % of the oracle (the environments the target speaks of; the number
    skipped is printed), train a policy at the prior for N groups of K plans,
    and measure the true reward of the planner's chosen plan before and after
    training as a fraction of the oracle's. Prints key=value lines, means over
    the kept seeds:

      policy_oracle_fraction_before=  exp(R(planner, prior) - R(oracle))
      policy_oracle_fraction_after=   exp(R(planner, trained) - R(oracle))
      policy_normalised_before/after= the same, scaled so the worst feasible
                                      plan is 0 and the oracle 1
      policy_oracle_hits_after=       share of environments where the trained
                                      planner picks a plan as good as the oracle

    Usage: policy_bench [--seeds N] [--groups G] [--k K] [--lr X] [--kl X]
                        [--curve]    (also prints the mean reward curve)
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orchestrator/policy.h"
#include "orchestrator/policy_sim.h"

static int s_usage(void)
{
    fprintf(stderr, "usage: policy_bench [--seeds N] [--groups G] [--k K] [--lr X] [--kl X] "
                    "[--noise X] [--curve]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int seeds = 20;
    bool show_curve = false;
    policy_sim_opts_t env;
    policy_sim_opts_default(&env);
    policy_sim_train_opts_t train;
    policy_sim_train_opts_default(&train);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--curve") == 0) {
            show_curve = true;
            continue;
        }
        if (!v)
            return s_usage();
        char *end = NULL;
        if (strcmp(a, "--seeds") == 0)
            seeds = (int)strtol(v, &end, 10);
        else if (strcmp(a, "--groups") == 0)
            train.groups = (int)strtol(v, &end, 10);
        else if (strcmp(a, "--k") == 0)
            train.k = (int)strtol(v, &end, 10);
        else if (strcmp(a, "--lr") == 0)
            train.update.lr = strtod(v, &end);
        else if (strcmp(a, "--kl") == 0)
            train.update.kl_coef = strtod(v, &end);
        else if (strcmp(a, "--noise") == 0)
            env.noise = strtod(v, &end);
        else
            return s_usage();
        if (!end || *end != '\0')
            return s_usage();
        i++;
    }
    if (seeds < 1 || train.groups < 0 || train.k < 2 || train.k > POLICY_MAX_GROUP)
        return s_usage();

    double *curve = calloc((size_t)train.groups + 1, sizeof(double));
    double *curve_sum = calloc((size_t)train.groups + 1, sizeof(double));
    if (!curve || !curve_sum) {
        fprintf(stderr, "policy_bench: out of memory\n");
        return 1;
    }
    double before = 0, after = 0, nbefore = 0, nafter = 0, hits = 0, seconds = 0;
    double worst_after = 1.0;
    int kept = 0, skipped = 0, failed = 0;
    for (uint64_t seed = 1; kept < seeds && seed <= (uint64_t)seeds * 20; seed++) {
        char err[256] = "";
        policy_sim_t *sim = policy_sim_new(seed, &env, err, sizeof err);
        if (!sim) {
            fprintf(stderr, "policy_bench: seed %llu: %s\n", (unsigned long long)seed, err);
            failed++;
            continue;
        }
        int plan[POLICY_SIM_MAX_STEPS];
        if (policy_sim_planner_plan(sim, NULL, plan) != 0) {
            failed++;
            policy_sim_destroy(&sim);
            continue;
        }
        double fb = policy_sim_fraction(sim, plan);
        if (!(fb < 0.8)) {
            skipped++;
            policy_sim_destroy(&sim);
            continue;
        }
        double nb = policy_sim_normalised(sim, plan);
        policy_t *pol = policy_sim_prior_policy(sim);
        policy_rng_t rng;
        policy_rng_seed(&rng, seed * 7919 + 1);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int up = policy_sim_train(sim, pol, &train, &rng, curve, NULL, NULL, err, sizeof err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (up < 0 || policy_sim_planner_plan(sim, pol, plan) != 0) {
            fprintf(stderr, "policy_bench: seed %llu: training failed: %s\n",
                    (unsigned long long)seed, err);
            failed++;
            policy_destroy(&pol);
            policy_sim_destroy(&sim);
            continue;
        }
        seconds += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        double fa = policy_sim_fraction(sim, plan);
        double na = policy_sim_normalised(sim, plan);
        before += fb;
        after += fa;
        nbefore += nb;
        nafter += na;
        if (fa > 1.0 - 1e-9)
            hits++;
        if (fa < worst_after)
            worst_after = fa;
        double oracle_r;
        policy_sim_oracle(sim, NULL, &oracle_r);
        for (int g = 0; g < train.groups; g++)
            curve_sum[g] += curve[g] - oracle_r;
        kept++;
        policy_destroy(&pol);
        policy_sim_destroy(&sim);
    }
    if (kept == 0) {
        fprintf(stderr, "policy_bench: no environment below 80%% of the oracle\n");
        free(curve);
        free(curve_sum);
        return 1;
    }
    printf("policy_seeds=%d\n", kept);
    printf("policy_envs_skipped=%d\n", skipped);
    printf("policy_envs_failed=%d\n", failed);
    printf("policy_groups=%d\n", train.groups);
    printf("policy_K=%d\n", train.k);
    printf("policy_lr=%g\n", train.update.lr);
    printf("policy_kl_coef=%g\n", train.update.kl_coef);
    printf("policy_judge_noise=%g\n", env.noise);
    printf("policy_oracle_fraction_before=%.4f\n", before / kept);
    printf("policy_oracle_fraction_after=%.4f\n", after / kept);
    printf("policy_oracle_fraction_after_min=%.4f\n", worst_after);
    printf("policy_normalised_before=%.4f\n", nbefore / kept);
    printf("policy_normalised_after=%.4f\n", nafter / kept);
    printf("policy_oracle_hits_after=%.4f\n", hits / kept);
    printf("policy_train_ms_per_env=%.3f\n", 1000.0 * seconds / kept);
    /* Reward curve: mean over seeds of (group mean reward - oracle reward),
       at ten points (0 = the oracle's expected reward). */
    if (train.groups > 0) {
        printf("policy_reward_gap_curve=");
        int points = train.groups < 10 ? train.groups : 10;
        for (int i = 0; i < points; i++) {
            int lo = i * train.groups / points, hi = (i + 1) * train.groups / points;
            double s = 0;
            for (int g = lo; g < hi; g++)
                s += curve_sum[g];
            printf("%s%.3f", i ? "," : "", s / kept / (hi - lo));
        }
        printf("\n");
    }
    if (show_curve)
        for (int g = 0; g < train.groups; g++)
            printf("policy_curve_group_%d=%.4f\n", g, curve_sum[g] / kept);
    free(curve);
    free(curve_sum);
    return 0;
}
