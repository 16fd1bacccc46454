/* Filesystem context: what a path really names depends on the caller's
 * current and root directory, on the directory fd it passes, and on the links
 * and renames that came before. These probes report each of them, as given
 * (user space resolves them in the provenance graph):
 *   chdir, fchdir, chroot, pivot_root      -> the open_ev layout (path, or fd in dirfd)
 *   symlink(at), link(at), rename(at)(2)   -> link_ev (old name, new name, their dirfds)
 *   dup2, dup3 onto fd 0-2                 -> dup_ev (a shell's redirect: `sed ... > out`) */

#include "provex.h"

BPF_PERCPU_ARRAY(scratch_ctx, struct open_ev, 1);
BPF_HASH(pending_ctx, u32, struct open_ev, 4096);
BPF_PERCPU_ARRAY(scratch_link, struct link_ev, 1);
BPF_HASH(pending_link, u32, struct link_ev, 4096);

static __always_inline int ctx_enter(u16 sc, s32 fd, const char *path)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    /* chroot and pivot_root are decisive (budgeted at the exit); chdir is bulk */
    if (sc != SC_CHROOT && sc != SC_PIVOT_ROOT && !admitted(sc, cg, FLOOD_EVENTS, 0))
        return 0;
    u32 zero = 0;
    struct open_ev *e = scratch_ctx.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->dirfd = fd;
    e->flags = 0;
    e->mode = 0;
    e->resolve = 0;
    e->user_path = (u64)path;
    __builtin_memset(&e->file, 0, sizeof(e->file));
    e->verdict = VERDICT_PATH;
    e->repeats = 0;
    e->path_len = 0;
    e->path[0] = 0;
    if (path) {
        long n = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
        e->path_len = n > 0 ? n : 0;
    }
    u32 tid = current_tid();
    if (pending_ctx.update(&tid, e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int ctx_exit(long ret, u32 type_bit)
{
    u32 tid = current_tid();
    struct open_ev *e = pending_ctx.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    if (e->path[0] == 0 && e->user_path)
        e->path_len = reread_if_empty(e->path, sizeof(e->path), e->user_path);
#ifdef FILE_IDENTITY
    /* what the new directory is: a later openat or fchdir through an fd of it
     * (dup'd, passed, inherited) names the same identity */
    if (ret == 0)
        fs_dir_id(type_bit == T_CHDIR ? OFF_FS_PWD_DENTRY : OFF_FS_ROOT_DENTRY, &e->file);
#endif
    if (type_bit == T_CHROOT) {
        if (!decisive_admitted(e->h.sc, e->h.cgroup_id, K_MOUNT))
            goto done;
        e->h.flags |= HDR_DECISIVE;
    }
    emit(e, BOUNDED_SIZE(offsetof(struct open_ev, path) + e->path_len, sizeof(struct open_ev)), e->h.sc, type_bit);
done:
    pending_ctx.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_chdir) { return ctx_enter(SC_CHDIR, PROVEX_AT_FDCWD, args->filename); }
TRACEPOINT_PROBE(syscalls, sys_exit_chdir) { return ctx_exit(args->ret, T_CHDIR); }
TRACEPOINT_PROBE(syscalls, sys_enter_fchdir) { return ctx_enter(SC_FCHDIR, args->fd, NULL); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchdir) { return ctx_exit(args->ret, T_CHDIR); }
TRACEPOINT_PROBE(syscalls, sys_enter_chroot) { return ctx_enter(SC_CHROOT, PROVEX_AT_FDCWD, args->filename); }
TRACEPOINT_PROBE(syscalls, sys_exit_chroot) { return ctx_exit(args->ret, T_CHROOT); }
/* pivot_root(new_root, put_old): new_root is what matters for resolution. */
TRACEPOINT_PROBE(syscalls, sys_enter_pivot_root)
{
    return ctx_enter(SC_PIVOT_ROOT, PROVEX_AT_FDCWD, args->new_root);
}
TRACEPOINT_PROBE(syscalls, sys_exit_pivot_root) { return ctx_exit(args->ret, T_CHROOT); }

static __always_inline int link_enter(u16 sc, s32 olddirfd, const char *oldname, s32 newdirfd,
                                      const char *newname, u32 flags)
{
    u64 cg;
    if (!enter_filter(sc, &cg) || !admitted(sc, cg, FLOOD_EVENTS, 0))
        return 0;
    u32 zero = 0;
    struct link_ev *e = scratch_link.lookup(&zero);
    if (!e)
        return 0;
    fill_hdr(&e->h, sc, sizeof(*e), cg);
    e->olddirfd = olddirfd;
    e->newdirfd = newdirfd;
    e->flags = flags;
    e->user_old = (u64)oldname;
    e->user_new = (u64)newname;
    e->oldpath[0] = 0;
    bpf_probe_read_user_str(e->oldpath, sizeof(e->oldpath), oldname);
    long n = bpf_probe_read_user_str(e->newpath, sizeof(e->newpath), newname);
    e->new_len = n > 0 ? n : 0;
    u32 tid = current_tid();
    if (pending_link.update(&tid, e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int link_exit(long ret, u32 type_bit)
{
    u32 tid = current_tid();
    struct link_ev *e = pending_link.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    reread_if_empty(e->oldpath, sizeof(e->oldpath), e->user_old);
    if (e->newpath[0] == 0)
        e->new_len = reread_if_empty(e->newpath, sizeof(e->newpath), e->user_new);
    if (ret == 0)
        learn_name(e->newpath, e->new_len);
    emit(e, BOUNDED_SIZE(offsetof(struct link_ev, newpath) + e->new_len, sizeof(struct link_ev)), e->h.sc, type_bit);
    pending_link.delete(&tid);
    return 0;
}

#ifdef HAVE_SYS_ENTER_SYMLINK
TRACEPOINT_PROBE(syscalls, sys_enter_symlink)
{
    return link_enter(SC_SYMLINK, PROVEX_AT_FDCWD, args->oldname, PROVEX_AT_FDCWD, args->newname, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_symlink) { return link_exit(args->ret, T_LINK); }
#endif
TRACEPOINT_PROBE(syscalls, sys_enter_symlinkat)
{
    return link_enter(SC_SYMLINKAT, PROVEX_AT_FDCWD, args->oldname, args->newdfd, args->newname, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_symlinkat) { return link_exit(args->ret, T_LINK); }

#ifdef HAVE_SYS_ENTER_LINK
TRACEPOINT_PROBE(syscalls, sys_enter_link)
{
    return link_enter(SC_LINK, PROVEX_AT_FDCWD, args->oldname, PROVEX_AT_FDCWD, args->newname, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_link) { return link_exit(args->ret, T_LINK); }
#endif
TRACEPOINT_PROBE(syscalls, sys_enter_linkat)
{
    return link_enter(SC_LINKAT, args->olddfd, args->oldname, args->newdfd, args->newname, args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_linkat) { return link_exit(args->ret, T_LINK); }

#ifdef HAVE_SYS_ENTER_RENAME
TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    return link_enter(SC_RENAME, PROVEX_AT_FDCWD, args->oldname, PROVEX_AT_FDCWD, args->newname, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_rename) { return link_exit(args->ret, T_RENAME); }
#endif
#ifdef HAVE_SYS_ENTER_RENAMEAT
TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    return link_enter(SC_RENAMEAT, args->olddfd, args->oldname, args->newdfd, args->newname, 0);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat) { return link_exit(args->ret, T_RENAME); }
#endif
TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    return link_enter(SC_RENAMEAT2, args->olddfd, args->oldname, args->newdfd, args->newname, args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_renameat2) { return link_exit(args->ret, T_RENAME); }

/* dup2/dup3: only onto the standard streams (a redirect for the command a shell runs);
 * the many other dups (a shell saving and restoring its own fds) are counted and dropped. */
BPF_HASH(pending_dup, u32, struct dup_ev, 4096);

static __always_inline int dup_enter(u16 sc, s32 oldfd, s32 newfd, u32 flags)
{
    u64 cg;
    if (!enter_filter(sc, &cg))
        return 0;
    if (newfd < 0 || newfd > 2) {
        count(sc, CTR_FILTERED_OTHER);
        return 0;
    }
    if (!admitted(sc, cg, FLOOD_EVENTS, 0))
        return 0;
    struct dup_ev e = {};
    fill_hdr(&e.h, sc, sizeof(e), cg);
    e.oldfd = oldfd;
    e.newfd = newfd;
    e.flags = flags;
    u32 tid = current_tid();
    if (pending_dup.update(&tid, &e))
        count(sc, CTR_LOST_PENDING);
    return 0;
}

static __always_inline int dup_exit(long ret)
{
    u32 tid = current_tid();
    struct dup_ev *e = pending_dup.lookup(&tid);
    if (!e)
        return 0;
    e->h.ret = ret;
    emit(e, sizeof(*e), e->h.sc, T_DUP);
    pending_dup.delete(&tid);
    return 0;
}

#ifdef HAVE_SYS_ENTER_DUP2
TRACEPOINT_PROBE(syscalls, sys_enter_dup2) { return dup_enter(SC_DUP2, args->oldfd, args->newfd, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_dup2) { return dup_exit(args->ret); }
#endif
TRACEPOINT_PROBE(syscalls, sys_enter_dup3)
{
    return dup_enter(SC_DUP3, args->oldfd, args->newfd, args->flags);
}
TRACEPOINT_PROBE(syscalls, sys_exit_dup3) { return dup_exit(args->ret); }
