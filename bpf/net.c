/* connect: the destination comes from the caller's sockaddr as given to the
 * syscall (a socket's own fields are still empty at this point). */

#include "provex.h"

BPF_HASH(pending_connect, u32, struct connect_ev, 8192);

#define PROVEX_AF_UNIX 1
#define PROVEX_AF_INET 2
#define PROVEX_AF_INET6 10

TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    u64 cg;
    if (!enter_filter(SC_CONNECT, &cg))
        return 0;
    u16 family = 0;
    bpf_probe_read_user(&family, sizeof(family), args->uservaddr);
    if (family != PROVEX_AF_INET && family != PROVEX_AF_INET6 && family != PROVEX_AF_UNIX) {
        count(SC_CONNECT, CTR_FILTERED_OTHER); /* netlink, packet, vsock, ... */
        return 0;
    }
    struct connect_ev e = {};
    fill_hdr(&e.h, SC_CONNECT, sizeof(e), cg);
    e.fd = args->fd;
    e.family = family;
    const u8 *sa = (const u8 *)args->uservaddr;
    if (family == PROVEX_AF_INET) {
        u16 port_be = 0; /* struct sockaddr_in: family, port, addr */
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        e.port = (port_be >> 8) | (port_be << 8);
        bpf_probe_read_user(&e.addr, 4, sa + 4);
    } else if (family == PROVEX_AF_INET6) {
        u16 port_be = 0; /* struct sockaddr_in6: family, port, flowinfo, addr */
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        e.port = (port_be >> 8) | (port_be << 8);
        bpf_probe_read_user(&e.addr, 16, sa + 8);
    } else {
        bpf_probe_read_user_str(&e.path, sizeof(e.path), sa + 2);
    }
    u32 tid = current_tid();
    if (pending_connect.update(&tid, &e))
        count(SC_CONNECT, CTR_LOST_PENDING);
    return 0;
}

/* An IP connect is decisive (the network kind's budget); a unix-socket connect
 * is bulk (it feeds the graph, no rule ends with it). */
TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u32 tid = current_tid();
    struct connect_ev *e = pending_connect.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = args->ret;
#ifdef FILE_IDENTITY
    file_id_of(fd_file(e->fd), &e->file);
#endif
    if (e->family == PROVEX_AF_UNIX) {
        if (!admitted(SC_CONNECT, e->h.cgroup_id, FLOOD_EVENTS, SHED_WHEN_BEHIND))
            goto done;
    } else {
        if (!decisive_admitted(SC_CONNECT, e->h.cgroup_id, K_NET))
            goto done;
        e->h.flags |= HDR_DECISIVE;
    }
    emit(e, sizeof(*e), SC_CONNECT, T_CONNECT);
done:
    pending_connect.delete(&tid);
    return 0;
}

/* accept, accept4: an inbound connection. The peer's address is what the kernel
 * wrote into the caller's sockaddr, so it is read at the exit; the local side
 * is not in the syscall's arguments (the agent knows the Pod's address). The
 * event's time is the exit's: a server waits in accept long before a client
 * comes, and a chain orders the accept after the peer's connect. */

struct accept_ev {
    struct event_hdr h;
    s32 fd;     /* the listening socket */
    u16 family; /* the peer's (0: the caller did not ask for its address) */
    u16 port;   /* host byte order */
    u8 addr[16];
    u32 flags;  /* accept4: SOCK_NONBLOCK, SOCK_CLOEXEC */
    u32 pad;
    u64 user_addr; /* the caller's sockaddr, filled by the kernel at exit */
    struct file_id file; /* the accepted socket (FILE_IDENTITY) */
};

BPF_HASH(pending_accept, u32, struct accept_ev, 8192);

static __always_inline int accept_enter(u16 sc, s32 fd, const void *upeer, u32 flags)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    /* The budget is charged at the exit: only there is it known whether the
     * accept is sent at all (a non-blocking server's EAGAIN is not). The
     * pending map holds one record per thread either way. */
    struct accept_ev e = {};
    fill_hdr(&e.h, sc, sizeof(e), cg);
    e.fd = fd;
    e.flags = flags;
    e.user_addr = (u64)upeer;
    u32 tid = current_tid();
    if (pending_accept.update(&tid, &e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int accept_exit(long ret)
{
    u32 tid = current_tid();
    struct accept_ev *e = pending_accept.lookup(&tid);
    if (!e)
        return 0;
    u16 sc = e->h.sc;
    const u8 *sa = (const u8 *)e->user_addr;
    u16 family = 0;
    if (sa)
        bpf_probe_read_user(&family, sizeof(family), sa);
    /* A failed accept carries no peer (EAGAIN of a non-blocking server is the
     * common case); a unix-socket peer is no network connection. */
    if (ret < 0 || (sa && family != PROVEX_AF_INET && family != PROVEX_AF_INET6)) {
        count(sc, CTR_FILTERED_OTHER);
        pending_accept.delete(&tid);
        return 0;
    }
    if (!decisive_admitted(sc, e->h.cgroup_id, K_NET)) {
        pending_accept.delete(&tid);
        return 0;
    }
    e->h.flags |= HDR_DECISIVE;
#ifdef FILE_IDENTITY
    file_id_of(fd_file(ret), &e->file);
#endif
    e->family = family;
    u16 port_be = 0;
    if (family == PROVEX_AF_INET) {
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        bpf_probe_read_user(&e->addr, 4, sa + 4);
    } else if (family == PROVEX_AF_INET6) {
        bpf_probe_read_user(&port_be, sizeof(port_be), sa + 2);
        bpf_probe_read_user(&e->addr, 16, sa + 8);
    }
    e->port = (port_be >> 8) | (port_be << 8);
    e->h.ts = bpf_ktime_get_boot_ns();
    e->h.ret = ret;
    emit(e, sizeof(*e), sc, T_ACCEPT);
    pending_accept.delete(&tid);
    return 0;
}

#ifdef HAVE_SYS_ENTER_ACCEPT
TRACEPOINT_PROBE(syscalls, sys_enter_accept)
{
    return accept_enter(SC_ACCEPT, args->fd, args->upeer_sockaddr, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return accept_exit(args->ret); }
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_accept4)
{
    return accept_enter(SC_ACCEPT4, args->fd, args->upeer_sockaddr, args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return accept_exit(args->ret); }
