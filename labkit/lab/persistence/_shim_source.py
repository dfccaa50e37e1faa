"""The power-cut shim's C source (compiled at run time by ``PowerCutShim.build``)."""

__all__ = ["SHIM_SOURCE"]

#: The C source of the shim, compiled by :meth:`PowerCutShim.build`.
SHIM_SOURCE = r"""/* labkit power-cut shim (LD_PRELOAD): what did each fsync save? */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One line per event, appended to powercut.log in the working directory
   (the server's data dir): "<call> <dev> <inode> <bytes> <path>". */
static void record(const char *call, const struct stat *st, const char *path) {
    char line[1400];
    int len = snprintf(line, sizeof line, "%s %lu %lu %lld %s\n", call,
                       (unsigned long)st->st_dev, (unsigned long)st->st_ino,
                       (long long)st->st_size, path);
    int log = open("powercut.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log < 0) return;
    if (write(log, line, (size_t)len) < 0) { /* best effort */ }
    close(log);
}

/* powercut.delay holds a number of ms each fsync waits before it starts;
   re-read every 5 ms, so lowering it releases fsyncs already waiting. */
static long delay_ms(void) {
    char buf[32];
    int fd = open("powercut.delay", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

static void stall(void) {
    struct timespec start, now, tick = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        long want = delay_ms();
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000
                      + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (want <= 0 || waited >= want) return;
        nanosleep(&tick, NULL);
    }
}

typedef int (*sync_fn)(int);

/* The length is read before the real call: at least that much is on disk
   once it returns. Only successful calls on regular files are recorded. */
static int synced(const char *call, sync_fn real, int fd) {
    struct stat st;
    stall();
    int regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    int rc = real(fd);
    int saved = errno;
    if (rc == 0 && regular) {
        char link[64], path[1024];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        path[n > 0 ? n : 0] = '\0';
        record(call, &st, path);
    }
    errno = saved;
    return rc;
}

int fsync(int fd) {
    static sync_fn real;
    if (!real) real = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    return synced("fsync", real, fd);
}

int fdatasync(int fd) {
    static sync_fn real;
    if (!real) real = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
    return synced("fdatasync", real, fd);
}

/* A deleted file's inode may be reused by a new file: forget its record. */
int unlink(const char *path) {
    static int (*real)(const char *);
    if (!real) real = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    struct stat st;
    int regular = lstat(path, &st) == 0 && S_ISREG(st.st_mode);
    int rc = real(path);
    int saved = errno;
    if (rc == 0 && regular) record("unlink", &st, path);
    errno = saved;
    return rc;
}
"""
