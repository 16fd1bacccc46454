/* Namespaces: setns (entering another process's namespaces, by an nsfs fd
 * or, since 5.8, a pidfd) and unshare (creating new ones). Decisive, failed
 * calls too, within the cgroup's budget for the namespace kind. */

#include "provex.h"

BPF_HASH(pending_ns, u32, struct ns_ev, 4096);

static __always_inline int ns_enter(u16 sc, s32 fd, u64 nstype)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    struct ns_ev e = {};
    fill_hdr(&e.h, sc, sizeof(e), cg);
    e.fd = fd;
    e.nstype = nstype;
    u32 tid = current_tid();
    if (pending_ns.update(&tid, &e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int ns_exit(long ret, u32 type_bit)
{
    u32 tid = current_tid();
    struct ns_ev *e = pending_ns.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    if (decisive_admitted(e->h.sc, e->h.cgroup_id, K_NS)) {
        e->h.flags |= HDR_DECISIVE;
        emit(e, sizeof(*e), e->h.sc, type_bit);
    }
    pending_ns.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_setns) { return ns_enter(SC_SETNS, args->fd, (u32)args->flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_setns) { return ns_exit(args->ret, T_SETNS); }

TRACEPOINT_PROBE(syscalls, sys_enter_unshare) { return ns_enter(SC_UNSHARE, -1, args->unshare_flags); }
TRACEPOINT_PROBE(syscalls, sys_exit_unshare) { return ns_exit(args->ret, T_UNSHARE); }
