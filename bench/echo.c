// SPDX-License-Identifier: MIT
/*
 * echo: a single-threaded epoll TCP echo server, the benchmark's backend.
 *
 * Usage: echo PORT
 *
 * Listens on 127.0.0.1:PORT and writes every byte back to its sender.
 * When a peer stops reading, the server stops reading from that peer
 * until the pending bytes are written. It runs until SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define MAX_EVENTS 256
#define BACKLOG 4096

struct conn {
	int fd;
	size_t pending_off;
	size_t pending_len;
	char buf[BUF_SIZE];
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int open_listener(int port)
{
	struct sockaddr_in addr = {
		.sin_family = AF_INET,
		.sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int one = 1;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("echo: socket");
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		perror("echo: setsockopt SO_REUSEADDR");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("echo: bind");
		return -1;
	}
	if (listen(fd, BACKLOG) < 0) {
		perror("echo: listen");
		return -1;
	}
	return fd;
}

static void close_conn(struct conn *c)
{
	close(c->fd);
	free(c);
}

static void accept_all(int epfd, int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int one = 1;

	for (;;) {
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				perror("echo: accept4");
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->pending_off = 0;
		c->pending_len = 0;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			perror("echo: epoll_ctl add");
			close_conn(c);
		}
	}
}

/* write pending bytes, returning 1 when all are written, 0 when the socket is full, -1 on error */
static int flush_pending(struct conn *c)
{
	while (c->pending_len > 0) {
		ssize_t n = send(c->fd, c->buf + c->pending_off, c->pending_len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->pending_off += n;
		c->pending_len -= n;
	}
	c->pending_off = 0;
	return 1;
}

static int set_events(int epfd, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* handle one readiness event, returning -1 when the connection must be closed */
static int serve(int epfd, struct conn *c, uint32_t events)
{
	int rc;

	if (c->pending_len > 0) {
		/* the peer was not reading, so finish that write before reading more */
		rc = flush_pending(c);
		if (rc <= 0)
			return rc;
		if (set_events(epfd, c, EPOLLIN) < 0)
			return -1;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	for (;;) {
		ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);

		if (n == 0)
			return -1;
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->pending_len = n;
		rc = flush_pending(c);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return set_events(epfd, c, EPOLLOUT);
		if (n < BUF_SIZE)
			return 0;
	}
}

int main(int argc, char **argv)
{
	struct epoll_event events[MAX_EVENTS];
	struct epoll_event ev = { .events = EPOLLIN };
	struct sigaction sa = { .sa_handler = on_signal };
	int port, lfd, epfd;

	if (argc != 2) {
		fprintf(stderr, "usage: echo PORT\n");
		return 2;
	}
	port = atoi(argv[1]);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "echo: invalid port \"%s\"\n", argv[1]);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = open_listener(port);
	if (lfd < 0)
		return 1;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("echo: epoll_create1");
		return 1;
	}
	ev.data.ptr = NULL;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("echo: epoll_ctl add listener");
		return 1;
	}

	while (!stopping) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, 500);

		if (n < 0 && errno != EINTR) {
			perror("echo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = events[i].data.ptr;

			if (!c) {
				accept_all(epfd, lfd);
				continue;
			}
			if (serve(epfd, c, events[i].events) < 0)
				close_conn(c);
		}
	}
	return 0;
}
