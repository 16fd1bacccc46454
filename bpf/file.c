/* Open family: open, openat, openat2, creat, open_by_handle_at, and memfd_create
 * (an anonymous file: its fd is where fileless code is written). The path is
 * read at entry (the caller's memory as the syscall was given it), the fd or
 * errno at exit.
 *
 * Two judgements. At entry, by spelling: a path under a configured prefix, a
 * relative or unjudgeable one, a write, a directory opened for its fd cross.
 * At exit, by the file itself (FILE_IDENTITY): whatever the spelling, an open
 * that returned a sensitive file (by device+inode, its directory, or its file
 * system) or one the workload wrote crosses, so /tmp/../host/etc/shadow, a
 * link the image shipped, a dup'd dirfd, /proc/<pid>/root, a bind mount or a
 * hard link reach the same verdict as /host/etc/shadow. */

#include "provex.h"

BPF_PERCPU_ARRAY(scratch_open, struct open_ev, 1);
BPF_HASH(pending_open, u32, struct open_ev, 16384);

/* open_ev.verdict at entry: VERDICT_PATH or VERDICT_SENSITIVE_PATH (send), or
 * one of these markers: judge at the exit, by the file, and drop unless it is
 * sensitive or learned (JUDGE_AT_EXIT: the spelling was not interesting), or
 * unless it is sensitive (JUDGE_SAMPLED: past the cgroup's read budget, so a
 * container cannot spend its budget on noise and then read a secret through an
 * alias whose spelling is merely interesting). */
#define JUDGE_AT_EXIT 0xffff
#define JUDGE_SAMPLED 0xfffe

static __always_inline int open_enter(u16 sc, s32 dirfd, const char *filename, u64 flags, u64 mode,
                                      u64 resolve)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    u8 interest = path_interest(filename, flags);
    u32 judge = 0;
    if (!interest) {
#ifdef FILE_IDENTITY
        judge = JUDGE_AT_EXIT;
#else
        count(sc, CTR_FILTERED_PATH);
        return 0;
#endif
    }
    /* Reads are what floods are made of; writes share the cgroup's event budget.
     * Sensitive reads are decisive and budgeted at the exit, per kind. */
    if (!judge && interest != PATH_SENSITIVE) {
        int read = !(flags & PROVEX_O_WRITE_MASK);
        if (!admitted(sc, cg, read ? FLOOD_READS : FLOOD_EVENTS, read && interest != PATH_LEARNED)) {
#ifdef FILE_IDENTITY
            if (!read)
                return 0;
            judge = JUDGE_SAMPLED;
#else
            return 0;
#endif
        }
    }
    u32 zero = 0;
    struct open_ev *e = scratch_open.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->dirfd = dirfd;
    e->flags = flags;
    e->mode = mode;
    e->resolve = resolve;
    e->user_path = (u64)filename;
    __builtin_memset(&e->file, 0, sizeof(e->file));
    e->repeats = 0;
    e->path_len = 0;
    e->path[0] = 0;
    if (judge) {
        e->verdict = judge; /* the path is read at the exit, if the file earns it */
    } else {
        e->verdict = interest == PATH_SENSITIVE ? VERDICT_SENSITIVE_PATH : VERDICT_PATH;
        long n = bpf_probe_read_user_str(e->path, sizeof(e->path), filename);
        e->path_len = n > 0 ? n : 0;
    }
    u32 tid = current_tid();
    if (pending_open.update(&tid, e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

/* A sensitive read: decisive, once per REPEAT_INTERVAL_NS per process and file
 * (the repeats in between are counted and cross with the next one), within the
 * cgroup's budget for file kinds. 0: drop it. */
static __always_inline int sensitive_send(struct open_ev *e)
{
#ifdef FILE_IDENTITY
    if (e->file.ino && !(e->flags & PROVEX_O_WRITE_MASK)) {
        struct repeat_key key = {.tgid = e->h.pid, .dev = e->file.dev, .ino = e->file.ino};
        u64 now = bpf_ktime_get_boot_ns();
        struct repeat_val *seen = sensitive_reads.lookup(&key);
        if (seen && now - seen->last_ns < REPEAT_INTERVAL_NS) {
            __sync_fetch_and_add(&seen->repeats, 1);
            count(e->h.sc, CTR_REPEATED);
            stat_add(e->h.cgroup_id, 2);
            return 0;
        }
        struct repeat_val fresh = {.last_ns = now};
        if (seen)
            e->repeats = seen->repeats;
        sensitive_reads.update(&key, &fresh);
    }
#endif
    if (!decisive_admitted(e->h.sc, e->h.cgroup_id, K_FILE))
        return 0;
    e->h.flags |= HDR_DECISIVE | HDR_WAKE;
    return 1;
}

static __always_inline int open_exit(long ret)
{
    u32 tid = current_tid();
    struct open_ev *e = pending_open.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    u32 entry = e->verdict;
    int judge = entry == JUDGE_AT_EXIT || entry == JUDGE_SAMPLED;
#ifdef FILE_IDENTITY
    if (ret >= 0) {
        u32 by_file = judge_file(fd_file(ret), &e->file);
        if (by_file && by_file != VERDICT_LEARNED) {
            e->verdict = by_file;
        } else if (judge) {
            /* Not sensitive. A file the workload wrote, read back through any
             * name, still crosses as a bulk read (never shed: provenance); so
             * does a file of a container not registered yet (judged in user
             * space once it is). */
            u32 bulk = by_file;
            if (!bulk && (e->file.mode & PROVEX_S_IFMT) == PROVEX_S_IFREG &&
                !judged_cgroups.lookup(&e->h.cgroup_id))
                bulk = VERDICT_UNJUDGED;
            if (entry == JUDGE_AT_EXIT && !bulk)
                count(e->h.sc, CTR_FILTERED_PATH);
            if (entry != JUDGE_AT_EXIT || !bulk || !admitted(e->h.sc, e->h.cgroup_id, FLOOD_READS, 0))
                goto drop;
            e->verdict = bulk;
        }
        if (judge) /* the name as given, read now that the file earned a record */
            e->path_len = reread_if_empty(e->path, sizeof(e->path), e->user_path);
        if (e->flags & PROVEX_O_WRITE_MASK)
            learn_file(&e->file);
    } else if (judge) {
        if (entry == JUDGE_AT_EXIT)
            count(e->h.sc, CTR_FILTERED_PATH);
        goto drop;
    }
#endif
    if (e->path[0] == 0) {
        e->path_len = reread_if_empty(e->path, sizeof(e->path), e->user_path);
        /* the entry check could not see the path; apply it now */
        if (e->verdict == VERDICT_PATH && e->path[0] == '/' &&
            !path_interest((const char *)e->user_path, e->flags)) {
            count(e->h.sc, CTR_FILTERED_PATH);
            goto drop;
        }
    }
    if (e->verdict >= VERDICT_SENSITIVE_PATH && e->verdict <= VERDICT_SENSITIVE_DIR && !sensitive_send(e))
        goto drop;
    if (ret >= 0 && (e->flags & PROVEX_O_WRITE_MASK))
        learn_name(e->path, e->path_len);
    emit(e, BOUNDED_SIZE(offsetof(struct open_ev, path) + e->path_len, sizeof(struct open_ev)), e->h.sc, T_OPEN);
drop:
    pending_open.delete(&tid);
    return 0;
}

#ifdef HAVE_SYS_ENTER_OPEN
TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return open_enter(SC_OPEN, PROVEX_AT_FDCWD, args->filename, args->flags, args->mode, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return open_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_CREAT
/* creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode) */
TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    return open_enter(SC_CREAT, PROVEX_AT_FDCWD, args->pathname, 0100 | 01 | 01000, args->mode, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_creat) { return open_exit(args->ret); }
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return open_enter(SC_OPENAT, args->dfd, args->filename, args->flags, args->mode, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return open_exit(args->ret); }

#ifdef HAVE_SYS_ENTER_OPENAT2
/* openat2 passes flags, mode and resolve in a struct open_how in the caller's memory. */
TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[3] = {};
    bpf_probe_read_user(&how, sizeof(how), args->how);
    return open_enter(SC_OPENAT2, args->dfd, args->filename, how[0], how[1], how[2]);
}
TRACEPOINT_PROBE(syscalls, sys_exit_openat2) { return open_exit(args->ret); }
#endif

/* open_by_handle_at(mount_fd, handle, flags): a file opened by its handle, with
 * no path at all (the "shocker" escape reads host files this way). Always
 * decisive, failed calls too (probing handles is the attack); judged by the file
 * it returned. */
#ifdef HAVE_SYS_ENTER_OPEN_BY_HANDLE_AT
TRACEPOINT_PROBE(syscalls, sys_enter_open_by_handle_at)
{
    u64 cg;
    if (!enter_filter(SC_OPEN_BY_HANDLE_AT, &cg))
        return 0;
    u32 zero = 0;
    struct open_ev *e = scratch_open.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, SC_OPEN_BY_HANDLE_AT, sizeof(*e), cg);
    e->dirfd = args->mountdirfd;
    e->flags = args->flags;
    e->mode = 0;
    e->resolve = 0;
    e->user_path = 0;
    __builtin_memset(&e->file, 0, sizeof(e->file));
    e->repeats = 0;
    e->verdict = VERDICT_PATH;
    e->path_len = 0;
    e->path[0] = 0;
    u32 tid = current_tid();
    if (pending_open.update(&tid, e))
        count(SC_OPEN_BY_HANDLE_AT, CTR_LOST_PENDING);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_open_by_handle_at)
{
    u32 tid = current_tid();
    struct open_ev *e = pending_open.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = args->ret;
#ifdef FILE_IDENTITY
    if (args->ret >= 0) {
        u32 by_file = judge_file(fd_file(args->ret), &e->file);
        if (by_file && by_file != VERDICT_LEARNED)
            e->verdict = by_file;
    }
#endif
    if (decisive_admitted(SC_OPEN_BY_HANDLE_AT, e->h.cgroup_id, K_FILE)) {
        e->h.flags |= HDR_DECISIVE;
        emit(e, offsetof(struct open_ev, path), SC_OPEN_BY_HANDLE_AT, T_OPEN);
    }
    pending_open.delete(&tid);
    return 0;
}
#endif

/* memfd_create(name, flags): an anonymous file, reported as an open-family
 * record whose path is "memfd:NAME" (the name the kernel gives it), so the
 * provenance graph can follow what is written into it and then executed. */
#ifdef HAVE_SYS_ENTER_MEMFD_CREATE
TRACEPOINT_PROBE(syscalls, sys_enter_memfd_create)
{
    u64 cg;
    if (!enter_filter(SC_MEMFD_CREATE, &cg) || !admitted(SC_MEMFD_CREATE, cg, FLOOD_EVENTS, 0))
        return 0;
    u32 zero = 0;
    struct open_ev *e = scratch_open.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, SC_MEMFD_CREATE, sizeof(*e), cg);
    e->dirfd = PROVEX_AT_FDCWD;
    e->flags = 02 | 0100; /* O_RDWR|O_CREAT: a new file, open for writing */
    e->mode = args->flags; /* MFD_* */
    e->resolve = 0;
    e->user_path = 0;
    __builtin_memset(&e->file, 0, sizeof(e->file));
    e->repeats = 0;
    e->verdict = VERDICT_PATH;
    __builtin_memcpy(e->path, "memfd:", 6);
    long n = bpf_probe_read_user_str(e->path + 6, sizeof(e->path) - 6, args->uname);
    e->path_len = n > 0 ? n + 6 : 7;
    if (n <= 0)
        e->path[6] = 0;
    u32 tid = current_tid();
    if (pending_open.update(&tid, e))
        count(SC_MEMFD_CREATE, CTR_LOST_PENDING);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create)
{
    u32 tid = current_tid();
    struct open_ev *e = pending_open.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = args->ret;
#ifdef FILE_IDENTITY
    if (args->ret >= 0) {
        file_id_of(fd_file(args->ret), &e->file);
        learn_file(&e->file);
    }
#endif
    emit(e, BOUNDED_SIZE(offsetof(struct open_ev, path) + e->path_len, sizeof(struct open_ev)), SC_MEMFD_CREATE, T_OPEN);
    pending_open.delete(&tid);
    return 0;
}
#endif

/* io_uring: an open submitted to a ring never passes the open tracepoints. Its
 * submission is noted per request; at its completion (in the submitting
 * process or its io-wq worker, which share its fd table) the fd it returned is
 * judged by the file, and an open-family record is sent, decisive: opening
 * files through io_uring from a container is itself worth a rule. */
#ifdef HAVE_IO_URING_SUBMIT_REQ
#define IORING_OP_OPENAT 18
#define IORING_OP_OPENAT2 28
struct uring_open {
    u64 ts;
    u32 opcode;
    u32 pad;
};
BPF_TABLE("lru_hash", u64, struct uring_open, uring_opens, 4096); /* a cancelled request is evicted */

TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    if (args->opcode != IORING_OP_OPENAT && args->opcode != IORING_OP_OPENAT2)
        return 0;
    u64 cg;
    if (!enter_filter(SC_IO_URING_OPEN, &cg))
        return 0;
    u64 req = (u64)args->req;
    struct uring_open u = {.ts = bpf_ktime_get_boot_ns(), .opcode = args->opcode};
    if (uring_opens.update(&req, &u))
        count(SC_IO_URING_OPEN, CTR_LOST_PENDING);
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    u64 req = (u64)args->req;
    struct uring_open *u = uring_opens.lookup(&req);
    if (!u)
        return 0;
    u32 opcode = u->opcode;
    u64 ts = u->ts;
    uring_opens.delete(&req);
    u64 cg = bpf_get_current_cgroup_id();
    if (!decisive_admitted(SC_IO_URING_OPEN, cg, K_FILE))
        return 0;
    u32 zero = 0;
    struct open_ev *e = scratch_open.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, SC_IO_URING_OPEN, sizeof(*e), cg);
    e->h.ts = ts;
    e->h.ret = args->res;
    e->h.flags |= HDR_DECISIVE;
    e->dirfd = 0;
    e->flags = 0;
    e->mode = opcode;
    e->resolve = 0;
    e->user_path = 0;
    __builtin_memset(&e->file, 0, sizeof(e->file));
    e->repeats = 0;
    e->verdict = VERDICT_PATH;
    e->path_len = 0;
    e->path[0] = 0;
#ifdef FILE_IDENTITY
    /* res 0 may be a direct descriptor (a slot in the ring's own table), not fd 0 */
    if (args->res > 0) {
        u32 by_file = judge_file(fd_file(args->res), &e->file);
        if (by_file && by_file != VERDICT_LEARNED)
            e->verdict = by_file;
    }
#endif
    emit(e, offsetof(struct open_ev, path), SC_IO_URING_OPEN, T_OPEN);
    return 0;
}
#endif
