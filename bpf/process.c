/* Processes: execve/execveat (with argv), fork and exit for lineage, and
 * cgroup creation so user space can start monitoring a new container.
 *
 * A successful exec is decisive; a failed one is bulk (a loop of failing execs
 * must not use up the budget of the ones that run). The exec's record carries
 * what the kernel knows of the image now running (device+inode, the name the
 * kernel has for it: "memfd:x" for a memfd) and of the new process's stdin and
 * stdout (a pipe, a socket, a file): what `curl | sh` and fileless execution are
 * judged on. The container runtime is tracked here for every process, monitored
 * or not (runc starts outside the container's cgroup): by the identity of the
 * host's runtime binaries and by lineage (bpf/provex.h: runtime_tasks). */

#include "provex.h"

BPF_PERCPU_ARRAY(scratch_exec, struct exec_ev, 1);
BPF_HASH(pending_exec, u32, struct exec_ev, 4096);
/* clone flags by caller thread, to tell a new thread from a new process */
BPF_HASH(pending_clone, u32, u64, 16384);

static __always_inline int exec_enter(u16 sc, s32 dirfd, const char *filename,
                                      const char *const *argv, u32 flags)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    u32 zero = 0;
    struct exec_ev *e = scratch_exec.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->dirfd = dirfd;
    e->flags = flags;
    e->argc = 0;
    e->pad = 0;
    e->user_path = (u64)filename;
    __builtin_memset(&e->exe, 0, sizeof(e->exe) * 3);
    bpf_probe_read_user_str(e->path, sizeof(e->path), filename);
#pragma unroll
    for (int i = 0; i < ARGV_MAX; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
            break;
        bpf_probe_read_user_str(e->argv[i], ARG_LEN, arg);
        e->argc = i + 1;
    }
    u32 tid = current_tid();
    if (pending_exec.update(&tid, e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int exec_exit(long ret)
{
    u32 tid = current_tid();
    struct exec_ev *e = pending_exec.lookup(&tid);
    if (!e) {
#ifdef FILE_IDENTITY
        if (ret == 0) { /* not monitored, but maybe the runtime starting a container */
            struct file_id exe = {};
            char name[8] = {};
            track_runtime(&exe, name, sizeof(name));
        }
#endif
        return 0;
    }
    e->h.ret = ret;
    e->exe_name[0] = 0;
    if (ret == 0) {
        /* the new image's name; the old image's memory is gone */
        bpf_get_current_comm(&e->h.comm, sizeof(e->h.comm));
#ifdef FILE_IDENTITY
        e->h.flags = (e->h.flags & ~HDR_RUNTIME) | track_runtime(&e->exe, e->exe_name, sizeof(e->exe_name));
        file_id_of(fd_file(0), &e->stdin_file);
        file_id_of(fd_file(1), &e->stdout_file);
#endif
        if (!decisive_admitted(e->h.sc, e->h.cgroup_id, K_EXEC))
            goto done;
        e->h.flags |= HDR_DECISIVE;
    } else {
        reread_if_empty(e->path, sizeof(e->path), e->user_path);
        if (!admitted(e->h.sc, e->h.cgroup_id, FLOOD_EVENTS, SHED_WHEN_BEHIND))
            goto done;
    }
    /* argv is last: copy only the arguments there are */
    emit(e, BOUNDED_SIZE(offsetof(struct exec_ev, argv) + (u64)e->argc * ARG_LEN, sizeof(struct exec_ev)), e->h.sc, T_EXEC);
done:
    pending_exec.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return exec_enter(SC_EXECVE, PROVEX_AT_FDCWD, args->filename, args->argv, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return exec_exit(args->ret); }

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return exec_enter(SC_EXECVEAT, args->fd, args->filename, args->argv, args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_execveat) { return exec_exit(args->ret); }

#ifdef HAVE_SYS_ENTER_CLONE
TRACEPOINT_PROBE(syscalls, sys_enter_clone)
{
    u32 tid = current_tid();
    u64 flags = args->clone_flags;
    pending_clone.update(&tid, &flags);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_clone)
{
    u32 tid = current_tid();
    pending_clone.delete(&tid);
    return 0;
}
#endif

#ifdef HAVE_SYS_ENTER_CLONE3
TRACEPOINT_PROBE(syscalls, sys_enter_clone3)
{
    u32 tid = current_tid();
    u64 flags = 0; /* struct clone_args starts with u64 flags (uapi) */
    bpf_probe_read_user(&flags, sizeof(flags), args->uargs);
    pending_clone.update(&tid, &flags);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_clone3)
{
    u32 tid = current_tid();
    pending_clone.delete(&tid);
    return 0;
}
#endif

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 tid = current_tid();
    u64 *flags = pending_clone.lookup(&tid);
    int thread = flags && (*flags & PROVEX_CLONE_THREAD);
    u32 parent = current_tgid();
    if (!thread && runtime_tasks.lookup(&parent)) { /* the runtime's children are the runtime's */
        u32 child = args->child_pid;
        u8 one = 1;
        runtime_tasks.update(&child, &one);
    }
    u64 cg;
    if (!enter_filter(SC_FORK, &cg))
        return 0;
    if (thread) {
        count(SC_FORK, CTR_FILTERED_OTHER); /* a thread, not a process */
        return 0;
    }
    if (!admitted(SC_FORK, cg, FLOOD_EVENTS, SHED_WHEN_BEHIND))
        return 0;
    struct proc_ev e = {};
    fill_hdr(&e.h, SC_FORK, sizeof(e), cg);
    e.child_pid = args->child_pid;
    emit(&e, sizeof(e), SC_FORK, T_FORK);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    int leader = (u32)pid_tgid == (u32)(pid_tgid >> 32);
    u64 cg;
    if (!enter_filter(SC_EXIT, &cg)) {
        if (leader) {
            u32 tgid = pid_tgid >> 32;
            runtime_tasks.delete(&tgid);
        }
        return 0;
    }
    if (!leader) {
        count(SC_EXIT, CTR_FILTERED_OTHER); /* a thread ending, not the process */
        return 0;
    }
    if (admitted(SC_EXIT, cg, FLOOD_EVENTS, SHED_WHEN_BEHIND)) {
        struct proc_ev e = {};
        fill_hdr(&e.h, SC_EXIT, sizeof(e), cg);
        emit(&e, sizeof(e), SC_EXIT, T_EXIT);
    }
    u32 tgid = pid_tgid >> 32;
    runtime_tasks.delete(&tgid);
    return 0;
}

BPF_PERCPU_ARRAY(scratch_cgroup, struct cgroup_ev, 1);

/* Not filtered: user space decides whether a new cgroup is a container. Decisive: a
 * container's first events need it, never behind a flood. */
TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    count(SC_CGROUP_MKDIR, CTR_SEEN);
    u32 zero = 0;
    struct cgroup_ev *e = scratch_cgroup.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, SC_CGROUP_MKDIR, sizeof(*e), bpf_get_current_cgroup_id());
    e->h.flags |= HDR_DECISIVE;
    e->id = args->id;
    e->level = args->level;
    e->hierarchy = args->root;
    TP_DATA_LOC_READ_STR(e->path, path, sizeof(e->path));
    emit(e, sizeof(*e), SC_CGROUP_MKDIR, T_CONTROL);
    return 0;
}

/* A cgroup removed: its container is gone, and what the agent keeps of it can go too. */
#ifdef HAVE_CGROUP_RMDIR
TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    count(SC_CGROUP_RMDIR, CTR_SEEN);
    u32 zero = 0;
    struct cgroup_ev *e = scratch_cgroup.lookup(&zero);
    if (!e)
        return 0;
    u64 gone = args->id;
    judged_cgroups.delete(&gone); /* a cgroup id is never reused, but the map is bounded */
    fill_hdr(&e->h, SC_CGROUP_RMDIR, sizeof(*e), bpf_get_current_cgroup_id());
    e->h.flags |= HDR_DECISIVE;
    e->id = args->id;
    e->level = args->level;
    e->hierarchy = args->root;
    TP_DATA_LOC_READ_STR(e->path, path, sizeof(e->path));
    emit(e, sizeof(*e), SC_CGROUP_RMDIR, T_CONTROL);
    return 0;
}
#endif
