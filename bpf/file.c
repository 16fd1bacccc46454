/* Open family: open, openat, openat2, creat. The path is read at entry (the
 * caller's memory as the syscall was given it), the fd or errno at exit. */

#include "provex.h"

BPF_PERCPU_ARRAY(scratch_open, struct open_ev, 1);
BPF_HASH(pending_open, u32, struct open_ev, 16384);

static __always_inline int open_enter(u16 sc, s32 dirfd, const char *filename, u64 flags, u64 mode)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    u8 interest = path_interest(filename, flags);
    if (!interest) {
        count(sc, CTR_FILTERED_PATH);
        return 0;
    }
    /* Reads are what floods are made of; writes, sensitive paths and the rest of
     * the probes share the per-cgroup event budget or none. */
    if (interest != PATH_SENSITIVE) {
        int read = !(flags & PROVEX_O_WRITE_MASK);
        if (!admitted(sc, cg, read ? FLOOD_READS : FLOOD_EVENTS, read && interest != PATH_LEARNED))
            return 0;
    }
    u32 zero = 0;
    struct open_ev *e = scratch_open.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->h.wake = interest == PATH_SENSITIVE;
    e->dirfd = dirfd;
    e->flags = flags;
    e->mode = mode;
    e->user_path = (u64)filename;
    long n = bpf_probe_read_user_str(e->path, sizeof(e->path), filename);
    e->path_len = n > 0 ? n : 0;
    u32 tid = current_tid();
    if (pending_open.update(&tid, e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int open_exit(long ret)
{
    u32 tid = current_tid();
    struct open_ev *e = pending_open.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    if (e->path[0] == 0) {
        e->path_len = reread_if_empty(e->path, sizeof(e->path), e->user_path);
        /* the entry check could not see the path; apply it now */
        if (e->path[0] == '/' && !path_interest((const char *)e->user_path, e->flags)) {
            count(e->h.sc, CTR_FILTERED_PATH);
            pending_open.delete(&tid);
            return 0;
        }
    }
    if (ret >= 0 && (e->flags & PROVEX_O_WRITE_MASK))
        learn_name(e->path, e->path_len);
    emit(e, BOUNDED_SIZE(offsetof(struct open_ev, path) + e->path_len, sizeof(struct open_ev)), e->h.sc, T_OPEN);
    pending_open.delete(&tid);
    return 0;
}

#ifdef HAVE_SYS_ENTER_OPEN
TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(SC_OPEN, PROVEX_AT_FDCWD, args->filename, args->flags, args->mode);
}
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return open_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_CREAT
/* creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode) */
TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    return open_enter(SC_CREAT, PROVEX_AT_FDCWD, args->pathname, 0100 | 01 | 01000, args->mode);
}
TRACEPOINT_PROBE(syscalls, sys_exit_creat) { return open_exit(args->ret); }
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(SC_OPENAT, args->dfd, args->filename, args->flags, args->mode);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return open_exit(args->ret); }

#ifdef HAVE_SYS_ENTER_OPENAT2
/* openat2 passes flags and mode in a struct open_how in the caller's memory. */
TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[2] = {};
    bpf_probe_read_user(&how, sizeof(how), args->how);
    return open_enter(SC_OPENAT2, args->dfd, args->filename, how[0], how[1]);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return open_exit(args->ret); }
#endif
