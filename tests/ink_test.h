/* A tiny test harness: named cases, each run in a forked child so a crash or
 * hang is reported as that case's failure, not the whole binary's.
 *
 *   TEST(codec_roundtrip) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-12); }
 *   int main(int argc, char **argv) { return ink_test_main(argc, argv); }
 *
 * `prog NAME...` runs only the named cases; INK_TEST_NOFORK=1 runs in-process
 * (for gdb). */
#ifndef INK_TEST_H
#define INK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*ink_test_fn)(void);
struct ink_test_case {
    const char *name;
    ink_test_fn fn;
};

#define INK_TEST_MAX 512
static struct ink_test_case ink__tests[INK_TEST_MAX];
static int ink__ntests;
static int ink__failures;

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void reg_##name(void)                                      \
    {                                                                                              \
        if (ink__ntests < INK_TEST_MAX)                                                            \
            ink__tests[ink__ntests++] = (struct ink_test_case){#name, test_##name};                \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            ink__failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            ink__failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double ink__a = (a), ink__b = (b);                                                         \
        if (!(fabs(ink__a - ink__b) <= (tol))) {                                                   \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.17g, %s = %.17g, tol %g\n",          \
                    __FILE__, __LINE__, #a, ink__a, #b, ink__b, (double)(tol));                    \
            ink__failures++;                                                                       \
        }                                                                                          \
    } while (0)

/* Stop the current case at the first failed requirement. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            ink__failures++;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static int ink__run_one(const struct ink_test_case *tc, int nofork)
{
    if (nofork) {
        ink__failures = 0;
        tc->fn();
        return ink__failures ? 1 : 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ink__failures = 0;
        tc->fn();
        fflush(NULL);
        _exit(ink__failures ? 1 : 0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) return 1;
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "case %s: killed by signal %d\n", tc->name, WTERMSIG(st));
        return 1;
    }
    return WEXITSTATUS(st) ? 1 : 0;
}

static inline int ink_test_main(int argc, char **argv)
{
    int nofork = getenv("INK_TEST_NOFORK") != NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < ink__ntests; i++) {
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++) want |= strcmp(argv[a], ink__tests[i].name) == 0;
            if (!want) continue;
        }
        int bad = ink__run_one(&ink__tests[i], nofork);
        printf("%s %s\n", bad ? "FAIL" : "ok  ", ink__tests[i].name);
        fflush(stdout);
        if (bad)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
