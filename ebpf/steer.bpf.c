// SPDX-License-Identifier: (GPL-2.0-only OR BSD-3-Clause)
/*
 * sk_lookup program that steers TCP connections for the configured ports and
 * destination prefixes to the one listening socket of the anyport proxy.
 *
 * Userspace (ebpf/layout.ts) mirrors every map layout below and checks the
 * sizes of loaded and pinned maps against it.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Maximum number of steered ports: every TCP port can be steered. */
#define MAX_PORTS 65536
/* Maximum number of steered prefixes per address family. */
#define MAX_PREFIXES 4096

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

enum counter {
	COUNTER_LOOKUPS,	/* TCP lookups seen by the program */
	COUNTER_STEERED,	/* lookups assigned to the proxy socket */
	COUNTER_NO_SOCKET,	/* steered lookups dropped: both sockmaps were empty */
	COUNTER_ASSIGN_ERRORS,	/* steered lookups dropped: bpf_sk_assign failed */
	COUNTER_MAX,
};

struct ipv4_key {
	__u32 prefixlen;
	__u8 addr[4];
} __attribute__((packed));

struct ipv6_key {
	__u32 prefixlen;
	__u8 addr[16];
} __attribute__((packed));

/* Steered ports in host byte order; the value is unused and set to 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

/* Steered IPv4 destination prefixes; the value is unused and set to 1. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipv4_key);
	__type(value, __u8);
} ipv4_prefixes SEC(".maps");

/* Steered IPv6 destination prefixes; the value is unused and set to 1. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipv6_key);
	__type(value, __u8);
} ipv6_prefixes SEC(".maps");

/* The proxy's listening socket at index 0; userspace reads its cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sockets SEC(".maps");

/*
 * The socket of the process that the owner replaced, at index 0. It takes
 * the connections while `sockets` is empty, so that connections keep
 * flowing when the owner stops before the process it replaced.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} standby SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += 1;
}

static __always_inline int address_steered(struct bpf_sk_lookup *ctx)
{
	if (ctx->family == AF_INET) {
		struct ipv4_key key = { .prefixlen = 32 };

		__builtin_memcpy(key.addr, &ctx->local_ip4, sizeof(key.addr));
		return bpf_map_lookup_elem(&ipv4_prefixes, &key) != NULL;
	}
	if (ctx->family == AF_INET6) {
		struct ipv6_key key = { .prefixlen = 128 };

		__builtin_memcpy(key.addr, ctx->local_ip6, sizeof(key.addr));
		return bpf_map_lookup_elem(&ipv6_prefixes, &key) != NULL;
	}
	return 0;
}

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	const __u32 zero = 0;
	__u16 port = ctx->local_port;
	struct bpf_sock *sk;
	long err;

	/* UDP and other protocols keep the kernel's own lookup */
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	count(COUNTER_LOOKUPS);

	/* leave unconfigured ports to the kernel's own lookup */
	if (!bpf_map_lookup_elem(&ports, &port))
		return SK_PASS;

	/*
	 * bpf_sk_assign ignores the address the socket is bound to, so without
	 * this check every local address on a configured port would be captured
	 */
	if (!address_steered(ctx))
		return SK_PASS;

	sk = bpf_map_lookup_elem(&sockets, &zero);
	if (!sk)
		sk = bpf_map_lookup_elem(&standby, &zero);
	if (!sk) {
		count(COUNTER_NO_SOCKET);
		/*
		 * The proxy owns this port and address but has no socket right
		 * now (stopped or restarting). Passing would let any other
		 * socket bound to the port take tenant traffic, so refuse.
		 */
		return SK_DROP;
	}

	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(COUNTER_ASSIGN_ERRORS);
		/*
		 * The socket cannot take this lookup (an IPv6-only socket for
		 * IPv4, or one no longer listening), or an earlier program chose
		 * a socket already. Refuse for the same reason as above.
		 */
		return SK_DROP;
	}
	count(COUNTER_STEERED);
	return SK_PASS;
}
