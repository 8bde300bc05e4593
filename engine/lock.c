/* Exclusive locks on state and output files (lock.h, docs/state.md). */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* The pid /proc/locks gives for an flock on this file, or 0 when unknown.
 * Line: "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF". */
static long holder_pid(int fd)
{
    struct stat st;
    if (fstat(fd, &st)) return 0;
    FILE *f = fopen("/proc/locks", "re");
    if (!f) return 0;
    char line[256];
    long pid = 0;
    while (!pid && fgets(line, sizeof line, f)) {
        char kind[16], mode[16], rw[16];
        long p;
        unsigned maj, min;
        unsigned long long ino;
        char *s = strchr(line, ':');
        if (!s || strstr(line, "->")) continue; /* "->" lines are waiters */
        if (sscanf(s + 1, "%15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &p, &maj, &min, &ino) !=
            7)
            continue;
        if (strcmp(kind, "FLOCK") == 0 && ino == (unsigned long long)st.st_ino &&
            maj == major(st.st_dev) && min == minor(st.st_dev) && p > 0)
            pid = p;
    }
    fclose(f);
    return pid;
}

int ink_lock_fd(int fd, const char *path, const char *what, struct ink_err *err)
{
    while (flock(fd, LOCK_EX | LOCK_NB)) {
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK)
            return ink_err_set(err, INK_EIO, "%s: cannot lock (%s): %s", path, what,
                               strerror(errno));
        long pid = holder_pid(fd);
        if (pid == (long)getpid())
            return ink_err_set(err, INK_EBUSY,
                               "%s is locked by this process already (%s): two nodes name the "
                               "same file",
                               path, what);
        if (pid > 0)
            return ink_err_set(err, INK_EBUSY,
                               "%s is locked by another process, pid %ld (%s): one inkflow at a "
                               "time owns it; stop pid %ld first",
                               path, pid, what, pid);
        return ink_err_set(err, INK_EBUSY,
                           "%s is locked by another process (%s): one inkflow at a time owns it",
                           path, what);
    }
    return 0;
}

int ink_lock_file(const char *path, const char *what, int *fd, struct ink_err *err)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) {
        int e = errno;
        ink_err_set(err, INK_EIO, "%s: %s", path, strerror(e));
        errno = e;
        return INK_EIO;
    }
    int rc = ink_lock_fd(*fd, path, what, err);
    if (rc) {
        close(*fd);
        *fd = -1;
        return rc;
    }
    char pid[32];
    int k = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* for a human who looks; the lock itself is what counts */
    if (ftruncate(*fd, 0) == 0 && pwrite(*fd, pid, (size_t)k, 0) != k) {
        /* a full disk must not stop a start: the lock is held all the same */
    }
    return 0;
}
