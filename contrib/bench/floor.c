/*
 * floor: the least an FTP server can do for the benchmark's sessions, so
 * that the table shows what the kernel alone costs (fork or exec, sockets,
 * sendfile). It speaks just enough FTP: a greeting, USER, PASS, TYPE, EPSV,
 * RETR through sendfile(2), QUIT. No listings, no checks, no logs: never
 * run it anywhere but on loopback for the benchmark.
 *
 *   floor -p PORT [-l ADDR] ROOT   listen, fork one child per connection
 *   floor ROOT                     one session on fds 0/1 (tcpserver, inetd)
 *
 * Built by contrib/bench/run with: cc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int rootfd = -1;

static int say(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A passive listener on the control connection's local address. */
static int passive(int ctl, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(ctl, (struct sockaddr *)&ss, &sl) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	int l = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -1;
	if (bind(l, (struct sockaddr *)&ss, sl) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&ss, &sl) < 0) {
		close(l);
		return -1;
	}
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					       : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return l;
}

static int retr(int out, int *lfd, const char *path)
{
	while (*path == '/')
		path++;
	if (*lfd < 0)
		return say(out, "425 Use EPSV first.\r\n");
	int f = openat(rootfd, *path ? path : ".", O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (f < 0 || fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (f >= 0)
			close(f);
		return say(out, "550 No such file.\r\n");
	}
	int d = accept4(*lfd, NULL, NULL, SOCK_CLOEXEC);
	close(*lfd);
	*lfd = -1;
	if (d < 0) {
		close(f);
		return say(out, "425 No data connection.\r\n");
	}
	if (say(out, "150 Sending.\r\n") < 0)
		return -1;
	off_t off = 0;
	while (off < st.st_size) {
		ssize_t n = sendfile(d, f, &off, (size_t)(st.st_size - off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
	close(d);
	close(f);
	return say(out, off == st.st_size ? "226 Done.\r\n" : "426 Failed.\r\n");
}

static void serve(int in, int out)
{
	char buf[1024];
	size_t have = 0;
	int lfd = -1, one = 1;
	/* Replies go out at once: with Nagle, "226" would wait for the
	 * client's delayed ACK of "150" (40 ms), as every real server knows. */
	setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (say(out, "220 floor ready.\r\n") < 0)
		return;
	for (;;) {
		char *nl;
		while (!(nl = memchr(buf, '\n', have))) {
			if (have == sizeof buf)
				return;
			ssize_t n = read(in, buf + have, sizeof buf - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			have += (size_t)n;
		}
		size_t used = (size_t)(nl - buf) + 1;
		*nl = 0;
		if (nl > buf && nl[-1] == '\r')
			nl[-1] = 0;
		char *arg = strchr(buf, ' ');
		if (arg)
			*arg++ = 0;
		else
			arg = "";
		int r;
		char line[80];
		if (!strcasecmp(buf, "USER"))
			r = say(out, "331 Any password.\r\n");
		else if (!strcasecmp(buf, "PASS"))
			r = say(out, "230 Logged in.\r\n");
		else if (!strcasecmp(buf, "TYPE"))
			r = say(out, "200 OK.\r\n");
		else if (!strcasecmp(buf, "EPSV")) {
			int port;
			if (lfd >= 0)
				close(lfd);
			lfd = passive(in, &port);
			if (lfd < 0)
				r = say(out, "425 No listener.\r\n");
			else {
				snprintf(line, sizeof line,
					 "229 Entering Extended Passive Mode (|||%d|)\r\n", port);
				r = say(out, line);
			}
		} else if (!strcasecmp(buf, "RETR"))
			r = retr(out, &lfd, arg);
		else if (!strcasecmp(buf, "QUIT")) {
			say(out, "221 Bye.\r\n");
			return;
		} else
			r = say(out, "502 Not here.\r\n");
		if (r < 0)
			return;
		memmove(buf, buf + used, have - used);
		have -= used;
	}
}

static void reap(int sig)
{
	(void)sig;
	int e = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = e;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1";
	int port = 0, c;
	while ((c = getopt(argc, argv, "l:p:")) != -1) {
		if (c == 'l')
			addr = optarg;
		else if (c == 'p')
			port = atoi(optarg);
		else
			return 100;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: floor [-p PORT [-l ADDR]] ROOT\n");
		return 100;
	}
	rootfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		perror("floor: root");
		return 111;
	}
	if (!port) {
		serve(0, 1);
		return 0;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || l < 0 ||
	    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1024) < 0) {
		perror("floor: listen");
		return 111;
	}
	/* Reap with wait, not SIG_IGN, so children's CPU time adds up in the
	 * parent's cutime like any other forking server's. */
	struct sigaction sact = {.sa_handler = reap, .sa_flags = SA_RESTART};
	sigaction(SIGCHLD, &sact, NULL);
	for (;;) {
		int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (s < 0)
			continue;
		pid_t p = fork();
		if (p == 0) {
			close(l);
			serve(s, s);
			_exit(0);
		}
		close(s);
	}
}
