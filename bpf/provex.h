/* provex: shared definitions for every probe.
 *
 * Rules for this directory: syscall tracepoints and BPF helpers only, never a
 * kernel struct field (the headers BCC compiles against may not match the
 * running kernel). Everything a probe reports comes from tracepoint arguments,
 * helpers, or the calling process's own memory.
 *
 * The loader (exporter/probes/loader.py) defines, with -D:
 *   SC_<NAME>       one id per syscall or kernel event (the decode table's index)
 *   CTR_<NAME>      counter slots; T_<TYPE> event type bits (both from layout.py)
 *   NSC             number of ids; NCTR number of counters per id
 *   PATH_MAX_LEN, ARGV_MAX, ARG_LEN, LPM_LEN
 *   MONITOR_ALL     report every cgroup (otherwise only monitored ones)
 *   PATH_FILTER     apply the open-family path prefix filter
 *   SEND_WRITES     open-family writes/creates always cross
 *   FLOOD_CONTROL   per-cgroup budgets: READ_INTERVAL_NS, READ_TOLERANCE_NS (reads of
 *                   non-sensitive paths), EVENT_INTERVAL_NS, EVENT_TOLERANCE_NS (the rest)
 *   WAKEUP_MASK     bit per event type: wake the consumer at once
 *   WAKEUP_BYTES    otherwise wake once a CPU has queued this many bytes
 *   HAVE_<TRACEPOINT> for tracepoints that exist on this kernel
 *
 * Every event starts with struct event_hdr; the per-family payloads follow.
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

/* CTR_* (counter slots), T_* (event type bits, T_CONTROL for control records)
 * and SC_* come from the loader as -D defines, generated from
 * exporter/probes/layout.py, so C and Python cannot disagree. */

#define BPF_RB_NO_WAKEUP_FLAG 1
#define BPF_RB_FORCE_WAKEUP_FLAG 2

#define PROVEX_AT_FDCWD -100
#define PROVEX_O_DIRECTORY 0200000
#define PROVEX_O_PATH 010000000
#define PROVEX_O_WRITE_MASK (01 | 02 | 0100 | 01000) /* O_WRONLY|O_RDWR|O_CREAT|O_TRUNC */
#define PROVEX_CLONE_THREAD 0x00010000

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
    u32 wake; /* set at entry: wake the consumer at once when the record is emitted */
    char comm[16];
};

struct open_ev {
    struct event_hdr h;
    s32 dirfd;
    u32 flags;
    u32 mode;
    u32 path_len; /* bytes of path, with its NUL */
    u64 user_path; /* the caller's pointer, to read again at exit if entry could not */
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

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
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

/* Fairness: one container's flood must not fill the ring for everyone (and an
 * attacker must not be able to make noise first to go unseen). Each cgroup has
 * two budgets, kept as GCRA theoretical arrival times: reads of non-sensitive
 * paths (FLOOD_READS), and every other event (FLOOD_EVENTS). Past its budget an
 * event is sampled away in the kernel, counted per syscall (CTR_SAMPLED) and per
 * cgroup (sampled_by_cgroup) so the agent can name the flooding container.
 * Control records, writes of reads' class and sensitive paths are never
 * sampled; the ring keeps one order, which the provenance graph needs. */
#define FLOOD_READS 0
#define FLOOD_EVENTS 1
struct budget {
    u64 tat[2];
};
BPF_HASH(budgets, u64, struct budget, 16384);
BPF_HASH(sampled_by_cgroup, u64, u64, 16384);
/* Set by the agent while it lags behind the ring (its oldest record waited too
 * long): every cgroup's read budget shrinks 16-fold (what is dropped then is
 * counted as CTR_SHED), so heavy readers stop filling the ring and decisive
 * events stop queueing behind bulk ones, while a container's occasional read
 * still passes. Reads of sensitive paths and of names the workload wrote or
 * linked (a download read by sed, a link read by cat: provenance) keep their
 * normal budget. */
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
    h->wake = 0;
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

/* Within the cgroup's budget for this class? (Approximate under races between
 * CPUs of one cgroup: a few events more or less, never a lost count.) */
static __always_inline int admitted(u16 sc, u64 cg, u32 class, int sheddable)
{
#ifdef FLOOD_CONTROL
    struct budget *b = budgets.lookup(&cg);
    if (!b) {
        struct budget fresh = {};
        budgets.insert(&cg, &fresh);
        b = budgets.lookup(&cg);
        if (!b)
            return 1; /* the table is full: no budget rather than no events */
    }
    u64 now = bpf_ktime_get_boot_ns();
    u64 interval = class == FLOOD_READS ? READ_INTERVAL_NS : EVENT_INTERVAL_NS;
    u64 tolerance = class == FLOOD_READS ? READ_TOLERANCE_NS : EVENT_TOLERANCE_NS;
    int tight = 0;
    if (sheddable) {
        u32 zero = 0;
        u32 *behind = pressure.lookup(&zero);
        tight = behind && *behind;
    }
    if (tight)
        interval <<= 4; /* the agent lags: a 16-fold smaller read budget for every cgroup */
    u32 slot = class & 1;
    u64 tat = b->tat[slot];
    if (tat < now)
        tat = now;
    if (tat - now > tolerance) {
        count(sc, tight ? CTR_SHED : CTR_SAMPLED);
        u64 *n = sampled_by_cgroup.lookup(&cg);
        if (n) {
            __sync_fetch_and_add(n, 1);
        } else {
            u64 one = 1;
            sampled_by_cgroup.update(&cg, &one);
        }
        return 0;
    }
    b->tat[slot] = tat + interval;
#endif
    return 1;
}

/* Copy a finished record into the ring buffer. Decisive types, and records
 * marked `wake` at entry (a read of a sensitive path: what file-access rules
 * alert on), wake the consumer at once; the rest are batched until this CPU
 * has WAKEUP_BYTES queued or the consumer's drain interval passes (each
 * wakeup costs the producer several microseconds). */
static __always_inline void emit(void *ev, u32 size, u16 sc, u32 type_bit)
{
    u64 flags = BPF_RB_NO_WAKEUP_FLAG;
    u32 zero = 0;
    u64 *queued = backlog.lookup(&zero);
    if ((WAKEUP_MASK & type_bit) || ((struct event_hdr *)ev)->wake) {
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

/* Does an open-family path cross to user space, and how? 0: no; 1: yes;
 * PATH_SENSITIVE: yes, and never sampled. Decided on the first LPM_LEN bytes,
 * read straight into the trie key, before the full path is copied, so a
 * filtered call never pays for the long copy. */
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
    return value ? 1 : 0;
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

#endif /* PROVEX_H */
