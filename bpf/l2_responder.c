// l2announcer ARP responder: a tc ingress (clsact, direct-action) program.
//
// It answers an ARP request in the kernel when {target IP, ingress ifindex} is a key of
// cilium_l2_responder_v4, rewriting the request in place into the reply and sending it back out
// of the interface it came in on; everything else is left to the kernel (and to any tc filter
// after ours: "pass" is TC_ACT_UNSPEC, which continues the filter chain and then delivers).
//
// One compiled object serves every interface: the interface's MAC comes from the per-ifindex
// map l2announcer_ifaces, filled by the loader at attach time, instead of a compile-time
// define per device (compiling once keeps agent start fast).
//
// Checks, in addition to the reference (cilium bpf/lib/arp.h): protocol type IPv4, lengths 6/4,
// the Ethernet source is neither our own MAC nor a group address, and the frame carries no
// (hardware-accelerated) VLAN tag. The agent's liveness stamp must be younger than the renew
// deadline (not the lease duration), so a wedged holder is silent before any other node can
// acquire its lease.
//
// The map sizes are passed as -D defines, so that bpf/maps.py holds the one definition of them.
// The maps are plain tables here: bpf/program.py pins them under the configured BPF root, or
// loads the program against the maps already pinned there (so counters survive restarts).
// bcc's BPF_TABLE_PINNED cannot do the latter without CAP_SYS_ADMIN: it reopens a pinned map by
// its id (BPF_MAP_GET_FD_BY_ID), which the agent is not granted.

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>

#if !defined(L2_RESPONDER_MAX_ENTRIES) || !defined(L2_IFACES_MAX_ENTRIES)
#error "the map sizes (bpf/maps.py) must be defined"
#endif

#define PASS TC_ACT_UNSPEC

#define ARPHRD_ETHER_BE 0x0100   /* htons(1) */
#define ETH_P_IP_BE 0x0008       /* htons(0x0800) */
#define ETH_P_ARP_BE 0x0608      /* htons(0x0806) */
#define ARPOP_REQUEST_BE 0x0100  /* htons(1) */
#define ARPOP_REPLY_BE 0x0200    /* htons(2) */

#define LIVENESS_STAMP 0   /* CLOCK_MONOTONIC ns of the agent's last stamp; 0 = never */
#define LIVENESS_MAX_AGE 1 /* ns; answers stop when the stamp is older; 0 = never answer */

struct l2_responder_v4_key {
    __u32 ip4;     /* network order */
    __u32 ifindex; /* host order */
};

struct l2_responder_v4_stats {
    __u64 responses_sent;
};

struct l2announcer_iface {
    __u8 mac[6];
    __u8 pad[2];
};

BPF_F_TABLE("hash", struct l2_responder_v4_key, struct l2_responder_v4_stats,
            cilium_l2_responder_v4, L2_RESPONDER_MAX_ENTRIES, BPF_F_NO_PREALLOC);
BPF_TABLE("array", __u32, __u64, l2announcer_liveness, 2);
BPF_F_TABLE("hash", __u32, struct l2announcer_iface, l2announcer_ifaces,
            L2_IFACES_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/* Ethernet header + Ethernet/IPv4 ARP body: the 42 bytes we read and rewrite. */
struct arp_frame {
    __u8 h_dest[6];
    __u8 h_source[6];
    __u16 h_proto;
    __u16 ar_hrd;
    __u16 ar_pro;
    __u8 ar_hln;
    __u8 ar_pln;
    __u16 ar_op;
    __u8 ar_sha[6];
    __u8 ar_sip[4];
    __u8 ar_tha[6];
    __u8 ar_tip[4];
} __attribute__((packed));

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
           a[5] == b[5];
}

static __always_inline int mac_is_broadcast(const __u8 *a)
{
    return (a[0] & a[1] & a[2] & a[3] & a[4] & a[5]) == 0xff;
}

static __always_inline int agent_is_live(void)
{
    __u32 stamp_idx = LIVENESS_STAMP, max_idx = LIVENESS_MAX_AGE;
    __u64 *stamp = l2announcer_liveness.lookup(&stamp_idx);
    __u64 *max_age = l2announcer_liveness.lookup(&max_idx);
    if (!stamp || !max_age)
        return 0;
    __u64 s = *stamp, m = *max_age;
    if (s == 0 || m == 0)
        return 0;
    /* A stamp from the future wraps to a huge age: treated as stale, the safe side. */
    return bpf_ktime_get_ns() - s <= m;
}

int l2_responder(struct __sk_buff *skb)
{
    struct arp_frame f;

    /* The kernel moved an 802.1Q/802.1ad tag out of the frame before tc ingress: the request
     * belongs to a VLAN, not to this interface's untagged segment. */
    if (skb->vlan_present)
        return PASS;
    /* Fails when the frame is shorter than 42 bytes: truncated frames go to the kernel. */
    if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
        return PASS;
    if (f.h_proto != ETH_P_ARP_BE || f.ar_op != ARPOP_REQUEST_BE || f.ar_hrd != ARPHRD_ETHER_BE ||
        f.ar_pro != ETH_P_IP_BE || f.ar_hln != 6 || f.ar_pln != 4)
        return PASS;
    /* A group source address is never a station we could answer; it would turn the reply
     * into a broadcast. */
    if (f.h_source[0] & 1)
        return PASS;

    __u32 ifindex = skb->ingress_ifindex;
    struct l2announcer_iface *iface = l2announcer_ifaces.lookup(&ifindex);
    if (!iface)
        return PASS;
    __u8 mac[6];
    __builtin_memcpy(mac, iface->mac, 6);
    if (!mac_is_broadcast(f.h_dest) && !mac_eq(f.h_dest, mac))
        return PASS;
    /* Our own frame looped back (or a spoofer using our MAC): answering it would talk to
     * ourselves. */
    if (mac_eq(f.h_source, mac))
        return PASS;

    struct l2_responder_v4_key key = {};
    __builtin_memcpy(&key.ip4, f.ar_tip, 4);
    key.ifindex = ifindex;
    struct l2_responder_v4_stats *stats = cilium_l2_responder_v4.lookup(&key);
    if (!stats)
        return PASS;
    if (!agent_is_live())
        return PASS;

    /* Rewrite in place, as the reference does: length, padding, hrd/pro/hln/pln unchanged. */
    __u8 requester[6];
    __u8 sip[4];
    __builtin_memcpy(requester, f.h_source, 6);
    __builtin_memcpy(sip, f.ar_sip, 4);
    __builtin_memcpy(f.h_dest, requester, 6);
    __builtin_memcpy(f.h_source, mac, 6);
    f.ar_op = ARPOP_REPLY_BE;
    __builtin_memcpy(f.ar_sha, mac, 6);
    __builtin_memcpy(f.ar_sip, f.ar_tip, 4);
    __builtin_memcpy(f.ar_tha, requester, 6);
    __builtin_memcpy(f.ar_tip, sip, 4);
    /* One store: it either writes all 42 bytes or none (it fails before writing), so on
     * failure the untouched request can still go to the kernel. */
    if (bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
        return PASS;

    int ret = bpf_redirect(skb->ifindex, 0);
    if (ret == TC_ACT_REDIRECT)
        __sync_fetch_and_add(&stats->responses_sent, 1);
    return ret;
}
