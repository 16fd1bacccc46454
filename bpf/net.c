/* connect: the destination comes from the caller's sockaddr as given to the
 * syscall (a socket's own fields are still empty at this point). */

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
    if (!admitted(SC_CONNECT, cg, FLOOD_EVENTS, 0))
        return 0;
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

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u32 tid = current_tid();
    struct connect_ev *e = pending_connect.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = args->ret;
    emit(e, sizeof(*e), SC_CONNECT, T_CONNECT);
    pending_connect.delete(&tid);
    return 0;
}
