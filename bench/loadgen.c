// SPDX-License-Identifier: MIT
/*
 * loadgen: the benchmark's TCP load generator (epoll, non-blocking sockets).
 *
 * Usage:
 *   loadgen conn     -p PORT [-c CONNS] [-d SECONDS] [-w SECONDS] [-s BYTES] [-t THREADS] [-S N]
 *   loadgen pingpong -p PORT [-c CONNS] [-d SECONDS] [-w SECONDS] [-s BYTES] [-t THREADS]
 *   loadgen idle     -p PORT [-c CONNS] [-d SECONDS]
 *   loadgen wait     -p FIRST [-P LAST] [-i STEP] [-c CONNS] [-d SECONDS]
 *
 * conn:     each of CONNS clients loops over connect, send BYTES, receive them back, close.
 * pingpong: CONNS persistent connections, each sends BYTES and waits for them to come back.
 * idle:     opens CONNS connections, does one echo round trip on each, prints a line and then
 *           keeps them open until SIGTERM or SIGINT, or for at most -d SECONDS in all.
 * wait:     connects to ports FIRST, FIRST+STEP, ... and LAST until each one accepts or
 *           -d SECONDS pass, with at most CONNS connects in flight.
 *
 * The target address is 127.0.0.1 unless -a sets another loopback address; addresses outside
 * 127.0.0.0/8 are rejected. -S N spreads conn-mode clients over the source addresses
 * 127.0.0.1 to 127.0.0.N, so short connections have N times more four-tuples to use.
 * Counting starts after the -w warm-up. Each mode prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_MSG 4096
#define MAX_THREADS 8
#define MAX_SOURCES 64
/* latency histogram: one bucket per microsecond up to 100 ms, then one overflow bucket */
#define HIST_US 100000
/* connections that idle mode keeps in progress at once */
#define CONNECT_WINDOW 128
/* delay before wait mode retries a port that refused */
#define RETRY_NS 1000000ULL

enum mode { MODE_CONN, MODE_PINGPONG, MODE_IDLE, MODE_WAIT };

enum state { ST_FREE, ST_CONNECTING, ST_READING, ST_DONE };

struct options {
	enum mode mode;
	struct in_addr addr;
	int port;
	int last_port;
	int conns;
	double seconds;
	double warmup;
	int size;
	int threads;
	int sources;
	int step;
};

struct client {
	int fd;
	enum state state;
	int port;
	int received;
	uint64_t sent_ns;
};

struct worker {
	const struct options *opt;
	pthread_t tid;
	int conns;
	int first_source;
	int epfd;
	struct client *clients;
	uint64_t ops;
	uint64_t errors;
	uint32_t *hist;
};

static struct options opt = {
	.conns = 32,
	.seconds = 5,
	.warmup = 0,
	.size = 0,
	.threads = 1,
	.sources = 1,
	.step = 1,
};
static char msg[MAX_MSG];
static uint64_t start_ns, count_from_ns, stop_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t epoch_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen conn|pingpong|idle|wait -p PORT [-P LAST_PORT] [-i STEP] [-a ADDR]\n"
		"       [-c CONNS] [-d SECONDS] [-w WARMUP_SECONDS] [-s BYTES] [-t THREADS]\n"
		"       [-S SOURCES]\n");
	exit(2);
}

static int parse_int(const char *s, int min, int max, const char *name)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "loadgen: invalid %s \"%s\": expected %d..%d\n", name, s, min, max);
		exit(2);
	}
	return (int)v;
}

static double parse_seconds(const char *s, const char *name)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || v < 0 || v > 3600) {
		fprintf(stderr, "loadgen: invalid %s \"%s\": expected 0..3600 seconds\n", name, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	const char *addr = "127.0.0.1";
	int c;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "conn"))
		opt.mode = MODE_CONN;
	else if (!strcmp(argv[1], "pingpong"))
		opt.mode = MODE_PINGPONG;
	else if (!strcmp(argv[1], "idle"))
		opt.mode = MODE_IDLE;
	else if (!strcmp(argv[1], "wait"))
		opt.mode = MODE_WAIT;
	else
		usage();
	optind = 2;
	while ((c = getopt(argc, argv, "a:p:P:i:c:d:w:s:t:S:")) != -1) {
		switch (c) {
		case 'a': addr = optarg; break;
		case 'p': opt.port = parse_int(optarg, 1, 65535, "port"); break;
		case 'P': opt.last_port = parse_int(optarg, 1, 65535, "last port"); break;
		case 'i': opt.step = parse_int(optarg, 1, 65535, "port step"); break;
		case 'c': opt.conns = parse_int(optarg, 1, 19000, "connection count"); break;
		case 'd': opt.seconds = parse_seconds(optarg, "duration"); break;
		case 'w': opt.warmup = parse_seconds(optarg, "warm-up"); break;
		case 's': opt.size = parse_int(optarg, 1, MAX_MSG, "message size"); break;
		case 't': opt.threads = parse_int(optarg, 1, MAX_THREADS, "thread count"); break;
		case 'S': opt.sources = parse_int(optarg, 1, MAX_SOURCES, "source count"); break;
		default: usage();
		}
	}
	if (opt.port == 0)
		usage();
	if (inet_pton(AF_INET, addr, &opt.addr) != 1 || (ntohl(opt.addr.s_addr) >> 24) != 127) {
		fprintf(stderr, "loadgen: invalid address \"%s\": expected an address in 127.0.0.0/8\n",
			addr);
		exit(2);
	}
	if (opt.last_port == 0)
		opt.last_port = opt.port;
	if (opt.last_port < opt.port) {
		fprintf(stderr, "loadgen: invalid port range %d-%d\n", opt.port, opt.last_port);
		exit(2);
	}
	if (opt.size == 0)
		opt.size = opt.mode == MODE_PINGPONG ? 64 : 16;
	if (opt.conns < opt.threads)
		opt.threads = opt.conns;
	memset(msg, 'x', sizeof(msg));
}

/* start a non-blocking connect, returning the socket, or -1 when the connect failed at once */
static int start_connect(int port, int source)
{
	struct sockaddr_in dst = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr = opt.addr,
	};
	int one = 1;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("loadgen: socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (source > 0) {
		struct sockaddr_in src = {
			.sin_family = AF_INET,
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK + source),
		};

		/* the kernel picks the port at connect time, so the four-tuple can repeat ports */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			die("loadgen: bind source address");
	}
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void watch(int epfd, int op, struct client *cl, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = cl };

	if (epoll_ctl(epfd, op, cl->fd, &ev) < 0)
		die("loadgen: epoll_ctl");
}

static int connect_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return errno;
	return err;
}

static int send_msg(struct client *cl)
{
	ssize_t n = send(cl->fd, msg, opt.size, MSG_NOSIGNAL);

	/* a message of at most MAX_MSG bytes fits in an empty socket buffer */
	if (n != opt.size)
		return -1;
	cl->received = 0;
	cl->sent_ns = now_ns();
	return 0;
}

/* read what has arrived, returning 1 when the echo is complete, 0 if more must come, -1 on error */
static int receive_echo(struct client *cl)
{
	char buf[MAX_MSG];

	for (;;) {
		ssize_t n = recv(cl->fd, buf, sizeof(buf), 0);

		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		cl->received += n;
		if (cl->received >= opt.size)
			return 1;
	}
}

static void open_client(struct worker *w, struct client *cl, int index)
{
	int source = 0;

	if (opt.sources > 1)
		source = (w->first_source + index) % opt.sources;
	for (;;) {
		cl->fd = start_connect(opt.port, source);
		if (cl->fd >= 0)
			break;
		w->errors++;
		/* no free four-tuple or a refusal: back off instead of spinning */
		usleep(1000);
		if (now_ns() >= stop_ns) {
			cl->fd = -1;
			cl->state = ST_FREE;
			return;
		}
	}
	cl->state = ST_CONNECTING;
	watch(w->epfd, EPOLL_CTL_ADD, cl, EPOLLOUT);
}

static void count_op(struct worker *w, struct client *cl, uint64_t now)
{
	if (now < count_from_ns || now >= stop_ns)
		return;
	w->ops++;
	if (w->hist) {
		uint64_t us = (now - cl->sent_ns) / 1000;

		w->hist[us < HIST_US ? us : HIST_US]++;
	}
}

/* one event on a conn-mode or pingpong-mode client */
static void step(struct worker *w, struct client *cl, int index)
{
	int rc;

	if (cl->state == ST_CONNECTING) {
		if (connect_error(cl->fd) != 0 || send_msg(cl) < 0)
			goto fail;
		cl->state = ST_READING;
		watch(w->epfd, EPOLL_CTL_MOD, cl, EPOLLIN);
		return;
	}
	rc = receive_echo(cl);
	if (rc == 0)
		return;
	if (rc < 0)
		goto fail;
	count_op(w, cl, now_ns());
	if (opt.mode == MODE_PINGPONG) {
		if (send_msg(cl) < 0)
			goto fail;
		return;
	}
	close(cl->fd);
	open_client(w, cl, index);
	return;
fail:
	w->errors++;
	close(cl->fd);
	open_client(w, cl, index);
}

static void *run_worker(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[MAX_EVENTS];

	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		die("loadgen: epoll_create1");
	w->clients = calloc(w->conns, sizeof(*w->clients));
	if (!w->clients)
		die("loadgen: calloc");
	if (opt.mode == MODE_PINGPONG) {
		w->hist = calloc(HIST_US + 1, sizeof(*w->hist));
		if (!w->hist)
			die("loadgen: calloc");
	}
	for (int i = 0; i < w->conns; i++)
		open_client(w, &w->clients[i], i);

	while (now_ns() < stop_ns) {
		int n = epoll_wait(w->epfd, events, MAX_EVENTS, 100);

		if (n < 0 && errno != EINTR)
			die("loadgen: epoll_wait");
		for (int i = 0; i < n; i++) {
			struct client *cl = events[i].data.ptr;

			step(w, cl, (int)(cl - w->clients));
		}
	}
	for (int i = 0; i < w->conns; i++)
		if (w->clients[i].fd >= 0)
			close(w->clients[i].fd);
	return NULL;
}

static uint64_t hist_percentile(const uint32_t *hist, uint64_t total, double p)
{
	uint64_t want = (uint64_t)(p * total);
	uint64_t seen = 0;

	for (int us = 0; us <= HIST_US; us++) {
		seen += hist[us];
		if (seen > want)
			return us;
	}
	return HIST_US;
}

static int run_load(void)
{
	struct worker workers[MAX_THREADS] = { 0 };
	uint32_t *hist = calloc(HIST_US + 1, sizeof(*hist));
	uint64_t ops = 0, errors = 0;
	double seconds;

	if (!hist)
		die("loadgen: calloc");
	start_ns = now_ns();
	count_from_ns = start_ns + (uint64_t)(opt.warmup * 1e9);
	stop_ns = count_from_ns + (uint64_t)(opt.seconds * 1e9);
	for (int t = 0; t < opt.threads; t++) {
		struct worker *w = &workers[t];

		w->conns = opt.conns / opt.threads + (t < opt.conns % opt.threads);
		w->first_source = t;
		if (pthread_create(&w->tid, NULL, run_worker, w) != 0)
			die("loadgen: pthread_create");
	}
	for (int t = 0; t < opt.threads; t++) {
		pthread_join(workers[t].tid, NULL);
		ops += workers[t].ops;
		errors += workers[t].errors;
		for (int us = 0; workers[t].hist && us <= HIST_US; us++)
			hist[us] += workers[t].hist[us];
	}
	seconds = opt.seconds;
	printf("{\"mode\":\"%s\",\"conns\":%d,\"threads\":%d,\"seconds\":%.3f,\"ops\":%llu,"
	       "\"ops_per_sec\":%.1f,\"errors\":%llu",
	       opt.mode == MODE_CONN ? "conn" : "pingpong", opt.conns, opt.threads, seconds,
	       (unsigned long long)ops, ops / seconds, (unsigned long long)errors);
	if (opt.mode == MODE_PINGPONG && ops > 0)
		printf(",\"p50_us\":%llu,\"p99_us\":%llu,\"max_bucket_us\":%d",
		       (unsigned long long)hist_percentile(hist, ops, 0.50),
		       (unsigned long long)hist_percentile(hist, ops, 0.99), HIST_US);
	printf("}\n");
	return 0;
}

/* open connections for idle mode with one echo round trip each, returning how many succeeded */
static int open_idle(struct client *clients, int epfd, uint64_t deadline, uint64_t *errors)
{
	struct epoll_event events[MAX_EVENTS];
	int started = 0, open = 0, in_flight = 0;

	while (open < opt.conns && now_ns() < deadline) {
		while (in_flight < CONNECT_WINDOW && started < opt.conns) {
			struct client *cl = &clients[started];

			cl->fd = start_connect(opt.port, 0);
			if (cl->fd < 0)
				die("loadgen: connect");
			cl->state = ST_CONNECTING;
			watch(epfd, EPOLL_CTL_ADD, cl, EPOLLOUT);
			started++;
			in_flight++;
		}
		int n = epoll_wait(epfd, events, MAX_EVENTS, 100);

		for (int i = 0; i < n; i++) {
			struct client *cl = events[i].data.ptr;
			int rc;

			if (cl->state == ST_CONNECTING) {
				if (connect_error(cl->fd) != 0 || send_msg(cl) < 0)
					goto fail;
				cl->state = ST_READING;
				watch(epfd, EPOLL_CTL_MOD, cl, EPOLLIN);
				continue;
			}
			rc = receive_echo(cl);
			if (rc == 0)
				continue;
			if (rc < 0)
				goto fail;
			cl->state = ST_DONE;
			watch(epfd, EPOLL_CTL_DEL, cl, 0);
			open++;
			in_flight--;
			continue;
fail:
			/* count the failure and give up on this connection slot */
			(*errors)++;
			watch(epfd, EPOLL_CTL_DEL, cl, 0);
			close(cl->fd);
			cl->state = ST_FREE;
			in_flight--;
			if (started == opt.conns && in_flight == 0)
				return open;
		}
	}
	return open;
}

static volatile sig_atomic_t releasing;

static void on_signal(int sig)
{
	(void)sig;
	releasing = 1;
}

static int run_idle(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct client *clients = calloc(opt.conns, sizeof(*clients));
	uint64_t errors = 0, deadline, opened_ns;
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	int open;

	if (!clients || epfd < 0)
		die("loadgen: setup");
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	start_ns = now_ns();
	deadline = start_ns + (uint64_t)(opt.seconds * 1e9);
	open = open_idle(clients, epfd, deadline, &errors);
	opened_ns = now_ns();
	printf("{\"mode\":\"idle\",\"conns\":%d,\"open\":%d,\"errors\":%llu,\"open_ms\":%.1f}\n",
	       opt.conns, open, (unsigned long long)errors, (opened_ns - start_ns) / 1e6);
	fflush(stdout);
	while (!releasing && now_ns() < deadline)
		usleep(20000);
	for (int i = 0; i < opt.conns; i++)
		if (clients[i].state != ST_FREE)
			close(clients[i].fd);
	return open == opt.conns ? 0 : 1;
}

/*
 * Probe ports in order, with up to opt.conns connects in flight. Ports that refused are
 * retried first, one at a time and at most once per RETRY_NS, so that while the proxy is starting
 * the probe takes little CPU from it.
 */
static int run_wait(void)
{
	int total = (opt.last_port - opt.port) / opt.step + 1;
	struct client *slots = calloc(opt.conns, sizeof(*slots));
	int *ports = calloc(total + 1, sizeof(*ports));
	int *retry = calloc(total + 1, sizeof(*retry));
	struct epoll_event events[MAX_EVENTS];
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	int ready = 0, in_flight = 0, retries = 0, next = 0;
	uint64_t attempts = 0, deadline, pause_until = 0, first_ms = 0;

	if (!slots || !ports || !retry || epfd < 0)
		die("loadgen: setup");
	for (int i = 0; i < total; i++)
		ports[i] = opt.port + i * opt.step;
	if (ports[total - 1] != opt.last_port)
		ports[total++] = opt.last_port;
	start_ns = now_ns();
	deadline = start_ns + (uint64_t)(opt.seconds * 1e9);

	while (ready < total && now_ns() < deadline) {
		for (int s = 0; s < opt.conns && now_ns() >= pause_until; s++) {
			struct client *cl = &slots[s];
			int retrying = retries > 0;

			if (cl->state != ST_FREE)
				continue;
			if (retrying && in_flight > 0)
				break;
			if (retrying)
				cl->port = retry[--retries];
			else if (next < total)
				cl->port = ports[next++];
			else
				break;
			attempts++;
			cl->fd = start_connect(cl->port, 0);
			if (cl->fd < 0) {
				retry[retries++] = cl->port;
				pause_until = now_ns() + RETRY_NS;
				break;
			}
			cl->state = ST_CONNECTING;
			watch(epfd, EPOLL_CTL_ADD, cl, EPOLLOUT);
			in_flight++;
			if (retrying)
				break;
		}
		int n = epoll_wait(epfd, events, MAX_EVENTS, 1);

		for (int i = 0; i < n; i++) {
			struct client *cl = events[i].data.ptr;

			if (connect_error(cl->fd) == 0) {
				if (ready++ == 0)
					first_ms = epoch_ms();
			} else {
				retry[retries++] = cl->port;
				pause_until = now_ns() + RETRY_NS;
			}
			close(cl->fd);
			cl->state = ST_FREE;
			in_flight--;
		}
	}
	printf("{\"mode\":\"wait\",\"ports\":%d,\"ready\":%d,\"attempts\":%llu,"
	       "\"elapsed_ms\":%.1f,\"first_epoch_ms\":%llu,\"done_epoch_ms\":%llu}\n",
	       total, ready, (unsigned long long)attempts, (now_ns() - start_ns) / 1e6,
	       (unsigned long long)first_ms, (unsigned long long)epoch_ms());
	return ready == total ? 0 : 1;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	switch (opt.mode) {
	case MODE_IDLE:
		return run_idle();
	case MODE_WAIT:
		return run_wait();
	default:
		return run_load();
	}
}
