/* One owner per piece of state (docs/state.md, "One owner"): an exclusive
 * flock(2) on an open file, held until the file description is closed, so
 * that a second inkflow on the same snapshot or the same output file is
 * refused at start instead of interleaving with the first. flock, not
 * fcntl: a POSIX record lock would be dropped by any close of the same file
 * in the process, and two nodes of one process writing the same file would
 * not conflict. The holder's pid is read from /proc/locks. */
#ifndef INK_LOCK_H
#define INK_LOCK_H

#include "err.h"

/* Take an exclusive lock on fd (an open regular file at path) without
 * waiting. 0, or INK_EBUSY with a message naming the path, the holder's pid
 * when the kernel tells it, and `what` (e.g. "the snapshot directory"). */
int ink_lock_fd(int fd, const char *path, const char *what, struct ink_err *err);

/* Open (creating it, never truncating before the lock is held) and lock
 * the lock file at path, then write our pid into it for humans. *fd is
 * the held descriptor (close it to release), -1 on failure. 0, INK_EBUSY or
 * INK_EIO (errno kept, e.g. ENOENT when the directory is missing). */
int ink_lock_file(const char *path, const char *what, int *fd, struct ink_err *err);

#endif
