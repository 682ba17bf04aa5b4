/* dropsync: an LD_PRELOAD shim that models "a file system that drops unsynced writes" (a power cut).
 *
 * Used by tests/chaos/test_power_cut.py.  For files directly inside the watched directory
 * ($DROPSYNC_DIR) it keeps, in $DROPSYNC_SHADOW, a shadow copy holding only what had been made durable:
 *
 *   <name>          the file's content as of its last fsync/fdatasync;
 *   <name>.pending  the writes and truncates issued since then (also kept in memory, applied to <name> at
 *                   the next sync); a harness may replay a prefix of it to model a torn write-back;
 *   <name>.exists   present iff the directory entry is durable: a file that existed when first opened, or
 *                   one created here once the directory itself was fsync'd (SQLite does so after creating
 *                   a WAL).  An unlink is durable only after the next directory sync, too.
 *
 * $DROPSYNC_KILL_AT_SYNC=N makes the process SIGKILL itself as its N-th sync of a watched file starts.
 *
 * The running process sees the real file as usual; after SIGKILL the harness builds "the disk after the
 * power cut" from the shadows alone.  Interposed (see `nm -D --undefined-only libsqlite3.so.0`): open,
 * open64, openat, openat64, write, pwrite, pwrite64, ftruncate, ftruncate64, fsync, fdatasync, close,
 * unlink.  Writes through mmap are not seen: SQLite only maps the -shm file (mmap_size is 0), which holds
 * no durable data and is rebuilt by the first connection after a crash, so the harness drops it.
 *
 * Simplifications (all pessimistic or irrelevant to a WAL database): only files directly in the watched
 * directory are tracked (no subdirectories); a file unlinked and created again before a directory sync
 * starts afresh; the order of pending writes is the order they were issued (a prefix is a possible state).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FILES 64
#define MAX_FDS 65536
#define DIR_FD (-2)

enum { OP_WRITE = 0, OP_TRUNCATE = 1 };

struct op {
    int kind;
    uint64_t off; /* write offset, or the new size for a truncate */
    uint64_t len;
    char *data;
};

/* on-disk record in <name>.pending: header then `len` bytes of data for a write */
struct rec {
    uint32_t kind;
    uint32_t pad;
    uint64_t off;
    uint64_t len;
};

struct tracked {
    int used;
    char name[NAME_MAX + 1];
    struct op *ops;
    size_t nops, cap;
    int shadow_fd;   /* <name> in the shadow directory */
    int pending_fd;  /* <name>.pending */
    uint64_t pending_size;
    int entry_pending;  /* created here, directory not yet synced */
    int unlink_pending; /* unlinked here, directory not yet synced */
    int gone;           /* unlinked here (whether or not durably) */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tracked files[MAX_FILES];
static int fdmap[MAX_FDS]; /* 0: untracked, DIR_FD: the watched directory, i+1: files[i] */
static char watched[PATH_MAX];
static size_t watched_len;
static char shadow[PATH_MAX];
static int enabled = -1;
static long kill_at_sync; /* $DROPSYNC_KILL_AT_SYNC: SIGKILL ourselves as the N-th sync starts (0: never) */
static long syncs;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);

static void die(const char *what) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "dropsync: %s failed (errno %d)\n", what, errno);
    if (n > 0) {
        ssize_t ignored = syscall(SYS_write, 2, buf, (size_t)n);
        (void)ignored;
    }
    abort();
}

static void resolve(void) {
    if (real_close) return;
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_close = dlsym(RTLD_NEXT, "close");
}

static int is_enabled(void) {
    if (enabled >= 0) return enabled;
    resolve();
    const char *w = getenv("DROPSYNC_DIR"), *s = getenv("DROPSYNC_SHADOW");
    if (!w || !s || !*w || !*s || strlen(w) >= sizeof watched || strlen(s) >= sizeof shadow) {
        enabled = 0;
        return 0;
    }
    strcpy(watched, w);
    watched_len = strlen(watched);
    while (watched_len > 1 && watched[watched_len - 1] == '/') watched[--watched_len] = 0;
    strcpy(shadow, s);
    const char *k = getenv("DROPSYNC_KILL_AT_SYNC");
    kill_at_sync = k ? strtol(k, NULL, 10) : 0;
    enabled = 1;
    return 1;
}

/* The name of `path` inside the watched directory, "" for the directory itself, NULL if outside. */
static const char *watched_name(int dirfd, const char *path, char *buf, size_t size) {
    if (!path) return NULL;
    const char *abs = path;
    if (path[0] != '/') {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return NULL;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n <= 0) return NULL;
            base[n] = 0;
        }
        if ((size_t)snprintf(buf, size, "%s/%s", base, path) >= size) return NULL;
        abs = buf;
    }
    if (strncmp(abs, watched, watched_len) != 0) return NULL;
    const char *rest = abs + watched_len;
    if (*rest == 0) return "";
    if (*rest != '/') return NULL;
    while (*rest == '/') rest++;
    if (*rest == 0) return "";
    if (strchr(rest, '/')) return NULL; /* subdirectories are not modelled */
    return rest;
}

static void shadow_path(char *buf, size_t size, const char *name, const char *suffix) {
    if ((size_t)snprintf(buf, size, "%s/%s%s", shadow, name, suffix) >= size) die("shadow path");
}

static void touch_marker(const char *name, int present) {
    char p[PATH_MAX];
    shadow_path(p, sizeof p, name, ".exists");
    if (present) {
        int fd = real_open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) die("create marker");
        real_close(fd);
    } else if (real_unlink(p) != 0 && errno != ENOENT) {
        die("remove marker");
    }
}

static void write_all(int fd, const char *data, uint64_t len, uint64_t off) {
    while (len > 0) {
        ssize_t n = real_pwrite64(fd, data, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("shadow pwrite");
        }
        data += n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
}

/* Copy the real file's current content (durable: it predates this process's writes) into the shadow. */
static void copy_real(const char *real_path, int dst) {
    int src = real_open(real_path, O_RDONLY | O_CLOEXEC);
    if (src < 0) die("open real file for the initial shadow");
    char buf[65536];
    uint64_t off = 0;
    for (;;) {
        ssize_t n = read(src, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("read real file");
        }
        if (n == 0) break;
        write_all(dst, buf, (uint64_t)n, off);
        off += (uint64_t)n;
    }
    real_close(src);
}

static void clear_ops(struct tracked *t) {
    for (size_t i = 0; i < t->nops; i++) free(t->ops[i].data);
    t->nops = 0;
    if (real_ftruncate64(t->pending_fd, 0) != 0) die("truncate pending log");
    t->pending_size = 0;
}

static struct tracked *track(const char *name, const char *real_path, int existed) {
    struct tracked *free_slot = NULL;
    for (int i = 0; i < MAX_FILES; i++) {
        if (files[i].used && strcmp(files[i].name, name) == 0) {
            struct tracked *t = &files[i];
            if (t->gone && !existed) {
                /* created again after an unlink: a new, empty file whose entry is not yet durable (if the
                 * unlink was not durable either, the old file would come back: dropping it is pessimistic) */
                clear_ops(t);
                if (real_ftruncate64(t->shadow_fd, 0) != 0) die("reset shadow");
                touch_marker(name, 0);
                t->gone = 0;
                t->unlink_pending = 0;
                t->entry_pending = 1;
            }
            return t;
        }
        if (!files[i].used && !free_slot) free_slot = &files[i];
    }
    if (!free_slot) die("too many tracked files");
    struct tracked *t = free_slot;
    memset(t, 0, sizeof *t);
    t->used = 1;
    strcpy(t->name, name);
    char p[PATH_MAX];
    shadow_path(p, sizeof p, name, "");
    t->shadow_fd = real_open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    shadow_path(p, sizeof p, name, ".pending");
    t->pending_fd = real_open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t->shadow_fd < 0 || t->pending_fd < 0) die("open shadow files");
    if (existed) {
        copy_real(real_path, t->shadow_fd);
        touch_marker(name, 1);
    } else {
        touch_marker(name, 0);
        t->entry_pending = 1;
    }
    return t;
}

static void add_op(struct tracked *t, int kind, uint64_t off, const void *data, uint64_t len) {
    if (t->nops == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->ops = realloc(t->ops, t->cap * sizeof *t->ops);
        if (!t->ops) die("realloc");
    }
    struct op *o = &t->ops[t->nops++];
    o->kind = kind;
    o->off = off;
    o->len = len;
    o->data = NULL;
    if (len) {
        o->data = malloc(len);
        if (!o->data) die("malloc");
        memcpy(o->data, data, len);
    }
    struct rec r = {(uint32_t)kind, 0, off, len};
    write_all(t->pending_fd, (const char *)&r, sizeof r, t->pending_size);
    t->pending_size += sizeof r;
    if (len) {
        write_all(t->pending_fd, data, len, t->pending_size);
        t->pending_size += len;
    }
}

/* The sync returned: everything issued before it is on the (modelled) disk.  The pending log is emptied
 * first, so a kill in the middle leaves the shadow with a prefix of the ops applied: a possible state of a
 * disk whose sync had not completed. */
static void apply_ops(struct tracked *t) {
    size_t n = t->nops;
    struct op *ops = t->ops;
    if (real_ftruncate64(t->pending_fd, 0) != 0) die("truncate pending log");
    t->pending_size = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].kind == OP_WRITE)
            write_all(t->shadow_fd, ops[i].data, ops[i].len, ops[i].off);
        else if (real_ftruncate64(t->shadow_fd, (off_t)ops[i].off) != 0)
            die("shadow ftruncate");
        free(ops[i].data);
    }
    t->nops = 0;
}

static void sync_directory(void) {
    for (int i = 0; i < MAX_FILES; i++) {
        struct tracked *t = &files[i];
        if (!t->used) continue;
        if (t->unlink_pending) {
            touch_marker(t->name, 0);
            t->unlink_pending = 0;
            t->entry_pending = 0;
        } else if (t->entry_pending) {
            touch_marker(t->name, 1);
            t->entry_pending = 0;
        }
    }
}

static struct tracked *tracked_fd(int fd) {
    if (fd < 0 || fd >= MAX_FDS || fdmap[fd] <= 0) return NULL;
    return &files[fdmap[fd] - 1];
}

static int after_open(int dirfd, const char *path, int flags, int fd, int existed) {
    char buf[PATH_MAX];
    if (fd < 0 || fd >= MAX_FDS) return fd;
    const char *name = watched_name(dirfd, path, buf, sizeof buf);
    if (!name) {
        fdmap[fd] = 0;
        return fd;
    }
    if (*name == 0) {
        fdmap[fd] = DIR_FD;
        return fd;
    }
    char real_path[PATH_MAX + NAME_MAX + 2];
    snprintf(real_path, sizeof real_path, "%s/%s", watched, name);
    struct tracked *t = track(name, real_path, existed);
    fdmap[fd] = (int)(t - files) + 1;
    if ((flags & O_TRUNC) && existed && (flags & O_ACCMODE) != O_RDONLY) add_op(t, OP_TRUNCATE, 0, NULL, 0);
    return fd;
}

static int file_exists(int dirfd, const char *path) {
    struct stat st;
    return fstatat(dirfd, path, &st, 0) == 0;
}

#define OPEN_BODY(REAL, DIRFD)                                                  \
    mode_t mode = 0;                                                            \
    if (flags & (O_CREAT | O_TMPFILE)) {                                        \
        va_list ap;                                                             \
        va_start(ap, flags);                                                    \
        mode = (mode_t)va_arg(ap, int);                                         \
        va_end(ap);                                                             \
    }                                                                           \
    char wbuf[PATH_MAX];                                                        \
    if (!is_enabled() || !watched_name(DIRFD, path, wbuf, sizeof wbuf))         \
        return REAL;                                                            \
    pthread_mutex_lock(&lock);                                                  \
    int existed = file_exists(DIRFD, path);                                     \
    int fd = REAL;                                                              \
    int saved = errno;                                                          \
    after_open(DIRFD, path, flags, fd, existed);                                \
    pthread_mutex_unlock(&lock);                                                \
    errno = saved;                                                              \
    return fd;

int open(const char *path, int flags, ...) {
    resolve();
    OPEN_BODY(real_open(path, flags, mode), AT_FDCWD)
}

int open64(const char *path, int flags, ...) {
    resolve();
    OPEN_BODY(real_open64(path, flags, mode), AT_FDCWD)
}

int openat(int dirfd, const char *path, int flags, ...) {
    resolve();
    OPEN_BODY(real_openat(dirfd, path, flags, mode), dirfd)
}

int openat64(int dirfd, const char *path, int flags, ...) {
    resolve();
    OPEN_BODY(real_openat64(dirfd, path, flags, mode), dirfd)
}

/* fds never tracked take the fast path without the lock: an fd number is not reused while a call on it runs */
static int untracked(int fd) {
    return !is_enabled() || fd < 0 || fd >= MAX_FDS || fdmap[fd] == 0;
}

static ssize_t do_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd, const void *buf, size_t n,
                         off_t off) {
    if (untracked(fd)) return real(fd, buf, n, off);
    pthread_mutex_lock(&lock);
    ssize_t done = real(fd, buf, n, off);
    int saved = errno;
    struct tracked *t = tracked_fd(fd);
    if (t && done > 0) add_op(t, OP_WRITE, (uint64_t)off, buf, (uint64_t)done);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return done;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    resolve();
    return do_pwrite(real_pwrite, fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    resolve();
    return do_pwrite(real_pwrite64, fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    resolve();
    if (untracked(fd) || fdmap[fd] == DIR_FD) return real_write(fd, buf, n);
    pthread_mutex_lock(&lock);
    off_t off;
    if (fcntl(fd, F_GETFL) & O_APPEND) {
        struct stat st;
        off = fstat(fd, &st) == 0 ? st.st_size : 0;
    } else {
        off = lseek(fd, 0, SEEK_CUR);
    }
    ssize_t done = real_write(fd, buf, n);
    int saved = errno;
    struct tracked *t = tracked_fd(fd);
    if (t && done > 0 && off >= 0) add_op(t, OP_WRITE, (uint64_t)off, buf, (uint64_t)done);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return done;
}

static int do_truncate(int (*real)(int, off_t), int fd, off_t size) {
    if (untracked(fd)) return real(fd, size);
    pthread_mutex_lock(&lock);
    int rc = real(fd, size);
    int saved = errno;
    struct tracked *t = tracked_fd(fd);
    if (t && rc == 0) add_op(t, OP_TRUNCATE, (uint64_t)size, NULL, 0);
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int ftruncate(int fd, off_t size) {
    resolve();
    return do_truncate(real_ftruncate, fd, size);
}

int ftruncate64(int fd, off_t size) {
    resolve();
    return do_truncate(real_ftruncate64, fd, size);
}

static int do_sync(int (*real)(int), int fd) {
    if (untracked(fd)) return real(fd);
    pthread_mutex_lock(&lock);
    /* the most dangerous moment for the writer: everything since the last sync is still unsynced */
    if (kill_at_sync > 0 && ++syncs == kill_at_sync) raise(SIGKILL);
    int rc = real(fd);
    int saved = errno;
    if (rc == 0 && fd >= 0 && fd < MAX_FDS) {
        if (fdmap[fd] == DIR_FD)
            sync_directory();
        else if (fdmap[fd] > 0)
            apply_ops(&files[fdmap[fd] - 1]);
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int fsync(int fd) {
    resolve();
    return do_sync(real_fsync, fd);
}

int fdatasync(int fd) {
    resolve();
    return do_sync(real_fdatasync, fd);
}

int close(int fd) {
    resolve();
    if (untracked(fd)) return real_close(fd);
    pthread_mutex_lock(&lock);
    if (fd >= 0 && fd < MAX_FDS) fdmap[fd] = 0; /* closing syncs nothing */
    int rc = real_close(fd);
    int saved = errno;
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}

int unlink(const char *path) {
    resolve();
    if (!is_enabled()) return real_unlink(path);
    pthread_mutex_lock(&lock);
    int rc = real_unlink(path);
    int saved = errno;
    char buf[PATH_MAX];
    const char *name = rc == 0 ? watched_name(AT_FDCWD, path, buf, sizeof buf) : NULL;
    if (name && *name) {
        for (int i = 0; i < MAX_FILES; i++) {
            struct tracked *t = &files[i];
            if (t->used && strcmp(t->name, name) == 0) {
                /* what was never synced of this file is gone with it; the entry goes at the next dir sync */
                clear_ops(t);
                t->gone = 1;
                if (t->entry_pending)
                    t->entry_pending = 0; /* never durable: nothing to remove */
                else
                    t->unlink_pending = 1;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return rc;
}
