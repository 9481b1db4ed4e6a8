// SPDX-License-Identifier: Apache-2.0
//
// The eBPF tap (sys/ebpf.rs loads it; build.rs compiles it with clang for the bpf target).
//
// `egress` runs on the tcx egress hook of one measured interface. It looks at every packet the
// interface sends, but only a packet to a link-local target (the addresses in `config`, which the
// agent fills) costs more than a few loads and compares: it is counted per target class into
// per-CPU 10 ms steps (`steps`, a ring of them the agent folds into its sliding one-second peak),
// and a DNS packet (UDP or TCP port 53 to a resolver) is copied, its first 512 bytes from the IP
// header on, into the ring buffer `ring` for the agent's DNS layer. `ingress` copies replies from
// resolvers the same way. Both always return TC_ACT_UNSPEC (tcx's "next"): a packet's fate never
// changes. Ring-buffer losses are counted in `stats`.
//
// Self-contained on purpose: only the kernel's UAPI headers (linux-libc-dev), no libbpf headers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HTONS(x) __builtin_bswap16(x)
#else
#define HTONS(x) (x)
#endif
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

// Helper ids from enum bpf_func_id (linux/bpf.h).
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
                                  __u32 len) = (void *)BPF_FUNC_skb_load_bytes;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
                                  __u64 flags) = (void *)BPF_FUNC_ringbuf_output;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)BPF_FUNC_ringbuf_query;

// Keep in step with sys/ebpf.rs.
#define MAX_V4 16
#define MAX_V6 16
#define CLASSES 4           // target classes (dns, imds, ntp; one spare keeps indexing simple)
#define CLASS_DNS 0         // packets of this class go to the ring when they are DNS
#define STEPS 512           // 10 ms steps kept per CPU: 5.12 s between two reads at most
#define STEP_NS 10000000ULL // the width of one step
#define SNAPLEN 512         // bytes of a DNS packet copied, from the IP header on
#define RING_BYTES (1 << 22)
#define WAKE_AT (RING_BYTES / 4) // wake the reader early only when this much is waiting

struct config {
    __u64 clock_offset; // CLOCK_REALTIME - CLOCK_MONOTONIC in ns, kept current by the agent
    __u32 l2_len;       // bytes before the IP header: 14 on Ethernet, 0 on raw-IP devices
    __u32 n4;
    __u32 n6;
    __u32 v4[MAX_V4];   // network byte order
    __u8 class4[MAX_V4];
    __u8 v6[MAX_V6][16];
    __u8 class6[MAX_V6];
};

struct step {
    __u64 step; // realtime / STEP_NS of the counts below; a slot is reused STEPS steps later
    __u32 n[CLASSES];
};

struct record {
    __u64 ts;     // realtime ns
    __u16 len;    // bytes of data that follow
    __u8 outgoing;
    __u8 pad[5];
    __u8 data[SNAPLEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, STEPS);
    __type(key, __u32);
    __type(value, struct step);
} steps SEC(".maps");

// [0]: DNS packets the ring had no room for.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

// One record being assembled, per CPU (too big for the 512-byte stack).
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct record);
} scratch SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, RING_BYTES);
} ring SEC(".maps");

#define NEXT TC_ACT_UNSPEC

INLINE int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len) {
    return bpf_skb_load_bytes(skb, off, to, len);
}

// Offset of the transport header of an IPv4 packet at `l3`, or 0 when it carries none
// (a later fragment).
INLINE __u32 l4_v4(struct __sk_buff *skb, __u32 l3, __u8 *proto) {
    __u8 h[10];
    if (load(skb, l3, h, sizeof(h)))
        return 0;
    if (((h[6] & 0x1f) | h[7]) != 0) // fragment offset
        return 0;
    *proto = h[9];
    return l3 + (h[0] & 0x0f) * 4;
}

// Walks IPv6 extension headers (hop-by-hop, routing, destination options, fragment) to the
// transport header, as classify.rs does.
INLINE __u32 l4_v6(struct __sk_buff *skb, __u32 l3, __u8 *proto) {
    __u8 next;
    if (load(skb, l3 + 6, &next, 1))
        return 0;
    __u32 off = l3 + 40;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __u8 e[4];
        if (next != 0 && next != 43 && next != 60 && next != 44)
            break;
        if (load(skb, off, e, sizeof(e)))
            return 0;
        if (next == 44) {
            if (((e[2] << 8 | e[3]) & 0xfff8) != 0)
                return 0;
            off += 8;
        } else {
            off += (e[1] + 1) * 8;
        }
        next = e[0];
    }
    *proto = next;
    return off;
}

// Whether the packet at `l3` is UDP or TCP with port 53 (destination when outgoing, source
// when incoming).
INLINE int is_dns(struct __sk_buff *skb, __u32 l3, int v6, int outgoing) {
    __u8 proto = 0;
    __u32 l4 = v6 ? l4_v6(skb, l3, &proto) : l4_v4(skb, l3, &proto);
    if (!l4 || (proto != 17 && proto != 6))
        return 0;
    __u8 p[4];
    if (load(skb, l4, p, sizeof(p)))
        return 0;
    __u16 port = outgoing ? (p[2] << 8 | p[3]) : (p[0] << 8 | p[1]);
    return port == 53;
}

// Copies the packet from `l3` on, at most SNAPLEN bytes, into the ring.
INLINE void emit(struct __sk_buff *skb, __u32 l3, __u64 now, int outgoing) {
    __u32 zero = 0;
    struct record *r = bpf_map_lookup_elem(&scratch, &zero);
    if (!r)
        return;
    __u32 len = skb->len > l3 ? skb->len - l3 : 0;
    if (len > SNAPLEN)
        len = SNAPLEN;
    if (len < 1)
        return;
    if (load(skb, l3, r->data, len))
        return;
    r->ts = now;
    r->len = len;
    r->outgoing = outgoing;
    __u64 flags = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA) > WAKE_AT ? BPF_RB_FORCE_WAKEUP
                                                                       : BPF_RB_NO_WAKEUP;
    if (bpf_ringbuf_output(&ring, r, 16 + len, flags)) {
        __u64 *lost = bpf_map_lookup_elem(&stats, &zero);
        if (lost)
            *lost += 1;
    }
}

// The target class of a destination (or source) address, or -1. `a` points at the address.
INLINE int class_v4(struct config *c, __u32 a) {
    __u32 n = c->n4;
    for (int i = 0; i < MAX_V4; i++) {
        if (i >= n)
            break;
        if (c->v4[i] == a)
            return c->class4[i];
    }
    return -1;
}

INLINE int class_v6(struct config *c, const __u8 *a) {
    __u32 n = c->n6;
    const __u64 *x = (const __u64 *)a;
    for (int i = 0; i < MAX_V6; i++) {
        if (i >= n)
            break;
        const __u64 *t = (const __u64 *)c->v6[i];
        if (t[0] == x[0] && t[1] == x[1])
            return c->class6[i];
    }
    return -1;
}

// Finds the class of the packet's destination (outgoing) or source (incoming) address.
INLINE int classify(struct __sk_buff *skb, struct config *c, __u32 l3, int v6,
                                    int outgoing) {
    if (v6) {
        __u64 a[2];
        if (load(skb, l3 + (outgoing ? 24 : 8), a, 16))
            return -1;
        return class_v6(c, (const __u8 *)a);
    }
    __u32 a;
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    // The common case reads the address straight from the packet; a short linear part
    // falls back to a copy.
    if (c->l2_len == 14 && data + 14 + 20 <= end) {
        a = *(__u32 *)(data + 14 + (outgoing ? 16 : 12));
    } else if (load(skb, l3 + (outgoing ? 16 : 12), &a, 4)) {
        return -1;
    }
    return class_v4(c, a);
}

INLINE int tap(struct __sk_buff *skb, int outgoing) {
    int v6;
    if (skb->protocol == HTONS(ETH_P_IP))
        v6 = 0;
    else if (skb->protocol == HTONS(ETH_P_IPV6))
        v6 = 1;
    else
        return NEXT;
    __u32 zero = 0;
    struct config *c = bpf_map_lookup_elem(&config, &zero);
    if (!c)
        return NEXT;
    __u32 l3 = c->l2_len & 0xff;
    int class = classify(skb, c, l3, v6, outgoing);
    if (class < 0 || class >= CLASSES)
        return NEXT;
    __u64 now = bpf_ktime_get_ns() + c->clock_offset;
    if (outgoing) {
        __u64 step = now / STEP_NS;
        __u32 slot = step % STEPS;
        struct step *s = bpf_map_lookup_elem(&steps, &slot);
        if (s) {
            if (s->step != step) {
                s->step = step;
#pragma unroll
                for (int i = 0; i < CLASSES; i++)
                    s->n[i] = 0;
            }
            s->n[class & (CLASSES - 1)] += 1;
        }
    }
    if (class == CLASS_DNS && is_dns(skb, l3, v6, outgoing))
        emit(skb, l3, now, outgoing);
    return NEXT;
}

SEC("classifier/egress")
int egress(struct __sk_buff *skb) {
    return tap(skb, 1);
}

SEC("classifier/ingress")
int ingress(struct __sk_buff *skb) {
    return tap(skb, 0);
}

// Not attached by the agent: an empty program, the node-tax benchmark's measure of what the tcx
// hook alone costs every packet (see attach_baseline in sys/ebpf.rs).
SEC("classifier/baseline")
int baseline(struct __sk_buff *skb) {
    return NEXT;
}

char LICENSE[] SEC("license") = "Apache-2.0";
