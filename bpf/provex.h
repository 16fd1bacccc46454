/* provex: shared definitions for every probe.
 *
 * Rules for this directory: syscall tracepoints and BPF helpers; no struct layout
 * is ever taken from a kernel header (the headers BCC compiles against may be
 * another kernel's). Where a probe must judge a file by what it is rather than by
 * how it was spelled (the opened file's device and inode, its directory, the
 * executed image), it reads the running kernel's structures at offsets the loader
 * found in that kernel's own BTF (/sys/kernel/btf/vmlinux) and passes as OFF_*
 * defines (exporter/probes/btf.py): FILE_IDENTITY is defined only then. Without
 * BTF the probes judge by the spelled path alone, and the agent says so.
 *
 * The loader (exporter/probes/loader.py) defines, with -D:
 *   SC_<NAME>       one id per syscall or kernel event (the decode table's index)
 *   CTR_<NAME>      counter slots; T_<TYPE> event type bits (both from layout.py)
 *   K_<KIND>        decisive kinds, each with its own per-cgroup budget; NKINDS
 *   NSC             number of ids; NCTR number of counters per id
 *   PATH_MAX_LEN, ARGV_MAX, ARG_LEN, LPM_LEN, EXE_NAME_LEN
 *   MONITOR_ALL     report every cgroup (otherwise only monitored ones)
 *   PATH_FILTER     apply the open-family path prefix filter
 *   SEND_WRITES     open-family writes/creates always cross
 *   FLOOD_CONTROL   per-cgroup budgets: READ_INTERVAL_NS, READ_TOLERANCE_NS (reads of
 *                   non-sensitive paths), EVENT_INTERVAL_NS, EVENT_TOLERANCE_NS (other
 *                   bulk events), DECISIVE_INTERVAL_NS, DECISIVE_TOLERANCE_NS (each
 *                   decisive kind)
 *   REPEAT_INTERVAL_NS  a process's repeated sensitive reads of one file cross once per
 *   WAKEUP_MASK     bit per event type: wake the consumer at once
 *   WAKEUP_BYTES    otherwise wake once a CPU has queued this many bytes
 *   FILE_IDENTITY and OFF_*  the kernel's own field offsets (BTF), see above
 *   HAVE_<TRACEPOINT> for tracepoints that exist on this kernel
 *
 * Two ring buffers. `events` carries bulk records (reads, writes, forks, exits,
 * chdirs, links, failed execs...): a flood fills it, and what does not fit is
 * sampled, shed or lost, counted by cause. `decisive` carries what decides an
 * alert (successful exec, the mount family, setns, unshare, chroot and
 * pivot_root, IP connects and accepts, open_by_handle_at, io_uring opens, the
 * first sensitive read of a file by a process, new cgroups): no bulk record can
 * take its room, and each cgroup has a budget per decisive kind; past it the
 * kernel summarizes (count, first and last) instead of dropping, and the agent
 * turns each summary into an event of its own. User space merges the two rings
 * by time.
 *
 * Every record starts with struct event_hdr; the per-family payloads follow.
 * Enter and exit are paired per thread through pending_* maps. They are plain
 * hashes (an LRU hash costs about 1 us more per monitored call here); an entry
 * orphaned by a thread that died inside the syscall, or by execve from a
 * non-leader thread changing its tid, is swept by the agent
 * (Probes.sweep_pending).
 *
 * Records are as long as their content: a path or argv is the last field and
 * only its used bytes are copied to the ring buffer (its size was most of the
 * cost of a monitored open: 344 bytes per record made a monitored open loop
 * 2.5x slower than one of ~100).
 */
#ifndef PROVEX_H
#define PROVEX_H

#include <uapi/linux/ptrace.h>

/* CTR_* (counter slots), T_* (event type bits, T_CONTROL for control records),
 * K_* (decisive kinds) and SC_* come from the loader as -D defines, generated
 * from exporter/probes/layout.py, so C and Python cannot disagree. */

#define BPF_RB_NO_WAKEUP_FLAG 1
#define BPF_RB_FORCE_WAKEUP_FLAG 2

#define PROVEX_AT_FDCWD -100
#define PROVEX_O_DIRECTORY 0200000
#define PROVEX_O_PATH 010000000
#define PROVEX_O_WRITE_MASK (01 | 02 | 0100 | 01000) /* O_WRONLY|O_RDWR|O_CREAT|O_TRUNC */
#define PROVEX_CLONE_THREAD 0x00010000
#define PROVEX_S_IFMT 0170000
#define PROVEX_S_IFDIR 0040000
#define PROVEX_S_IFREG 0100000

/* event_hdr.flags */
#define HDR_WAKE 1      /* wake the consumer at once when emitted */
#define HDR_DECISIVE 2  /* goes to the decisive ring */
#define HDR_RUNTIME 4   /* the acting process is the container runtime (by identity and lineage) */

/* open_ev.verdict: why an open-family record crossed */
#define VERDICT_PATH 0            /* its spelling matched a configured prefix, or could not be judged */
#define VERDICT_SENSITIVE_PATH 1  /* its spelling matched a sensitive prefix */
#define VERDICT_SENSITIVE_FILE 2  /* the opened file is a registered sensitive file (device+inode) */
#define VERDICT_SENSITIVE_DIR 3   /* it lies in a registered sensitive directory (parent or grandparent) */
#define VERDICT_LEARNED 4         /* the workload wrote this file (device+inode) in this run */
#define VERDICT_UNJUDGED 5        /* its container's sensitive set is not registered yet */

/* A record size the verifier can prove is at most `max`: the clamp is written
 * in BPF assembly on the very register the helper call uses (in C, clang may
 * clamp a copy and pass the unclamped original, which the verifier refuses). */
#define BOUNDED_SIZE(size, max)                                                                   \
    ({                                                                                           \
        u64 __size = (size);                                                                     \
        asm volatile("if %[s] <= %[m] goto +1\n\t%[s] = %[m]\n\t" : [s] "+r"(__size) : [m] "i"(max)); \
        __size;                                                                                  \
    })

struct event_hdr {
    u64 ts;        /* bpf_ktime_get_boot_ns() at syscall entry */
    u64 cgroup_id; /* cgroup v2 id of the caller */
    s64 ret;       /* syscall return value, set at exit */
    u32 pid;
    u32 tid;
    u32 uid;
    u32 gid;
    u16 sc;   /* SC_* id */
    u16 size; /* bytes of the whole record */
    u32 flags; /* HDR_* */
    char comm[16];
};

/* What a file is, as the kernel knows it: not how it was named. */
struct file_id {
    u64 ino;
    u32 dev;  /* the kernel's dev_t of its super block: MAJOR << 20 | MINOR */
    u32 mode; /* i_mode: type and permissions (S_IFREG, S_IFIFO, S_IFSOCK, ...) */
    u32 gen;  /* i_generation: tells apart the files that reuse an inode number, or a tmpfs's
               * anonymous device number once another tmpfs has it */
    u32 pad;
};

struct open_ev {
    struct event_hdr h;
    s32 dirfd;
    u32 flags;
    u32 mode;
    u32 path_len;  /* bytes of path, with its NUL */
    u64 user_path; /* the caller's pointer, to read again at exit if entry could not */
    u64 resolve;   /* openat2: RESOLVE_* */
    struct file_id file; /* the opened file (ret >= 0, FILE_IDENTITY); chdir/chroot: the new directory */
    u32 verdict;   /* VERDICT_*: why it crossed */
    u32 repeats;   /* sensitive reads of this file by this process folded since the last one sent */
    char path[PATH_MAX_LEN];
};

/* Names a process creates or moves: symlink (old = the link's content), link
 * and rename (old = the existing name, through olddirfd). */
struct link_ev {
    struct event_hdr h;
    s32 olddirfd;
    s32 newdirfd;
    u32 flags;
    u32 new_len; /* bytes of newpath, with its NUL */
    u64 user_old;
    u64 user_new;
    char oldpath[PATH_MAX_LEN];
    char newpath[PATH_MAX_LEN];
};

struct exec_ev {
    struct event_hdr h;
    s32 dirfd;
    u32 flags;
    u32 argc;
    u32 pad;
    u64 user_path;
    struct file_id exe;   /* the image now running (successful exec, FILE_IDENTITY) */
    struct file_id stdin_file;  /* what its stdin and stdout are (a pipe, a socket, a file) */
    struct file_id stdout_file;
    char exe_name[EXE_NAME_LEN]; /* the image's name as the kernel has it ("memfd:x" for a memfd) */
    char path[PATH_MAX_LEN];
    char argv[ARGV_MAX][ARG_LEN];
};

/* The mount family: mount(2) and the new mount API. Which slot means what
 * per syscall is in the decode table (exporter/probes/layout.py). */
struct mount_ev {
    struct event_hdr h;
    s32 fd;
    s32 dirfd;
    u64 flags;
    char fstype[32];
    char source[PATH_MAX_LEN];
    char target[PATH_MAX_LEN];
};

struct ns_ev {
    struct event_hdr h;
    s32 fd;
    u32 pad;
    u64 nstype; /* setns: nstype; unshare: flags */
};

struct connect_ev {
    struct event_hdr h;
    s32 fd;
    u16 family;
    u16 port; /* host byte order */
    u8 addr[16];
    struct file_id file; /* the socket (FILE_IDENTITY): a process's stdin may be this socket */
    char path[108]; /* AF_UNIX sun_path */
    u32 pad;
};

/* dup2/dup3 onto a standard stream: what a process's stdin/stdout/stderr now name. */
struct dup_ev {
    struct event_hdr h;
    s32 oldfd;
    s32 newfd;
    u32 flags;
    u32 pad;
};

struct proc_ev {
    struct event_hdr h;
    u32 child_pid;
    u32 pad;
};

struct cgroup_ev {
    struct event_hdr h;
    u64 id;
    s32 level;
    u32 hierarchy; /* the cgroup root's id: 0 is cgroup v2 */
    char path[PATH_MAX_LEN];
};

struct lpm_key {
    u32 prefixlen;
    char path[LPM_LEN];
};

/* A file's identity as a map key. */
struct id_key {
    u32 dev;
    u32 pad;
    u64 ino;
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_RINGBUF_OUTPUT(decisive, DECISIVE_PAGES);
BPF_PERCPU_ARRAY(counters, u64, NSC * NCTR);
BPF_PERCPU_ARRAY(backlog, u64, 1);
/* cgroup ids to report (a container's own cgroup or a parent such as kubepods). */
BPF_HASH(monitored_cgroups, u64, u8, 65536);
/* cache of the verdict for a cgroup id; the loader clears it when the set changes
 * (a plain hash: cheaper than LRU on every lookup; when full, verdicts are just
 * computed again) */
BPF_HASH(verdicts, u64, u8, 16384);
/* Value 1: a configured prefix or a host mount (set by the agent); value 2: a
 * name the workload wrote, linked or renamed (set here, pruned by the agent);
 * value 3: a sensitive path (a secret, or one reached through a host mount),
 * never sampled away by the flood budget. */
BPF_LPM_TRIE(path_prefixes, struct lpm_key, u8, LPM_ENTRIES);
#define PATH_LEARNED 2
#define PATH_SENSITIVE 3

/* Identity-based judgement (FILE_IDENTITY), kept current by the agent
 * (exporter/enrich/identity.py): sensitive files (value 1) and directories whose
 * entries, and their entries, are sensitive (value 2: a token volume's root covers
 * the token kubelet rotates into a new ..timestamp directory); the host's container
 * runtime binaries. Files the workload writes are learned here by the kernel. A
 * whole file system is never registered: a tmpfs's anonymous device number is
 * reused by the next tmpfs. */
#define ID_FILE 1
#define ID_DIR 2
BPF_HASH(sensitive_ids, struct id_key, u8, 65536);
BPF_TABLE("lru_hash", struct id_key, u8, learned_ids, 65536);
BPF_HASH(runtime_ids, struct id_key, u8, 1024);
BPF_HASH(runtime_inos, u64, u8, 1024);
/* Processes of the container runtime: a process running a runtime binary (by
 * identity), its children, and its own re-executions of itself (runc's sealed
 * memfd copy, or one with the same inode number) until it executes anything
 * else. Kept by the kernel from fork, exec and exit; seeded by the agent. */
BPF_HASH(runtime_tasks, u32, u8, 65536);
/* Cgroups whose view of the sensitive set the agent has registered (a container's
 * host mounts and token), or that need none (the host's). Until then the kernel
 * cannot judge a container's files by identity, so its reads cross to user space
 * (as bulk, within the read budget) rather than being dropped: a container that
 * opens a host file through an alias in its first milliseconds, before the agent
 * saw it start, is judged all the same. Removed by the kernel at cgroup_rmdir. */
BPF_HASH(judged_cgroups, u64, u8, 65536);

/* A process's repeated sensitive reads of one file: the first crosses, the next
 * ones within REPEAT_INTERVAL_NS are counted, and the count crosses with the
 * next one sent. */
struct repeat_key {
    u32 tgid;
    u32 dev;
    u64 ino;
};
struct repeat_val {
    u64 last_ns;
    u32 repeats;
    u32 pad;
};
BPF_TABLE("lru_hash", struct repeat_key, struct repeat_val, sensitive_reads, 65536);

/* Fairness: one container's flood must not fill a ring for everyone (and an
 * attacker must not be able to make noise first to go unseen). Each cgroup has
 * budgets, kept as GCRA theoretical arrival times: reads of non-sensitive paths
 * (FLOOD_READS), other bulk events (FLOOD_EVENTS), and one per decisive kind.
 * Past a bulk budget an event is sampled away in the kernel; past a decisive
 * one it is summarized. Both are counted per syscall and per cgroup (cgroup_stats)
 * so the agent can name the container that floods, and only that one. */
#define FLOOD_READS 0
#define FLOOD_EVENTS 1
#define FLOOD_DECISIVE 2 /* + K_*: one slot per decisive kind */
#define NSLOTS (FLOOD_DECISIVE + NKINDS)
struct budget {
    u64 tat[NSLOTS];
};
BPF_HASH(budgets, u64, struct budget, 16384);
/* Per cgroup: bulk events sampled past its own budget, decisive events
 * summarized past its own budget, sensitive reads folded as repeats. (Reads shed
 * while the agent lagged are not the cgroup's doing and are counted per syscall
 * only.) */
struct cgroup_stat {
    u64 sampled;
    u64 summarized;
    u64 repeats;
};
BPF_HASH(cgroup_stats, u64, struct cgroup_stat, 16384);
/* Decisive events past a cgroup's budget for their kind, summarized. */
struct summary_key {
    u64 cgroup_id;
    u32 kind;
    u32 pad;
};
struct summary_val {
    u64 count;
    u64 first_ts;
    u64 last_ts;
    u32 first_pid;
    u32 last_pid;
    u16 first_sc;
    u16 last_sc;
    u32 pad;
};
BPF_HASH(summaries, struct summary_key, struct summary_val, 16384);
/* Set by the agent while it lags behind the bulk ring (its oldest record waited
 * too long): every cgroup's read budget shrinks 16-fold (what is dropped then is
 * counted as CTR_SHED), so heavy readers stop filling the ring. Reads of names
 * the workload wrote or linked keep their normal budget. */
BPF_ARRAY(pressure, u32, 1);

static __always_inline void count(u32 sc, u32 ctr)
{
    u32 idx = sc * NCTR + ctr;
    if (idx >= NSC * NCTR)
        return;
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

#define MAX_CG_LEVEL 10

static __always_inline int cgroup_monitored(u64 cg)
{
#ifdef MONITOR_ALL
    return 1;
#else
    u8 *cached = verdicts.lookup(&cg);
    if (cached)
        return *cached;
    u8 hit = monitored_cgroups.lookup(&cg) ? 1 : 0;
#pragma unroll
    for (int level = 1; level <= MAX_CG_LEVEL; level++) {
        if (hit)
            break;
        u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
        if (ancestor == 0 || ancestor == cg)
            break;
        if (monitored_cgroups.lookup(&ancestor))
            hit = 1;
    }
    verdicts.update(&cg, &hit);
    return hit;
#endif
}

static __always_inline u32 current_tid(void)
{
    return (u32)bpf_get_current_pid_tgid();
}

static __always_inline u32 current_tgid(void)
{
    return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline u32 runtime_flag(u32 tgid)
{
    return runtime_tasks.lookup(&tgid) ? HDR_RUNTIME : 0;
}

static __always_inline void fill_hdr(struct event_hdr *h, u16 sc, u16 size, u64 cg)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->ts = bpf_ktime_get_boot_ns();
    h->cgroup_id = cg;
    h->ret = 0;
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->sc = sc;
    h->size = size;
    h->flags = runtime_flag(h->pid);
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* Entry check shared by every syscall probe: count it, drop other cgroups. */
static __always_inline int enter_filter(u16 sc, u64 *cg)
{
    count(sc, CTR_SEEN);
    *cg = bpf_get_current_cgroup_id();
    if (!cgroup_monitored(*cg)) {
        count(sc, CTR_FILTERED_CGROUP);
        return 0;
    }
    return 1;
}

static __always_inline void stat_add(u64 cg, u32 which)
{
    struct cgroup_stat *s = cgroup_stats.lookup(&cg);
    if (!s) {
        struct cgroup_stat fresh = {};
        cgroup_stats.insert(&cg, &fresh);
        s = cgroup_stats.lookup(&cg);
        if (!s)
            return;
    }
    if (which == 0)
        __sync_fetch_and_add(&s->sampled, 1);
    else if (which == 1)
        __sync_fetch_and_add(&s->summarized, 1);
    else
        __sync_fetch_and_add(&s->repeats, 1);
}

/* Within the cgroup's budget for this slot? (Approximate under races between
 * CPUs of one cgroup: a few events more or less, never a lost count.) The
 * caller decides what happens past it (sample, or summarize). */
static __always_inline int within_budget(u64 cg, u32 slot, int sheddable, int *tight)
{
#ifdef FLOOD_CONTROL
    if (slot >= NSLOTS)
        return 1;
    struct budget *b = budgets.lookup(&cg);
    if (!b) {
        struct budget fresh = {};
        budgets.insert(&cg, &fresh);
        b = budgets.lookup(&cg);
        if (!b)
            return 1; /* the table is full: no budget rather than no events */
    }
    u64 now = bpf_ktime_get_boot_ns();
    u64 interval = DECISIVE_INTERVAL_NS;
    u64 tolerance = DECISIVE_TOLERANCE_NS;
    if (slot == FLOOD_READS) {
        interval = READ_INTERVAL_NS;
        tolerance = READ_TOLERANCE_NS;
    } else if (slot == FLOOD_EVENTS) {
        interval = EVENT_INTERVAL_NS;
        tolerance = EVENT_TOLERANCE_NS;
    }
    if (sheddable) {
        u32 zero = 0;
        u32 *behind = pressure.lookup(&zero);
        *tight = behind && *behind;
    }
    if (*tight)
        interval <<= 4; /* the agent lags: a 16-fold smaller budget for every cgroup */
    u64 tat = b->tat[slot];
    if (tat < now)
        tat = now;
    if (tat - now > tolerance)
        return 0;
    b->tat[slot] = tat + interval;
#endif
    return 1;
}

/* A bulk event within its cgroup's budget? Past it, it is sampled away (or shed
 * while the agent lags) and counted.
 * SHED_WHEN_BEHIND: while the agent lags, the budget is 16-fold smaller for every
 * cgroup. Non-sensitive reads and the process lifecycle (forks, exits, failed
 * execs, unix connects) take it: otherwise a flooder at its full budget fills the
 * shared ring and everyone's records are lost. Writes, links, chdirs, dups and
 * memfds keep theirs: they carry a file's origin or a path's meaning. */
#define SHED_WHEN_BEHIND 1
static __always_inline int admitted(u16 sc, u64 cg, u32 class, int sheddable)
{
    int tight = 0;
    if (within_budget(cg, class, sheddable, &tight))
        return 1;
    if (tight) {
        count(sc, CTR_SHED);
    } else {
        count(sc, CTR_SAMPLED);
        stat_add(cg, 0);
    }
    return 0;
}

/* A decisive event within its cgroup's budget for its kind? Past it, the kernel
 * keeps a summary (how many, the first and the last) that the agent reads and
 * turns into an event: a flood of decisive syscalls is itself reported. */
static __always_inline int decisive_admitted(u16 sc, u64 cg, u32 kind)
{
    int tight = 0;
    if (within_budget(cg, FLOOD_DECISIVE + kind, 0, &tight))
        return 1;
    count(sc, CTR_SUMMARIZED);
    stat_add(cg, 1);
    struct summary_key key = {.cgroup_id = cg, .kind = kind};
    u64 now = bpf_ktime_get_boot_ns();
    u32 pid = current_tgid();
    struct summary_val *s = summaries.lookup(&key);
    if (s) {
        __sync_fetch_and_add(&s->count, 1);
        s->last_ts = now;
        s->last_pid = pid;
        s->last_sc = sc;
    } else {
        struct summary_val fresh = {.count = 1, .first_ts = now, .last_ts = now,
                                    .first_pid = pid, .last_pid = pid, .first_sc = sc, .last_sc = sc};
        summaries.update(&key, &fresh);
    }
    return 0;
}

/* Copy a finished record into its ring buffer. Decisive records, and records
 * marked HDR_WAKE, wake the consumer at once; the rest are batched until this
 * CPU has WAKEUP_BYTES queued or the consumer's drain interval passes (each
 * wakeup costs the producer several microseconds). */
static __always_inline void emit(void *ev, u32 size, u16 sc, u32 type_bit)
{
    struct event_hdr *h = ev;
    u32 zero = 0;
    u64 *queued = backlog.lookup(&zero);
    if (h->flags & HDR_DECISIVE) {
        if (decisive.ringbuf_output(ev, size, BPF_RB_FORCE_WAKEUP_FLAG) == 0)
            count(sc, CTR_EMITTED);
        else
            count(sc, CTR_LOST_RINGBUF);
        return;
    }
    u64 flags = BPF_RB_NO_WAKEUP_FLAG;
    if ((WAKEUP_MASK & type_bit) || (h->flags & HDR_WAKE)) {
        flags = BPF_RB_FORCE_WAKEUP_FLAG;
        if (queued)
            *queued = 0;
    } else if (queued) {
        *queued += size;
        if (*queued >= WAKEUP_BYTES) {
            flags = BPF_RB_FORCE_WAKEUP_FLAG;
            *queued = 0;
        }
    }
    if (events.ringbuf_output(ev, size, flags) == 0)
        count(sc, CTR_EMITTED);
    else
        count(sc, CTR_LOST_RINGBUF);
}

/* The page holding a path may not be resident when the syscall starts (a
 * string in a binary's data that nothing touched yet): the read then fails
 * and yields "". By the exit the kernel has faulted it in to do the work, so
 * a path that came back empty is read again there. */
static __always_inline u32 reread_if_empty(char *path, u32 size, u64 user_path)
{
    long n = 0;
    if (path[0] == 0 && user_path)
        n = bpf_probe_read_user_str(path, size, (const char *)user_path);
    return n > 0 ? n : 0;
}

/* Can the kernel judge a path by its spelling? Not when it climbs or repeats
 * itself ("/..", "/.", "//") or is longer than the part the trie sees: such a
 * path crosses, and user space resolves it (a read of /tmp/../etc/x must not be
 * dropped because it starts with /tmp/). */
static __always_inline int spelling_judgeable(const struct lpm_key *key)
{
#pragma unroll
    for (int i = 0; i < LPM_LEN - 1; i++) {
        char c = key->path[i];
        if (c == 0)
            return 1;
        if (c == '/' && (key->path[i + 1] == '.' || key->path[i + 1] == '/'))
            return 0;
    }
    return key->path[LPM_LEN - 1] == 0;
}

/* Does an open-family path cross to user space, and how? 0: no; 1: yes;
 * PATH_LEARNED; PATH_SENSITIVE: yes, and never sampled. Decided on the first
 * LPM_LEN bytes, read straight into the trie key, before the full path is
 * copied, so a filtered call never pays for the long copy. A read the spelling
 * leaves out may still cross at the exit, judged by the file it opened. */
static __always_inline u8 path_interest(const char *user_path, u64 flags)
{
#ifdef PATH_FILTER
    struct lpm_key key = {};
    key.prefixlen = LPM_LEN * 8;
    bpf_probe_read_user_str(key.path, sizeof(key.path), user_path);
    if (key.path[0] != '/')
        return 1; /* relative: the kernel cannot judge it, user space can */
    u8 *value = path_prefixes.lookup(&key);
    if (value && (*value == PATH_SENSITIVE || *value == PATH_LEARNED))
        return *value;
#ifdef SEND_WRITES
    if (flags & PROVEX_O_WRITE_MASK)
        return 1;
#endif
    /* A directory opened for its fd: a later openat/execveat/fchdir resolves
     * through it, so user space must know what it names. */
    if (flags & (PROVEX_O_DIRECTORY | PROVEX_O_PATH))
        return 1;
    if (value)
        return 1;
    return spelling_judgeable(&key) ? 0 : 1;
#else
    return 1;
#endif
}

/* A name the workload just wrote, linked or renamed: let later reads of it
 * cross the path filter, so a file's provenance (downloaded, then copied,
 * then read through a link) is not cut by the filter. Done here, not by the
 * agent, because the read often follows within a millisecond. NOEXIST keeps
 * configured prefixes as they are; the agent prunes the oldest learned ones. */
static __always_inline void learn_name(const char *path, u32 len)
{
#ifdef PATH_FILTER
    if (len < 2 || path[0] != '/')
        return;
    struct lpm_key key = {};
    u32 n = len - 1;
    if (n > LPM_LEN)
        n = LPM_LEN;
    key.prefixlen = n * 8;
    __builtin_memcpy(key.path, path, LPM_LEN);
    u8 learned = 2;
    path_prefixes.insert(&key, &learned);
#endif
}

/* ---------------------------------------------------------------- identity */

#ifdef FILE_IDENTITY
/* A pointer field at a BTF offset (0 if unreadable). */
static __always_inline void *kptr(const void *base, u64 off)
{
    void *p = NULL;
    if (base)
        bpf_probe_read_kernel(&p, sizeof(p), (const char *)base + off);
    return p;
}

/* The struct file behind one of the current process's fds, or NULL. */
static __always_inline void *fd_file(long fd)
{
    if (fd < 0)
        return NULL;
    void *task = (void *)bpf_get_current_task();
    void *fdt = kptr(kptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt)
        return NULL;
    u32 max_fds = 0;
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), (const char *)fdt + OFF_FDT_MAX_FDS);
    if ((u64)fd >= max_fds)
        return NULL;
    return kptr(kptr(fdt, OFF_FDT_FD), (u64)fd * sizeof(void *));
}

static __always_inline int inode_id(const void *inode, struct file_id *id)
{
    if (!inode)
        return 0;
    u16 mode = 0;
    u32 dev = 0;
    bpf_probe_read_kernel(&id->ino, sizeof(id->ino), (const char *)inode + OFF_INODE_INO);
    bpf_probe_read_kernel(&id->gen, sizeof(id->gen), (const char *)inode + OFF_INODE_GENERATION);
    bpf_probe_read_kernel(&mode, sizeof(mode), (const char *)inode + OFF_INODE_MODE);
    bpf_probe_read_kernel(&dev, sizeof(dev), (const char *)kptr(inode, OFF_INODE_SB) + OFF_SB_DEV);
    id->mode = mode;
    id->dev = dev;
    return 1;
}

static __always_inline int file_id_of(const void *file, struct file_id *id)
{
    return file ? inode_id(kptr(file, OFF_FILE_INODE), id) : 0;
}

/* The image the current process runs (its mm's exe_file), and that file's name. */
static __always_inline void *exe_file(void)
{
    void *task = (void *)bpf_get_current_task();
    return kptr(kptr(task, OFF_TASK_MM), OFF_MM_EXE_FILE);
}

static __always_inline void file_name(const void *file, char *out, u32 size)
{
    void *name = kptr(kptr(file, OFF_FILE_DENTRY), OFF_DENTRY_NAME);
    if (name)
        bpf_probe_read_kernel_str(out, size, name);
}

/* The current process's working directory (or root), as an identity. */
static __always_inline int fs_dir_id(u64 off_dentry, struct file_id *id)
{
    void *task = (void *)bpf_get_current_task();
    void *dentry = kptr(kptr(task, OFF_TASK_FS), off_dentry);
    return inode_id(kptr(dentry, OFF_DENTRY_INODE), id);
}

/* What the opened file is to provex: VERDICT_SENSITIVE_* (by device+inode, or by the
 * directory it lies in), VERDICT_LEARNED (written by the workload), or 0. Fills id. */
static __always_inline u32 judge_file(const void *file, struct file_id *id)
{
    if (!file_id_of(file, id))
        return 0;
    if ((id->mode & PROVEX_S_IFMT) == PROVEX_S_IFDIR)
        return 0; /* listing a directory is not reading a secret */
    struct id_key key = {.dev = id->dev, .ino = id->ino};
    if (sensitive_ids.lookup(&key))
        return VERDICT_SENSITIVE_FILE;
    if (learned_ids.lookup(&key))
        return VERDICT_LEARNED;
    /* Its directory and that directory's parent: d_parent stays on one super
     * block, so the device is the file's. */
    void *dentry = kptr(file, OFF_FILE_DENTRY);
#pragma unroll
    for (int up = 0; up < 2; up++) {
        dentry = kptr(dentry, OFF_DENTRY_PARENT);
        if (!dentry)
            break;
        bpf_probe_read_kernel(&key.ino, sizeof(key.ino),
                              (const char *)kptr(dentry, OFF_DENTRY_INODE) + OFF_INODE_INO);
        u8 *kind = sensitive_ids.lookup(&key);
        if (kind && *kind == ID_DIR)
            return VERDICT_SENSITIVE_DIR;
    }
    return 0;
}

static __always_inline void learn_file(const struct file_id *id)
{
    struct id_key key = {.dev = id->dev, .ino = id->ino};
    u8 one = 1;
    learned_ids.update(&key, &one);
}

/* Keep runtime_tasks true to the image the current process now runs. */
static __always_inline u32 track_runtime(struct file_id *exe, char *name, u32 name_len)
{
    void *file = exe_file();
    u32 tgid = current_tgid();
    if (!file_id_of(file, exe))
        return runtime_flag(tgid);
    file_name(file, name, name_len);
    struct id_key key = {.dev = exe->dev, .ino = exe->ino};
    int runtime = runtime_ids.lookup(&key) != NULL;
    if (!runtime && runtime_tasks.lookup(&tgid)) {
        /* The runtime re-executing itself: a sealed memfd copy (runc 1.1) or a
         * copy that keeps its inode number (an overlay over the binary). */
        runtime = runtime_inos.lookup(&exe->ino) != NULL ||
                  (name[0] == 'm' && name[1] == 'e' && name[2] == 'm' && name[3] == 'f' &&
                   name[4] == 'd' && name[5] == ':');
    }
    if (runtime) {
        u8 one = 1;
        runtime_tasks.update(&tgid, &one);
        return HDR_RUNTIME;
    }
    runtime_tasks.delete(&tgid);
    return 0;
}
#endif /* FILE_IDENTITY */

#endif /* PROVEX_H */
