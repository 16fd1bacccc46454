/* sysprobe: make one syscall exactly as asked, for provex's scenarios.
 *
 * Busybox tools use whichever open/exec variant their libc picks; detection
 * must be proven on every variant, so this helper calls each one directly
 * through syscall(2). Built static (gcc -static) to run in a busybox rootfs.
 * Prints "ret=<value> errno=<errno>" and exits 0 when the call succeeded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct how { uint64_t flags, mode, resolve; };

static int report(long ret)
{
    printf("ret=%ld errno=%d\n", ret, ret < 0 ? errno : 0);
    fflush(stdout);
    return ret < 0;
}

static long do_connect(const char *ip, int port)
{
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    int fd = socket(family, SOCK_STREAM, 0);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sysprobe open|openat|openat2|creat|execve|execveat|connect|connect-from|connect-unix|"
                        "accept|accept4|accept-nopeer|accept-save|accept-exec|setns|setns-pidfd|unshare|mount|newmount|open-tree|openat-dirfd|fexecve|flood|sleep ARGS...\n");
        return 2;
    }
    const char *op = argv[1];
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
