/* sysprobe: make one syscall exactly as asked, for provex's scenarios.
 *
 * Busybox tools use whichever open/exec variant their libc picks; detection
 * must be proven on every variant, so this helper calls each one directly
 * through syscall(2). Built static (gcc -static) to run in a busybox rootfs.
 * Prints "ret=<value> errno=<errno>" and exits 0 when the call succeeded.
 *
 * The held-out forms (bench/variants/heldout2.yaml) need the ways a name reaches a file
 * without being spelled (duplicated, passed and inherited dirfds, openat2's RESOLVE_*
 * flags, io_uring, file handles, detached trees) and code that never becomes a file
 * (memfds): those operations read the file they reach (or run the code) and report the
 * decisive call's result the same way. io_uring is driven through its raw syscalls.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct how { uint64_t flags, mode, resolve; };

extern char **environ;

static int quiet; /* repeat: one line for the whole run, not one per call */

static int report(long ret)
{
    if (quiet)
        return ret < 0;
    printf("ret=%ld errno=%d\n", ret, ret < 0 ? errno : 0);
    fflush(stdout);
    return ret < 0;
}

/* connect(2) a new TCP socket to IP:PORT; the socket is left in *sock. */
static long connect_socket(const char *ip, int port, int *sock)
{
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    int fd = *sock = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (family == AF_INET6) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a6.sin6_addr);
        return syscall(SYS_connect, fd, &a6, sizeof(a6));
    }
    a4.sin_family = AF_INET;
    a4.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a4.sin_addr);
    return syscall(SYS_connect, fd, &a4, sizeof(a4));
}

static long do_connect(const char *ip, int port)
{
    int sock;
    return connect_socket(ip, port, &sock);
}

/* connect from a chosen source address (another "Pod" of the test's network namespace),
 * then send the contents of FILE, if given, and close. */
static long do_connect_from(const char *src, const char *ip, int port, const char *file)
{
    struct sockaddr_in from = {0}, to = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    from.sin_family = to.sin_family = AF_INET;
    inet_pton(AF_INET, src, &from.sin_addr);
    to.sin_port = htons(port);
    inet_pton(AF_INET, ip, &to.sin_addr);
    if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0)
        return -1;
    long ret = syscall(SYS_connect, fd, &to, sizeof(to));
    if (ret == 0 && file) {
        char buf[4096];
        int in = open(file, O_RDONLY);
        ssize_t n;
        while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
            if (write(fd, buf, n) != n)
                break;
    }
    close(fd);
    return ret;
}

/* Wait (at most 10 s) until something in this network namespace listens on TCP PORT,
 * read from /proc/net/tcp and tcp6: a scenario's client must not race its own server
 * (a fixed sleep lost that race on a loaded machine and the attack never happened). */
static int listening(const char *table, int port)
{
    char line[256];
    unsigned local_port, state;
    int found = 0;
    FILE *f = fopen(table, "r");
    while (f && !found && fgets(line, sizeof(line), f)) /* "0: ADDR:PORT ADDR:PORT ST ..." */
        found = sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &local_port, &state) == 2 &&
                (int)local_port == port && state == 0x0A; /* TCP_LISTEN */
    if (f)
        fclose(f);
    return found;
}

static long do_wait_listen(int port)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 1000; i++) {
        if (listening("/proc/net/tcp", port) || listening("/proc/net/tcp6", port))
            return 0;
        nanosleep(&tick, NULL);
    }
    errno = ETIMEDOUT;
    return -1;
}

static long do_connect_unix(const char *path)
{
    struct sockaddr_un sa = {0};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sa.sun_family = AF_UNIX;
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    return syscall(SYS_connect, fd, &sa, sizeof(sa));
}

/* Listen on PORT (IPv4, or dual-stack IPv6 with "-v6" in the op), accept one connection
 * with accept, accept4, or accept4 without asking for the peer; print the peer. Returns
 * the connection's fd (the caller closes it or hands it on). */
static long do_accept(const char *op, int port)
{
    int v6 = strstr(op, "-v6") != NULL;
    int family = v6 ? AF_INET6 : AF_INET;
    int fd = socket(family, SOCK_STREAM, 0), one = 1, zero = 0;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in6 a6 = {0}, peer = {0};
    struct sockaddr_in a4 = {0};
    socklen_t len = sizeof(peer);
    long rc;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        rc = bind(fd, (struct sockaddr *)&a6, sizeof(a6));
    } else {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        rc = bind(fd, (struct sockaddr *)&a4, sizeof(a4));
    }
    if (rc < 0 || listen(fd, 8) < 0)
        return -1;
    if (!strncmp(op, "accept-nopeer", 13))
        rc = syscall(SYS_accept4, fd, NULL, NULL, 0);
    else if (!strncmp(op, "accept4", 7))
        rc = syscall(SYS_accept4, fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
    else
        rc = syscall(SYS_accept, fd, (struct sockaddr *)&peer, &len);
    if (rc >= 0) {
        char text[64] = "";
        int pport = 0;
        if (peer.sin6_family == AF_INET6) {
            inet_ntop(AF_INET6, &peer.sin6_addr, text, sizeof(text));
            pport = ntohs(peer.sin6_port);
        } else if (peer.sin6_family == AF_INET) {
            struct sockaddr_in *p4 = (struct sockaddr_in *)&peer;
            inet_ntop(AF_INET, &p4->sin_addr, text, sizeof(text));
            pport = ntohs(p4->sin_port);
        }
        fprintf(stderr, "peer=%s port=%d\n", text, pport);
    }
    close(fd);
    return rc;
}

/* accept-save PORT FILE: what the accepted connection carries, written to FILE (created). */
static long do_accept_save(int port, const char *file)
{
    long conn = do_accept("accept", port);
    if (conn < 0)
        return conn;
    int out = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char buf[4096];
    ssize_t n;
    while (out >= 0 && (n = read(conn, buf, sizeof(buf))) > 0)
        if (write(out, buf, n) != n)
            break;
    close(conn);
    return out < 0 ? -1 : close(out);
}

/* accept-exec PORT PROG ARGS...: the accepted connection becomes PROG's stdin and stdout. */
static long do_accept_exec(int port, char **prog)
{
    long conn = do_accept("accept", port);
    if (conn < 0)
        return conn;
    dup2(conn, 0);
    dup2(conn, 1);
    execv(prog[0], prog);
    return -1;
}

/* Read FD to the end (what an attacker wants from the file; the bytes are dropped). The
 * result stays the fd, the decisive call's result, unless the read failed. */
static long drain(long fd)
{
    char buf[4096];
    ssize_t n;
    if (fd < 0)
        return fd;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        ;
    return n < 0 ? -1 : fd;
}

static long open_dir(const char *dir)
{
    return syscall(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY);
}

/* A copy of FD made the way METHOD names (dup, dup2, dup3, dupfd, dupfd-cloexec), on a
 * number away from the original's; the original is closed, so only the copy reaches it. */
static long dup_by(long fd, const char *method)
{
    long copy;
    if (fd < 0)
        return fd;
    if (!strcmp(method, "dup"))
        copy = syscall(SYS_dup, fd);
#ifdef SYS_dup2
    else if (!strcmp(method, "dup2"))
        copy = syscall(SYS_dup2, fd, 40);
#endif
    else if (!strcmp(method, "dup3"))
        copy = syscall(SYS_dup3, fd, 41, O_CLOEXEC);
    else if (!strcmp(method, "dupfd"))
        copy = syscall(SYS_fcntl, fd, F_DUPFD, 50);
    else if (!strcmp(method, "dupfd-cloexec"))
        copy = syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 60);
    else {
        errno = EINVAL;
        return -1;
    }
    if (copy >= 0)
        close(fd);
    return copy;
}

/* openat2's RESOLVE_* flags from a comma list (in-root,beneath,no-symlinks,no-magiclinks,
 * no-xdev) or a number. */
static uint64_t resolve_flags(const char *text)
{
    static const struct { const char *name; uint64_t flag; } names[] = {
        {"in-root", RESOLVE_IN_ROOT}, {"beneath", RESOLVE_BENEATH}, {"no-symlinks", RESOLVE_NO_SYMLINKS},
        {"no-magiclinks", RESOLVE_NO_MAGICLINKS}, {"no-xdev", RESOLVE_NO_XDEV},
    };
    uint64_t flags = 0;
    char copy[256], *save = NULL;
    if (text[0] >= '0' && text[0] <= '9')
        return strtoull(text, NULL, 0);
    snprintf(copy, sizeof(copy), "%s", text);
    for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save))
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(part, names[i].name))
                flags |= names[i].flag;
    return flags;
}

/* scm-rights DIR REL: a child opens DIR and passes the fd over a unix socket (SCM_RIGHTS);
 * this process, which never named DIR, reads REL through it. */
static long do_scm_rights(const char *dir, const char *rel)
{
    int sv[2], received = -1, status;
    char byte = 'd', control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {&byte, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof(control)};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    pid_t child = fork();
    if (child == 0) {
        int dirfd = open_dir(dir);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        memset(control, 0, sizeof(control));
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &dirfd, sizeof(int));
        _exit(dirfd < 0 || sendmsg(sv[1], &msg, 0) < 0);
    }
    close(sv[1]);
    if (child < 0 || recvmsg(sv[0], &msg, 0) <= 0)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_type == SCM_RIGHTS)
        memcpy(&received, CMSG_DATA(c), sizeof(int));
    waitpid(child, &status, 0);
    if (received < 0) {
        errno = EBADF;
        return -1;
    }
    return drain(syscall(SYS_openat, received, rel, O_RDONLY));
}

/* pidfd-getfd DIR REL: a child opens DIR and waits; this process takes a copy of that fd
 * with pidfd_open + pidfd_getfd and reads REL through it. */
static long do_pidfd_getfd(const char *dir, const char *rel)
{
    int pipefd[2], status;
    long target = -1;
    if (pipe(pipefd) < 0)
        return -1;
    pid_t child = fork();
    if (child == 0) {
        long dirfd = open_dir(dir);
        if (write(pipefd[1], &dirfd, sizeof(dirfd)) != sizeof(dirfd))
            _exit(1);
        pause();
        _exit(0);
    }
    if (child < 0 || read(pipefd[0], &target, sizeof(target)) != sizeof(target) || target < 0) {
        if (child > 0)
            kill(child, SIGKILL);
        return -1;
    }
    long pidfd = syscall(SYS_pidfd_open, child, 0);
    long copy = pidfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pidfd, target, 0);
    int saved = errno;
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    errno = saved;
    return drain(copy < 0 ? copy : syscall(SYS_openat, copy, rel, O_RDONLY));
}

/* io_uring through its raw syscalls: one ring, one request at a time. */
struct uring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int uring_setup(struct uring *r)
{
    struct io_uring_params p = {0};
    r->fd = syscall(SYS_io_uring_setup, 4, &p);
    if (r->fd < 0)
        return -1;
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = p.features & IORING_FEAT_SINGLE_MMAP;
    if (single)
        sq_size = cq_size = sq_size > cq_size ? sq_size : cq_size;
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    char *cq = single ? sq
                      : mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                             IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        return -1;
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* Submit SQE, wait for its completion, and return its result (errno set when negative). */
static long uring_run(struct uring *r, const struct io_uring_sqe *sqe)
{
    unsigned tail = *r->sq_tail, index = tail & *r->sq_mask;
    r->sqes[index] = *sqe;
    r->sq_array[index] = index;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return -1;
    unsigned head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
    if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
        errno = EAGAIN;
        return -1;
    }
    long res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    if (res < 0) {
        errno = -res;
        return -1;
    }
    return res;
}

/* Read FD to the end through the ring (no read(2) either). */
static long uring_drain(struct uring *r, long fd)
{
    static char buf[4096];
    struct io_uring_sqe sqe = {.opcode = IORING_OP_READ, .fd = fd, .addr = (uintptr_t)buf, .len = sizeof(buf)};
    long n;
    if (fd < 0)
        return fd;
    while ((n = uring_run(r, &sqe)) > 0)
        sqe.off += n;
    return n < 0 ? -1 : fd;
}

/* uring-openat|uring-openat2 PATH [DIR]: open PATH (relative to DIR's fd, if given) with an
 * IORING_OP_OPENAT(2) request, and read it through the ring. uring-read PATH: open with
 * openat(2) and read through the ring (what a database or libuv does). */
static long do_uring(const char *op, const char *path, const char *dir)
{
    struct uring r;
    struct how how = {.flags = O_RDONLY};
    struct io_uring_sqe sqe = {.fd = AT_FDCWD, .addr = (uintptr_t)path};
    if (uring_setup(&r) < 0)
        return -1;
    if (!strcmp(op, "uring-read"))
        return uring_drain(&r, syscall(SYS_openat, AT_FDCWD, path, O_RDONLY));
    if (dir && (sqe.fd = open_dir(dir)) < 0)
        return -1;
    if (!strcmp(op, "uring-openat2")) {
        sqe.opcode = IORING_OP_OPENAT2;
        sqe.addr2 = (uintptr_t)&how;
        sqe.len = sizeof(how);
    } else {
        sqe.opcode = IORING_OP_OPENAT;
        sqe.open_flags = O_RDONLY;
    }
    return uring_drain(&r, uring_run(&r, &sqe));
}

struct handle {
    struct file_handle h;
    unsigned char space[MAX_HANDLE_SZ];
};

/* name-to-handle PATH [MOUNT]: the handle of PATH; with MOUNT, open it by that handle
 * relative to MOUNT (any fd on the same filesystem, as the "shocker" escape does) and read. */
static long do_handle(const char *path, const char *mount)
{
    struct handle fh = {.h.handle_bytes = MAX_HANDLE_SZ};
    int mount_id;
    long ret = syscall(SYS_name_to_handle_at, AT_FDCWD, path, &fh.h, &mount_id, 0);
    if (ret < 0 || !mount)
        return ret;
    long mount_fd = syscall(SYS_openat, AT_FDCWD, mount, O_RDONLY);
    if (mount_fd < 0)
        return mount_fd;
    return drain(syscall(SYS_open_by_handle_at, mount_fd, &fh.h, O_RDONLY));
}

/* handle-ino MOUNT INO [GEN]: open_by_handle_at with a forged FILEID_INO32_GEN handle (ext4's
 * root is inode 2, generation 0): the directory opened is the filesystem's root, whatever the
 * container's root is. Prints its inode; nothing in it is read. */
static long do_handle_ino(const char *mount, const char *ino, const char *gen)
{
    struct handle fh = {.h.handle_bytes = 8, .h.handle_type = 1 /* FILEID_INO32_GEN */};
    uint32_t words[2] = {(uint32_t)strtoul(ino, NULL, 0), gen ? (uint32_t)strtoul(gen, NULL, 0) : 0};
    struct stat st;
    memcpy(fh.h.f_handle, words, sizeof(words));
    long mount_fd = syscall(SYS_openat, AT_FDCWD, mount, O_RDONLY);
    if (mount_fd < 0)
        return mount_fd;
    long fd = syscall(SYS_open_by_handle_at, mount_fd, &fh.h, O_RDONLY | O_DIRECTORY);
    if (fd >= 0 && fstat(fd, &st) == 0)
        fprintf(stderr, "opened inode %lu\n", (unsigned long)st.st_ino);
    return fd;
}

/* A memfd named NAME holding what SRC holds ("-": stdin): code that never becomes a file. */
static long memfd_from(const char *src, const char *name)
{
    char buf[65536];
    ssize_t n;
    long fd = syscall(SYS_memfd_create, name, 0);
    int in = strcmp(src, "-") ? open(src, O_RDONLY) : 0;
    if (fd < 0 || in < 0)
        return -1;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(fd, buf, n) != n)
            return -1;
    if (in != 0)
        close(in);
    return n < 0 ? -1 : fd;
}

/* fetch-memfd IP PORT URLPATH NAME: one process downloads (HTTP/1.0 GET) straight into a
 * memfd, the response's headers cut off. */
static long fetch_memfd(const char *ip, int port, const char *path, const char *name)
{
    char request[512], buf[65536];
    size_t have = 0;
    ssize_t n;
    int in_body = 0;
    int sock;
    long fd = syscall(SYS_memfd_create, name, 0);
    if (connect_socket(ip, port, &sock) < 0 || fd < 0)
        return -1;
    snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\n\r\n", path);
    if (write(sock, request, strlen(request)) < 0)
        return -1;
    while ((n = read(sock, buf + have, sizeof(buf) - have)) > 0) {
        have += n;
        if (!in_body) {
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (!end) {
                if (have == sizeof(buf))
                    return -1;
                continue;
            }
            in_body = 1;
            size_t skip = end + 4 - buf;
            memmove(buf, buf + skip, have - skip);
            have -= skip;
        }
        if (write(fd, buf, have) != (ssize_t)have)
            return -1;
        have = 0;
    }
    close(sock);
    return n < 0 || !in_body ? -1 : fd;
}

/* Execute FD: execveat(fd, "", AT_EMPTY_PATH), or execve of /proc/self/fd/N (by_proc). */
static long exec_fd(long fd, char **args, int by_proc)
{
    char path[64];
    if (fd < 0)
        return fd;
    if (!by_proc)
        return syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
    snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
    return syscall(SYS_execve, path, args, environ);
}

/* memfd-hold SRC NAME SECONDS: a memfd holding SRC, its /proc/<pid>/fd/N path printed (for
 * another process to run), kept open SECONDS. */
static long memfd_hold(const char *src, const char *name, int seconds)
{
    long fd = memfd_from(src, name);
    if (fd < 0)
        return fd;
    printf("/proc/%d/fd/%ld\n", getpid(), fd);
    fflush(stdout);
    sleep(seconds);
    return fd;
}

/* memfd-data SRC: a memfd used for data only (written, read back, never run). */
static long memfd_data(const char *src)
{
    long fd = memfd_from(src, "data");
    if (fd < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return -1;
    return drain(fd);
}

/* fsopen -> fsconfig(source) -> fsconfig(create) -> fsmount -> move_mount */
static long do_newmount(const char *fstype, const char *source, const char *target)
{
    long fs = syscall(SYS_fsopen, fstype, 0);
    if (fs < 0)
        return fs;
    if (source && syscall(SYS_fsconfig, fs, 1 /* SET_STRING */, "source", source, 0) < 0)
        return -1;
    if (syscall(SYS_fsconfig, fs, 6 /* CMD_CREATE */, NULL, NULL, 0) < 0)
        return -1;
    long mnt = syscall(SYS_fsmount, fs, 0, 0);
    if (mnt < 0)
        return mnt;
    return syscall(SYS_move_mount, mnt, "", AT_FDCWD, target, 4 /* MOVE_MOUNT_F_EMPTY_PATH */);
}

/* openat(DIRFD, REL) and read it; DIRFD's own failure passes through. */
static long openat_read(long dirfd, const char *rel)
{
    return dirfd < 0 && dirfd != AT_FDCWD ? dirfd : drain(syscall(SYS_openat, dirfd, rel, O_RDONLY));
}

static long fchdir_read(long dirfd, const char *rel)
{
    if (dirfd < 0 || syscall(SYS_fchdir, dirfd) < 0)
        return -1;
    return openat_read(AT_FDCWD, rel);
}

static int dispatch(int argc, char **argv);
static long exec_flood(long n, const char *path);

/* The held-out forms: a name that reaches a file without spelling it, and code run from
 * memory. -1 when OP is none of them. */
static int held_out_op(int argc, char **argv)
{
    const char *op = argv[1];
    if (!strcmp(op, "openat-dup") && argc > 4) /* openat-dup METHOD DIR REL */
        return report(openat_read(dup_by(open_dir(argv[3]), argv[2]), argv[4]));
    if (!strcmp(op, "fchdir-dup") && argc > 4) /* fchdir-dup METHOD DIR REL: then a relative open */
        return report(fchdir_read(dup_by(open_dir(argv[3]), argv[2]), argv[4]));
    if (!strcmp(op, "fchdir-opath") && argc > 3) /* fchdir-opath DIR REL: fchdir to an O_PATH fd */
        return report(fchdir_read(syscall(SYS_openat, AT_FDCWD, argv[2], O_PATH | O_DIRECTORY), argv[3]));
    if (!strcmp(op, "openat-fd") && argc > 3) /* openat-fd FD REL: through an inherited fd */
        return report(openat_read(atol(argv[2]), argv[3]));
    if (!strcmp(op, "openat2-dirfd") && argc > 4) { /* openat2-dirfd DIR PATH RESOLVE */
        struct how how = {.flags = O_RDONLY, .resolve = resolve_flags(argv[4])};
        long dirfd = open_dir(argv[2]);
        return report(dirfd < 0 ? dirfd : drain(syscall(SYS_openat2, dirfd, argv[3], &how, sizeof(how))));
    }
    if (!strcmp(op, "opath-reopen") && argc > 2) { /* opath-reopen PATH: O_PATH, then /proc/self/fd/N */
        char path[64];
        long fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_PATH);
        snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
        return report(fd < 0 ? fd : openat_read(AT_FDCWD, path));
    }
    if (!strcmp(op, "userns-bind") && argc > 4) { /* userns-bind SRC TARGET REL */
        char path[4096];
        /* No capability needed: a new user namespace owns the new mount namespace, and this
         * process keeps its capabilities there as long as it does not exec. */
        if (syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS) < 0 ||
            syscall(SYS_mount, argv[2], argv[3], NULL, MS_BIND | MS_REC, NULL) < 0)
            return report(-1);
        snprintf(path, sizeof(path), "%s/%s", argv[3], argv[4]);
        return report(openat_read(AT_FDCWD, path));
    }
    if (!strcmp(op, "scm-rights") && argc > 3)
        return report(do_scm_rights(argv[2], argv[3]));
    if (!strcmp(op, "pidfd-getfd") && argc > 3)
        return report(do_pidfd_getfd(argv[2], argv[3]));
    if (!strcmp(op, "open-tree-read") && argc > 3) { /* open-tree-read PATH REL [clone] */
        unsigned flags = argc > 4 && !strcmp(argv[4], "clone") ? 1 /* OPEN_TREE_CLONE */ : 0;
        return report(openat_read(syscall(SYS_open_tree, AT_FDCWD, argv[2], flags), argv[3]));
    }
    if (!strncmp(op, "uring-", 6) && argc > 2)
        return report(do_uring(op, argv[2], argc > 3 ? argv[3] : NULL));
    if (!strcmp(op, "name-to-handle") && argc > 2) /* name-to-handle PATH [MOUNT] */
        return report(do_handle(argv[2], argc > 3 ? argv[3] : NULL));
    if (!strcmp(op, "handle-ino") && argc > 3) /* handle-ino MOUNT INO [GEN] */
        return report(do_handle_ino(argv[2], argv[3], argc > 4 ? argv[4] : NULL));
    if (!strcmp(op, "memfd-exec") && argc > 4) /* memfd-exec SRC NAME ARGV...: execveat AT_EMPTY_PATH */
        return report(exec_fd(memfd_from(argv[2], argv[3]), &argv[4], 0));
    if (!strcmp(op, "memfd-exec-proc") && argc > 4) /* the same through /proc/self/fd/N */
        return report(exec_fd(memfd_from(argv[2], argv[3]), &argv[4], 1));
    if (!strcmp(op, "fetch-memfd-exec") && argc > 6) /* fetch-memfd-exec IP PORT URLPATH NAME ARGV... */
        return report(exec_fd(fetch_memfd(argv[2], atoi(argv[3]), argv[4], argv[5]), &argv[6], 0));
    if (!strcmp(op, "memfd-hold") && argc > 4) /* memfd-hold SRC NAME SECONDS */
        return report(memfd_hold(argv[2], argv[3], atoi(argv[4])));
    if (!strcmp(op, "memfd-data") && argc > 2)
        return report(memfd_data(argv[2]));
    if (!strcmp(op, "repeat") && argc > 3) { /* repeat N OP ARGS...: OP N times, one report */
        long n = atol(argv[2]), failed = 0;
        quiet = 1;
        for (long i = 0; i < n; i++)
            failed += dispatch(argc - 2, argv + 2) != 0;
        quiet = 0;
        return report(n - failed);
    }
    if (!strcmp(op, "exec-flood") && argc > 3) /* exec-flood N PATH: N children each execute PATH */
        return report(exec_flood(atol(argv[2]), argv[3]));
    if (!strcmp(op, "connect-udp") && argc > 3) { /* connect-udp IP PORT: a UDP socket connected */
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        long ret = fd < 0 ? -1 : syscall(SYS_connect, fd, &a, sizeof(a));
        if (fd >= 0)
            close(fd);
        return report(ret);
    }
    if (!strcmp(op, "flood-write") && argc > 3) { /* flood-write PATH N: N write-opens and closes */
        long n = atol(argv[3]), ok = 0;
        for (long i = 0; i < n; i++) {
            long fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) {
                close(fd);
                ok++;
            }
        }
        return report(ok);
    }
    if (!strcmp(op, "fork-flood") && argc > 2) { /* fork-flood N: N children that exit at once */
        long n = atol(argv[2]), ok = 0;
        for (long i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0)
                _exit(0);
            if (pid > 0 && waitpid(pid, NULL, 0) == pid)
                ok++;
        }
        return report(ok);
    }
    if (!strcmp(op, "exec-as") && argc > 3) /* exec-as PATH ARGV0 ARGS...: execve with a chosen argv[0] */
        return report(syscall(SYS_execve, argv[2], &argv[3], environ));
    if (!strcmp(op, "as-comm") && argc > 3) { /* as-comm NAME OP ARGS...: prctl(PR_SET_NAME), then OP */
        if (prctl(PR_SET_NAME, argv[2], 0, 0, 0) < 0)
            return report(-1);
        return dispatch(argc - 2, argv + 2);
    }
    return -1;
}

/* exec-flood N PATH: as fast as it can, N children (vfork) that each execute PATH with no
 * arguments; returns how many ran. What a container that floods its sensor with execs does. */
static long exec_flood(long n, const char *path)
{
    long ran = 0;
    char *args[] = {(char *)path, NULL};
    for (long i = 0; i < n; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            execve(path, args, environ);
            _exit(127);
        }
        int status = 0;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ran++;
    }
    return ran;
}

int main(int argc, char **argv)
{
    return dispatch(argc, argv);
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sysprobe open|openat|openat2|creat|execve|execveat|connect|connect-from|connect-unix|"
                        "accept|accept4|accept-nopeer|accept-save|accept-exec|setns|setns-pidfd|unshare|mount|newmount|open-tree|openat-dirfd|fexecve|flood|sleep|"
                        "openat-dup|fchdir-dup|fchdir-opath|openat-fd|openat2-dirfd|opath-reopen|scm-rights|pidfd-getfd|open-tree-read|"
                        "uring-openat|uring-openat2|uring-read|name-to-handle|handle-ino|memfd-exec|memfd-exec-proc|fetch-memfd-exec|"
                        "memfd-hold|memfd-data|exec-as|exec-flood|repeat|connect-udp|flood-write|fork-flood|as-comm|userns-bind|wait-listen ARGS...\n");
        return 2;
    }
    const char *op = argv[1];
    int held_out = held_out_op(argc, argv);
    if (held_out >= 0)
        return held_out;
    if (!strcmp(op, "open") && argc > 2) {
#ifdef SYS_open
        return report(syscall(SYS_open, argv[2], O_RDONLY));
#else
        errno = ENOSYS;
        return report(-1);
#endif
    }
    if (!strcmp(op, "openat") && argc > 2)
        return report(syscall(SYS_openat, AT_FDCWD, argv[2], O_RDONLY));
    if (!strcmp(op, "openat2") && argc > 2) {
        struct how how = {.flags = O_RDONLY};
        return report(syscall(SYS_openat2, AT_FDCWD, argv[2], &how, sizeof(how)));
    }
    if (!strcmp(op, "creat") && argc > 2) {
#ifdef SYS_creat
        return report(syscall(SYS_creat, argv[2], 0644));
#else
        errno = ENOSYS;
        return report(-1);
#endif
    }
    if (!strcmp(op, "openat-dirfd") && argc > 3) { /* openat-dirfd DIR REL: openat through a dirfd */
        int dirfd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (dirfd < 0)
            return report(dirfd);
        return report(syscall(SYS_openat, dirfd, argv[3], O_RDONLY));
    }
    if (!strcmp(op, "fexecve") && argc > 3) { /* fexecve PATH ARGV0 ARGS: execveat(fd, "", AT_EMPTY_PATH) */
        int fd = open(argv[2], O_PATH | O_CLOEXEC);
        if (fd < 0)
            return report(fd);
        return report(syscall(SYS_execveat, fd, "", &argv[3], NULL, AT_EMPTY_PATH));
    }
    if (!strcmp(op, "execve") && argc > 2)
        return report(syscall(SYS_execve, argv[2], &argv[2], NULL));
    if (!strcmp(op, "execveat") && argc > 2)
        return report(syscall(SYS_execveat, AT_FDCWD, argv[2], &argv[2], NULL, 0));
    if (!strcmp(op, "connect") && argc > 3)
        return report(do_connect(argv[2], atoi(argv[3])));
    if (!strcmp(op, "wait-listen") && argc > 2)
        return report(do_wait_listen(atoi(argv[2])));
    if (!strcmp(op, "connect-from") && argc > 4) /* connect-from SRC IP PORT [FILE] */
        return report(do_connect_from(argv[2], argv[3], atoi(argv[4]), argc > 5 ? argv[5] : NULL));
    if (!strcmp(op, "accept-save") && argc > 3)
        return report(do_accept_save(atoi(argv[2]), argv[3]));
    if (!strcmp(op, "accept-exec") && argc > 3)
        return report(do_accept_exec(atoi(argv[2]), &argv[3]));
    if (!strncmp(op, "accept", 6) && argc > 2) { /* accept|accept4|accept-nopeer[-v6] PORT */
        long conn = do_accept(op, atoi(argv[2]));
        if (conn >= 0)
            close(conn);
        return report(conn);
    }
    if (!strcmp(op, "connect-unix") && argc > 2)
        return report(do_connect_unix(argv[2]));
    if (!strcmp(op, "setns") && argc > 2) { /* setns PATH-TO-NS-FILE */
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0)
            return report(fd);
        return report(syscall(SYS_setns, fd, 0));
    }
    if (!strcmp(op, "setns-pidfd") && argc > 2) { /* modern nsenter: pidfd_open + setns */
        long pidfd = syscall(SYS_pidfd_open, atoi(argv[2]), 0);
        if (pidfd < 0)
            return report(pidfd);
        int flags = argc > 3 ? (int)strtol(argv[3], NULL, 0) : CLONE_NEWNS;
        return report(syscall(SYS_setns, pidfd, flags));
    }
    if (!strcmp(op, "unshare") && argc > 2)
        return report(syscall(SYS_unshare, strtol(argv[2], NULL, 0)));
    if (!strcmp(op, "mount") && argc > 4)
        return report(syscall(SYS_mount, argv[2], argv[3], argv[4], 0, NULL));
    if (!strcmp(op, "newmount") && argc > 3) /* newmount FSTYPE TARGET [SOURCE] */
        return report(do_newmount(argv[2], argc > 4 ? argv[4] : NULL, argv[3]));
    if (!strcmp(op, "open-tree") && argc > 2)
        return report(syscall(SYS_open_tree, AT_FDCWD, argv[2], 1 /* OPEN_TREE_CLONE */));
    if (!strcmp(op, "flood") && argc > 3) { /* flood PATH N [PER_SECOND]: N openat+close */
        long n = atol(argv[3]), ok = 0;
        double rate = argc > 4 ? atof(argv[4]) : 0;
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n; i++) {
            if (rate > 0 && i % 64 == 0) { /* pace: never run ahead of i/rate seconds, asleep */
                clock_gettime(CLOCK_MONOTONIC, &t);
                double ahead = i / rate - ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9);
                if (ahead > 0) {
                    struct timespec nap = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
                    nanosleep(&nap, NULL);
                }
            }
            long fd = syscall(SYS_openat, AT_FDCWD, argv[2], O_RDONLY);
            if (fd >= 0) {
                close(fd);
                ok++;
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        double ns = ((t.tv_sec - t0.tv_sec) * 1e9 + (t.tv_nsec - t0.tv_nsec)) / (n ? n : 1);
        printf("opened=%ld ns_per_op=%.1f\n", ok, ns);
        return ok != n;
    }
    if (!strcmp(op, "sleep") && argc > 2) {
        sleep(atoi(argv[2]));
        return 0;
    }
    fprintf(stderr, "sysprobe: unknown or incomplete operation %s\n", op);
    return 2;
}
