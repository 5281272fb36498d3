/*
 * slowfs: a read-only FUSE passthrough that makes part of a tree behave
 * like a cold archive on a slow disk, for the benchmark's slow-disk
 * scenario. Everything under the top-level directory "cold" (by default)
 * is cold; "cold" itself is hot, as an archive's top directories are:
 *
 *  - each READ (at most 128 KiB: FUSE's default request size) and each
 *    READDIR batch is answered after --read-delay-us,
 *  - each LOOKUP of a name after --lookup-delay-us (a missing name too),
 *  - nothing is kept in the kernel's caches: entries and attributes expire
 *    at once (every path walk asks again), and the page cache of a cold
 *    file is dropped at each open (keep_cache off), so every download
 *    starts cold and readahead works within it as on a disk.
 *
 * Everything else (the root, the probe's small file) is hot: cached by
 * the kernel for a day, answered at once. Delays do not hold a thread: a
 * delayed answer waits in a queue and one timer thread sends it when due,
 * so any number of requests can be in flight (a disk of fixed latency and
 * unbounded parallelism, like a large array or network storage), and the
 * kernel may keep up to --max-background readahead requests in flight.
 *
 *   slowfs [--read-delay-us N] [--lookup-delay-us N] [--cold NAME]
 *          [--max-background N] BACKING MOUNTPOINT
 *
 * It runs in the foreground until SIGTERM/SIGINT, then unmounts. Needs
 * root (allow_other: the servers run as another user), /dev/fuse and
 * libfuse3 (Debian: libfuse3-dev to build, fuse3 to unmount by hand).
 * Built by contrib/bench/run with:
 *   cc -O2 -o slowfs slowfs.c $(pkg-config --cflags --libs fuse3)
 * Never for anything but the benchmark: it trusts the tree it serves.
 */
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static long read_delay_us = 5000, lookup_delay_us = 5000;
static const char *cold_name = "cold";
static unsigned max_background = 512;
static int rootfd = -1;

/* A node: a path relative to the backing root. The tree is static and
 * read-only, so nodes are never freed (FORGET is a no-op): their number is
 * bounded by the tree's size. The FUSE inode number is the pointer. */
struct node {
	char *path;
	int cold;
	int cold_top; /* the top directory "cold": hot, its children cold */
	struct node *next; /* hash chain */
};

#define NBUCKETS 65536
static struct node *buckets[NBUCKETS];
static struct node root = {.path = ".", .cold = 0};
/* Only the session thread touches the table; no lock needed. */

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % NBUCKETS;
}

static struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct node *n)
{
	return n == &root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct node *get_node(const char *path, int cold)
{
	unsigned h = hash(path);
	for (struct node *n = buckets[h]; n; n = n->next)
		if (!strcmp(n->path, path))
			return n;
	struct node *n = calloc(1, sizeof *n);
	if (!n || !(n->path = strdup(path))) {
		free(n);
		return NULL;
	}
	n->cold = cold;
	n->next = buckets[h];
	buckets[h] = n;
	return n;
}

/* ------------------------------------------------------------ the delay */

enum kind { ENTRY, BUF, ERR };

struct pending {
	struct timespec due;
	fuse_req_t req;
	enum kind kind;
	struct fuse_entry_param e;
	char *buf;
	size_t len;
	int err;
	struct pending *next;
};

/* One FIFO per delay: with a constant delay, arrival order is due order. */
static struct pending *qhead[2], *qtail[2];
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond;

static void add_us(struct timespec *t, long us)
{
	t->tv_nsec += (us % 1000000) * 1000;
	t->tv_sec += us / 1000000 + t->tv_nsec / 1000000000;
	t->tv_nsec %= 1000000000;
}

static int before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void answer(struct pending *p)
{
	switch (p->kind) {
	case ENTRY:
		fuse_reply_entry(p->req, &p->e);
		break;
	case BUF:
		fuse_reply_buf(p->req, p->buf, p->len);
		break;
	case ERR:
		fuse_reply_err(p->req, p->err);
		break;
	}
	free(p->buf);
	free(p);
}

/* Answers now, or after the delay of queue q (0: reads, 1: lookups). */
static void later(int q, struct pending *p)
{
	long us = q ? lookup_delay_us : read_delay_us;
	if (us <= 0) {
		answer(p);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &p->due);
	add_us(&p->due, us);
	pthread_mutex_lock(&qlock);
	if (qtail[q])
		qtail[q]->next = p;
	else
		qhead[q] = p;
	qtail[q] = p;
	pthread_cond_signal(&qcond);
	pthread_mutex_unlock(&qlock);
}

static void *timer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&qlock);
	for (;;) {
		int q = -1;
		if (qhead[0] && (!qhead[1] || before(&qhead[0]->due, &qhead[1]->due)))
			q = 0;
		else if (qhead[1])
			q = 1;
		if (q < 0) {
			pthread_cond_wait(&qcond, &qlock);
			continue;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (before(&now, &qhead[q]->due)) {
			pthread_cond_timedwait(&qcond, &qlock, &qhead[q]->due);
			continue;
		}
		struct pending *p = qhead[q];
		qhead[q] = p->next;
		if (!qhead[q])
			qtail[q] = NULL;
		pthread_mutex_unlock(&qlock);
		answer(p);
		pthread_mutex_lock(&qlock);
	}
	return NULL;
}

static struct pending *pending(fuse_req_t req, enum kind kind)
{
	struct pending *p = calloc(1, sizeof *p);
	if (p) {
		p->req = req;
		p->kind = kind;
	}
	return p;
}

/* Replies with an error, after the delay when `cold`. */
static void fail(fuse_req_t req, int err, int cold, int q)
{
	struct pending *p = cold ? pending(req, ERR) : NULL;
	if (!p) {
		fuse_reply_err(req, err);
		return;
	}
	p->err = err;
	later(q, p);
}

/* ------------------------------------------------------------ operations */

static void sf_init(void *data, struct fuse_conn_info *conn)
{
	(void)data;
	/* Readahead requests are "background" requests, 12 at most by default
	 * over the whole mount: 32 cold downloads would queue behind them. */
	conn->max_background = max_background;
	conn->congestion_threshold = max_background * 3 / 4;
}

static double timeout(int cold)
{
	return cold ? 0.0 : 86400.0;
}

static void sf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *p = node_of(parent);
	/* The children of the top directory "cold" are cold, and so is all
	 * below them. */
	int cold = p->cold || p->cold_top;
	char *path;
	if (p == &root)
		path = strdup(name);
	else if (asprintf(&path, "%s/%s", p->path, name) < 0)
		path = NULL;
	if (!path) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct fuse_entry_param e = {0};
	if (fstatat(rootfd, path, &e.attr, AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		free(path);
		fail(req, err, cold, 1);
		return;
	}
	struct node *n = get_node(path, cold);
	free(path);
	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (p == &root && !strcmp(name, cold_name))
		n->cold_top = 1;
	e.ino = ino_of(n);
	e.attr_timeout = e.entry_timeout = timeout(cold);
	struct pending *q = cold ? pending(req, ENTRY) : NULL;
	if (!q) {
		fuse_reply_entry(req, &e);
		return;
	}
	q->e = e;
	later(1, q);
}

static void sf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void sf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct node *n = node_of(ino);
	struct stat st;
	if (fstatat(rootfd, n->path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, timeout(n->cold));
}

static void sf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[4096];
	ssize_t r = readlinkat(rootfd, node_of(ino)->path, buf, sizeof buf - 1);
	if (r < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	buf[r] = 0;
	fuse_reply_readlink(req, buf);
}

static void sf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	int fd = openat(rootfd, n->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = !n->cold;
	fuse_reply_open(req, fi);
}

static void sf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	int cold = node_of(ino)->cold;
	struct pending *p = pending(req, BUF);
	char *buf = malloc(size ? size : 1);
	if (!p || !buf) {
		free(p);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t r = pread((int)fi->fh, buf, size, off);
	if (r < 0) {
		int err = errno;
		free(p);
		free(buf);
		fail(req, err, cold, 0);
		return;
	}
	p->buf = buf;
	p->len = (size_t)r;
	if (cold)
		later(0, p);
	else
		answer(p);
}

static void sf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	close((int)fi->fh);
	fuse_reply_err(req, 0);
}

struct dirh {
	DIR *dp;
	off_t off;
	struct dirent *entry;
};

static void sf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirh *d = calloc(1, sizeof *d);
	int fd = openat(rootfd, node_of(ino)->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!d || fd < 0 || !(d->dp = fdopendir(fd))) {
		int err = d ? errno : ENOMEM;
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void sf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	int cold = node_of(ino)->cold;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	struct pending *p = pending(req, BUF);
	char *buf = calloc(1, size ? size : 1);
	if (!p || !buf) {
		free(p);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->off) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->off = off;
	}
	size_t used = 0;
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry)
				break;
		}
		struct stat st = {.st_ino = d->entry->d_ino,
				  .st_mode = (mode_t)d->entry->d_type << 12};
		off_t next = telldir(d->dp);
		size_t len = fuse_add_direntry(req, buf + used, size - used,
					       d->entry->d_name, &st, next);
		if (len > size - used)
			break;
		used += len;
		d->entry = NULL;
		d->off = next;
	}
	p->buf = buf;
	p->len = used;
	if (cold)
		later(0, p);
	else
		answer(p);
}

static void sf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void sf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	if (fstatvfs(rootfd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = sf_init,
	.lookup = sf_lookup,
	.forget = sf_forget,
	.getattr = sf_getattr,
	.readlink = sf_readlink,
	.open = sf_open,
	.read = sf_read,
	.release = sf_release,
	.opendir = sf_opendir,
	.readdir = sf_readdir,
	.releasedir = sf_releasedir,
	.statfs = sf_statfs,
};

static void usage(void)
{
	fprintf(stderr, "usage: slowfs [--read-delay-us N] [--lookup-delay-us N] [--cold NAME]\n"
			"              [--max-background N] BACKING MOUNTPOINT\n");
	exit(100);
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
		if (!strcmp(argv[i], "--read-delay-us"))
			read_delay_us = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--lookup-delay-us"))
			lookup_delay_us = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--cold"))
			cold_name = argv[i + 1];
		else if (!strcmp(argv[i], "--max-background"))
			max_background = (unsigned)atol(argv[i + 1]);
		else
			usage();
	}
	if (argc - i != 2 || read_delay_us < 0 || lookup_delay_us < 0 || !max_background)
		usage();
	rootfd = open(argv[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		perror("slowfs: backing directory");
		return 111;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&qcond, &ca);
	pthread_t t;
	if (pthread_create(&t, NULL, timer, NULL)) {
		fprintf(stderr, "slowfs: no timer thread\n");
		return 111;
	}

	char *fargv[] = {argv[0], "-o",
			 "ro,allow_other,default_permissions,fsname=slowfs,subtype=slowfs", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
	if (!se)
		return 111;
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, argv[i + 1])) {
		fuse_session_destroy(se);
		return 111;
	}
	/* One thread reads requests (answers are quick: the backing tree is
	 * in the page cache); the timer thread sends the delayed ones. */
	int r = fuse_session_loop(se);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return r ? 111 : 0;
}
