/* The mount family: mount(2) and the new mount API (fsopen, fsconfig,
 * fsmount, move_mount, open_tree), which per-event engines often miss. All
 * decisive, failed calls too (an attempt is what the rules judge), within the
 * cgroup's budget for the mount kind. */

#include "provex.h"

BPF_PERCPU_ARRAY(scratch_mount, struct mount_ev, 1);
BPF_HASH(pending_mount, u32, struct mount_ev, 4096);

static __always_inline struct mount_ev *mount_begin(u16 sc)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return NULL;
    u32 zero = 0;
    struct mount_ev *e = scratch_mount.lookup(&zero);
    if (!e)
        return NULL;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->fd = 0;
    e->dirfd = 0;
    e->flags = 0;
    e->fstype[0] = 0;
    e->source[0] = 0;
    e->target[0] = 0;
    return e;
}

static __always_inline int mount_park(struct mount_ev *e)
{
    u32 tid = current_tid();
    if (pending_mount.update(&tid, e))
        count(e->h.sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int mount_exit(long ret)
{
    u32 tid = current_tid();
    struct mount_ev *e = pending_mount.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    if (decisive_admitted(e->h.sc, e->h.cgroup_id, K_MOUNT)) {
        e->h.flags |= HDR_DECISIVE;
        emit(e, sizeof(*e), e->h.sc, T_MOUNT);
    }
    pending_mount.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    struct mount_ev *e = mount_begin(SC_MOUNT);
    if (!e)
        return 0;
    e->flags = args->flags;
    bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), args->type);
    bpf_probe_read_user_str(e->source, sizeof(e->source), args->dev_name);
    bpf_probe_read_user_str(e->target, sizeof(e->target), args->dir_name);
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_mount) { return mount_exit(args->ret); }

#ifdef HAVE_SYS_ENTER_FSOPEN
TRACEPOINT_PROBE(syscalls, sys_enter_fsopen)
{
    struct mount_ev *e = mount_begin(SC_FSOPEN);
    if (!e)
        return 0;
    e->flags = args->flags;
    bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), args->_fs_name);
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fsopen) { return mount_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_FSCONFIG
/* fsconfig(fd, cmd, key, value, aux): key goes to fstype's slot, a string
 * value (FSCONFIG_SET_STRING=1, SET_PATH=3, SET_PATH_EMPTY=4) to source. */
TRACEPOINT_PROBE(syscalls, sys_enter_fsconfig)
{
    struct mount_ev *e = mount_begin(SC_FSCONFIG);
    if (!e)
        return 0;
    e->fd = args->fd;
    e->flags = args->cmd;
    e->dirfd = args->aux;
    bpf_probe_read_user_str(e->fstype, sizeof(e->fstype), args->_key);
    if (args->cmd == 1 || args->cmd == 3 || args->cmd == 4)
        bpf_probe_read_user_str(e->source, sizeof(e->source), args->_value);
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fsconfig) { return mount_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_FSMOUNT
TRACEPOINT_PROBE(syscalls, sys_enter_fsmount)
{
    struct mount_ev *e = mount_begin(SC_FSMOUNT);
    if (!e)
        return 0;
    e->fd = args->fs_fd;
    e->flags = ((u64)args->attr_flags << 32) | args->flags;
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_fsmount) { return mount_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_MOVE_MOUNT
TRACEPOINT_PROBE(syscalls, sys_enter_move_mount)
{
    struct mount_ev *e = mount_begin(SC_MOVE_MOUNT);
    if (!e)
        return 0;
    e->fd = args->from_dfd;
    e->dirfd = args->to_dfd;
    e->flags = args->flags;
    bpf_probe_read_user_str(e->source, sizeof(e->source), args->from_pathname);
    bpf_probe_read_user_str(e->target, sizeof(e->target), args->to_pathname);
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_move_mount) { return mount_exit(args->ret); }
#endif

#ifdef HAVE_SYS_ENTER_OPEN_TREE
TRACEPOINT_PROBE(syscalls, sys_enter_open_tree)
{
    struct mount_ev *e = mount_begin(SC_OPEN_TREE);
    if (!e)
        return 0;
    e->dirfd = args->dfd;
    e->flags = args->flags;
    bpf_probe_read_user_str(e->source, sizeof(e->source), args->filename);
    return mount_park(e);
}
TRACEPOINT_PROBE(syscalls, sys_exit_open_tree) { return mount_exit(args->ret); }
#endif
