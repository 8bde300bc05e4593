/* The security side of the zmq transport: CURVE keys, the ZAP handler and
 * the socket monitors on one thread, and opening a configured socket
 * (zmq_util.h; docs/security.md). */
#include "zmq_util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../engine/log.h"
#include "../engine/path.h"

int ink__zmq_setint(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

#define setint ink__zmq_setint

/* ---- CURVE keys ----------------------------------------------------------- */

static bool z85_key(const char *s)
{
    uint8_t b[32];
    return strlen(s) == 40 && zmq_z85_decode(b, s) != NULL;
}

/* The key on one line: a quoted value (zcert), or the first token; NULL when
 * the line is blank or a # comment. Z85 has '#' and '=' in its alphabet, so
 * a 40-character Z85 token is a key even when it starts with '#'. Modifies
 * line. */
static char *line_key(char *line)
{
    char *s = line;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return NULL;
    char *q = strchr(s, '"');
    if (q && *s != '#') {
        char *e = strchr(q + 1, '"');
        if (!e) return s;
        *e = 0;
        return q + 1;
    }
    char *e = s;
    while (*e && !isspace((unsigned char)*e)) e++;
    *e = 0;
    if (z85_key(s)) return s;
    return *s == '#' ? NULL : s;
}

int ink_curve_key_read(const char *path, char key[41], bool secret, struct ink_err *err)
{
    const char *what = secret ? "secret key" : "public key";
    FILE *f = fopen(path, "r");
    if (!f) return ink_err_set(err, INK_EINVAL, "%s file %s: %s", what, path, strerror(errno));
    struct stat st;
    if (secret && fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        fclose(f);
        return ink_err_set(err, INK_EINVAL,
                           "secret key file %s can be read by others (mode %04o); chmod 600 it",
                           path, (unsigned)(st.st_mode & 07777));
    }
    char line[512];
    int lineno = 0, rc = INK_EINVAL;
    bool bad = false;
    key[0] = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        /* zcert files hold both keys in the secret file: take the one asked for */
        if (strstr(line, secret ? "public-key" : "secret-key")) continue;
        bool keyline = strstr(line, secret ? "secret-key" : "public-key") != NULL;
        char *k = line_key(line);
        if (!k) continue;
        if (!keyline && strlen(k) != 40) continue; /* zcert section names and metadata */
        if (!z85_key(k)) {
            ink_err_set(err, INK_EINVAL, "%s:%d: not a CURVE %s (40 Z85 characters)", path, lineno,
                        what);
            bad = true;
            break;
        }
        memcpy(key, k, 41);
        rc = 0;
        break;
    }
    if (rc && !bad) ink_err_set(err, INK_EINVAL, "%s: no CURVE %s in the file", path, what);
    fclose(f);
    return rc;
}

static int write_key(const char *path, mode_t mode, const char *comment, const char *key,
                     struct ink_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
    char buf[256];
    int n = snprintf(buf, sizeof buf, "# %s\n%s\n", comment, key);
    int ok = write(fd, buf, (size_t)n) == n && fsync(fd) == 0;
    ok &= close(fd) == 0;
    return ok ? 0 : ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
}

int ink_curve_keygen(const char *base, struct ink_err *err)
{
    char pub[41], sec[41], path[4096];
    if (zmq_curve_keypair(pub, sec) != 0)
        return ink_err_set(err, INK_EIO, "zmq_curve_keypair: %s (libzmq built without CURVE?)",
                           zmq_strerror(zmq_errno()));
    snprintf(path, sizeof path, "%s_secret", base);
    int rc = write_key(path, 0600,
                       "inkflow CURVE secret key (Z85): keep it private; curve.secret_key_file",
                       sec, err);
    if (!rc)
        rc = write_key(base, 0644,
                       "inkflow CURVE public key (Z85): curve.server_key of clients, or a line "
                       "of a server's authorized_keys",
                       pub, err);
    memset(sec, 0, sizeof sec);
    return rc;
}

/* ---- the security thread: ZAP handler and socket monitors --------------------
 *
 * One thread per process (graphs have one context) serves ZAP requests on
 * inproc://zeromq.zap.01 and reads the monitor events of every graph
 * socket. Each graph socket is a "domain" (its node name; for CURVE servers
 * also the ZAP domain). The thread only appends to the log and bumps
 * counters; the main loop reads them with ink_zmq_stats. */

#define MAX_DOMAINS 64
#define MAX_CONNS   64

struct domain {
    char name[64];
    bool server; /* CURVE server: keys checked by ZAP */
    uint8_t (*keys)[32];
    int nkeys;
    int64_t maxmsg;          /* the socket's ZMQ_MAXMSGSIZE, for messages */
    void *mon;               /* PAIR connected to the socket's monitor */
    struct ink_zmq_stats st; /* written by the thread with atomics */
    bool zap_sync;           /* every handshake waits for the ZAP handler (see conn_note) */
    struct {
        int fd;
        int dup; /* our duplicate of the connection's socket, -1 = none */
        char addr[96];
    } conn[MAX_CONNS];
    int conn_next;
    double last_open; /* ink_now() of the last HANDSHAKE_SUCCEEDED */
    int pending;      /* handshake-failure event not yet matched with its disconnect */
    int pending_code;
    struct ink_ratelimit rl_mon, rl_zap; /* each logs on its own: one never hides the other */
};

static struct {
    pthread_mutex_t mu;
    void *ctx;
    void *zap;
    bool running;
    int n, mon_seq;
    struct domain d[MAX_DOMAINS];
} sec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void dlog(struct domain *d, struct ink_ratelimit *rl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(struct domain *d, struct ink_ratelimit *rl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ink_log_limited(rl, d->name, fmt, ap);
    va_end(ap);
}

#define BUMP(d, f) __atomic_fetch_add(&(d)->st.f, 1, __ATOMIC_RELAXED)

static struct domain *find_domain(const char *name, size_t len)
{
    for (int i = 0; i < sec.n; i++)
        if (strlen(sec.d[i].name) == len && memcmp(sec.d[i].name, name, len) == 0) return &sec.d[i];
    return NULL;
}

static int key_allowed(const struct domain *d, const uint8_t *k)
{
    for (int i = 0; i < d->nkeys; i++)
        if (memcmp(d->keys[i], k, 32) == 0) return 1;
    return 0;
}

/* One ZAP request (RFC 27): version, request id, domain, address, identity,
 * mechanism, credentials. Replies 200 for an authorised CURVE key of a
 * known domain, 400 otherwise (an unknown or empty domain is refused: this
 * is the domain enforcement, done here as well as by libzmq). */
static void mon_event(struct domain *d);

/* The monitor events already queued: a connection's ACCEPTED or CONNECTED
 * event is queued before its handshake asks for ZAP, so handling them here
 * first lets conn_note duplicate its socket while libzmq still holds it open
 * (the handshake waits for this reply). */
static void mon_drain(void)
{
    struct domain *who[MAX_DOMAINS];
    int k = 0;
    pthread_mutex_lock(&sec.mu);
    for (int i = 0; i < sec.n; i++)
        if (sec.d[i].mon) who[k++] = &sec.d[i];
    pthread_mutex_unlock(&sec.mu);
    for (int i = 0; i < k; i++)
        for (;;) {
            zmq_pollitem_t it = {.socket = who[i]->mon, .events = ZMQ_POLLIN};
            if (zmq_poll(&it, 1, 0) <= 0) break;
            mon_event(who[i]);
        }
}

static void zap_serve(void *zap)
{
    mon_drain();
    zmq_msg_t f[8];
    int nf = 0, more = 1;
    while (more && nf < 8) {
        zmq_msg_init(&f[nf]);
        if (zmq_msg_recv(&f[nf], zap, 0) < 0) {
            zmq_msg_close(&f[nf]);
            break;
        }
        more = zmq_msg_more(&f[nf]);
        nf++;
    }
    while (more) { /* more frames than RFC 27 has: ignored */
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, zap, 0) < 0)
            more = 0;
        else
            more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    const char *status = "400", *text = "refused";
    char user[41] = "", addr[64] = "?";
    if (nf >= 2) {
        pthread_mutex_lock(&sec.mu);
        struct domain *d = nf >= 6 ? find_domain(zmq_msg_data(&f[2]), zmq_msg_size(&f[2])) : NULL;
        if (nf >= 4) {
            size_t al =
                zmq_msg_size(&f[3]) < sizeof addr - 1 ? zmq_msg_size(&f[3]) : sizeof addr - 1;
            memcpy(addr, zmq_msg_data(&f[3]), al);
            addr[al] = 0;
        }
        bool curve = nf >= 7 && zmq_msg_size(&f[5]) == 5 &&
                     !memcmp(zmq_msg_data(&f[5]), "CURVE", 5) && zmq_msg_size(&f[6]) == 32;
        bool null = nf == 6 && zmq_msg_size(&f[5]) == 4 && !memcmp(zmq_msg_data(&f[5]), "NULL", 4);
        if (curve) zmq_z85_encode(user, zmq_msg_data(&f[6]), 32);
        if (d && !d->server && d->zap_sync && null) {
            /* a plain socket asking only so that its connection is watched */
            status = "200";
            text = "OK";
        } else if (!d || !d->server) {
            text = "unknown ZAP domain";
            fprintf(stderr, "inkflow: refused a %s handshake from %s: unknown ZAP domain\n",
                    curve ? "CURVE" : "non-CURVE", addr);
        } else if (!curve) {
            text = "CURVE required";
            dlog(d, &d->rl_zap, "refused a client from %s: not CURVE", addr);
        } else if (!key_allowed(d, zmq_msg_data(&f[6]))) {
            text = "key not authorised";
            dlog(d, &d->rl_zap, "refused CURVE client key %s from %s: not in authorized_keys", user,
                 addr);
        } else {
            status = "200";
            text = "OK";
        }
        pthread_mutex_unlock(&sec.mu);
    }
    /* reply: version, request id, status code, status text, user id, metadata */
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (nf >= 2)
        zmq_send(zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, status, 3, ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, status[0] == '2' ? user : "", status[0] == '2' ? strlen(user) : 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
    for (int i = 0; i < nf; i++) zmq_msg_close(&f[i]);
}

static const char *fail_reason(int ev, int code)
{
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) return "refused by the ZAP handler";
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        return "handshake broken off (e.g. a client without CURVE that hung up on seeing the "
               "server's mechanism)";
    switch (code) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mechanism mismatch (a client without CURVE, or CURVE on both sides "
               "as servers)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "CURVE decryption failed (the client has the wrong server key)";
    default:
        return "ZMTP protocol error";
    }
}

static void conn_forget(struct domain *d, int i)
{
    if (d->conn[i].dup >= 0) close(d->conn[i].dup);
    d->conn[i].dup = -1;
    d->conn[i].fd = -1;
    d->conn[i].addr[0] = 0;
}

/* A new connection on socket fd. On a socket with a size cap whose
 * handshakes wait for the ZAP handler, keep a duplicate of the socket: when
 * libzmq later reports the disconnect, conn_dropped looks at what is left
 * on it (libzmq 4.3 gives the same events for both, docs/security.md). */
static void conn_note(struct domain *d, int fd, const char *addr)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (d->conn[i].fd == fd) conn_forget(d, i); /* a stale entry of a reused fd */
    int i = d->conn_next;
    conn_forget(d, i);
    d->conn[i].fd = fd;
    if (d->maxmsg > 0 && d->zap_sync) d->conn[i].dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    snprintf(d->conn[i].addr, sizeof d->conn[0].addr, "%s", addr);
    d->conn_next = (i + 1) % MAX_CONNS;
}

/* The connection on fd has ended: its address, and whether libzmq closed it
 * on its own (1: the peer had neither closed it nor reset it, so the socket
 * gave up on a frame over its cap or on a protocol error), 0 when the peer
 * closed it (or we cannot tell). */
static int conn_end(struct domain *d, int fd, char *buf, size_t n)
{
    snprintf(buf, n, "an unknown address");
    for (int i = 0; i < MAX_CONNS; i++)
        if (d->conn[i].fd == fd) {
            snprintf(buf, n, "%s", d->conn[i].addr);
            int dropped = 0;
            if (d->conn[i].dup >= 0) {
                char c;
                ssize_t r = recv(d->conn[i].dup, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                /* unread bytes, or nothing yet and no end of stream */
                dropped = r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            }
            conn_forget(d, i);
            return dropped;
        }
    return 0;
}

static void conn_forget_all(struct domain *d)
{
    for (int i = 0; i < MAX_CONNS; i++) conn_forget(d, i);
}

static void peer_name(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "";
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(buf, n, "an unknown address");
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(buf, n, "a local (ipc) peer");
    }
}

static void mon_event(struct domain *d)
{
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    zmq_msg_init(&b);
    if (zmq_msg_recv(&a, d->mon, 0) < 0) goto out;
    if (!zmq_msg_more(&a) || zmq_msg_recv(&b, d->mon, 0) < 0 || zmq_msg_size(&a) < 6) goto out;
    uint16_t ev;
    uint32_t val;
    memcpy(&ev, zmq_msg_data(&a), 2);
    memcpy(&val, (uint8_t *)zmq_msg_data(&a) + 2, 4);
    char addr[96];
    double now;
    switch (ev) {
    case ZMQ_EVENT_ACCEPTED:
        BUMP(d, accepted);
        peer_name((int)val, addr, sizeof addr);
        conn_note(d, (int)val, addr);
        break;
    case ZMQ_EVENT_CONNECTED:
        BUMP(d, accepted);
        snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&b), (char *)zmq_msg_data(&b));
        conn_note(d, (int)val, addr);
        break;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        now = ink_now();
        __atomic_store(&d->last_open, &now, __ATOMIC_RELAXED);
        BUMP(d, handshakes);
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        BUMP(d, refused_auth);
        d->pending = ev;
        d->pending_code = (int)val;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        BUMP(d, refused_protocol);
        d->pending = ev;
        d->pending_code = (int)val;
        break;
    case ZMQ_EVENT_DISCONNECTED: {
        int dropped = conn_end(d, (int)val, addr, sizeof addr);
        if (d->pending == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            d->pending = 0; /* the ZAP handler logged it, with the key */
        } else if (d->pending) {
            /* one I/O thread: a failure event is followed by its own disconnect */
            dlog(d, &d->rl_mon, "refused a connection from %s: %s", addr,
                 fail_reason(d->pending, d->pending_code));
            d->pending = 0;
        } else {
            /* a peer that leaves is counted, not logged */
            BUMP(d, disconnects);
            if (dropped) {
                BUMP(d, dropped);
                dlog(d, &d->rl_mon,
                     "dropped the connection from %s: a frame over the socket's cap of %lld "
                     "bytes (4 x max_message_bytes), or a ZMTP protocol error",
                     addr, (long long)d->maxmsg);
            }
        }
        break;
    }
    case ZMQ_EVENT_MONITOR_STOPPED: /* the socket is closing: let its connections go */
        conn_forget_all(d);
        break;
    default:
        break;
    }
out:
    zmq_msg_close(&a);
    zmq_msg_close(&b);
}

static void *sec_thread(void *arg)
{
    (void)arg;
    zmq_pollitem_t it[MAX_DOMAINS + 1];
    struct domain *who[MAX_DOMAINS + 1];
    for (;;) {
        pthread_mutex_lock(&sec.mu);
        int k = 0;
        it[k++] = (zmq_pollitem_t){.socket = sec.zap, .events = ZMQ_POLLIN};
        for (int i = 0; i < sec.n; i++)
            if (sec.d[i].mon) {
                who[k] = &sec.d[i];
                it[k++] = (zmq_pollitem_t){.socket = sec.d[i].mon, .events = ZMQ_POLLIN};
            }
        pthread_mutex_unlock(&sec.mu);
        int rc = zmq_poll(it, k, 100);
        if (rc < 0) {
            if (zmq_errno() == EINTR) continue;
            break; /* ETERM: the context is being terminated */
        }
        if (it[0].revents & ZMQ_POLLIN) zap_serve(sec.zap);
        for (int i = 1; i < k; i++)
            if (it[i].revents & ZMQ_POLLIN) mon_event(who[i]);
    }
    /* Forget everything before closing: zmq_ctx_term returns once these are
     * closed, and a later graph in this process starts afresh. */
    pthread_mutex_lock(&sec.mu);
    void *socks[MAX_DOMAINS + 1];
    int ns = 0;
    socks[ns++] = sec.zap;
    for (int i = 0; i < sec.n; i++) {
        if (sec.d[i].mon) socks[ns++] = sec.d[i].mon;
        conn_forget_all(&sec.d[i]);
        free(sec.d[i].keys);
    }
    memset(sec.d, 0, sizeof sec.d);
    sec.n = 0;
    sec.zap = NULL;
    sec.ctx = NULL;
    sec.running = false;
    pthread_mutex_unlock(&sec.mu);
    for (int i = 0; i < ns; i++) {
        int zero = 0;
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(socks[i]);
    }
    return NULL;
}

/* Start the thread for ctx (bound ZAP handler) unless running. Caller holds sec.mu. */
static int sec_start(void *ctx, struct ink_err *err)
{
    if (sec.running) {
        if (sec.ctx != ctx)
            return ink_err_set(err, INK_EINVAL, "graph sockets of two ZeroMQ contexts");
        return 0;
    }
    void *zap = zmq_socket(ctx, ZMQ_REP);
    if (!zap || zmq_bind(zap, "inproc://zeromq.zap.01") != 0) {
        int e = zmq_errno();
        if (zap) zmq_close(zap);
        return ink_err_set(err, INK_EIO, "ZAP handler: bind inproc://zeromq.zap.01: %s",
                           zmq_strerror(e));
    }
    sec.zap = zap;
    sec.ctx = ctx;
    pthread_t th;
    if (pthread_create(&th, NULL, sec_thread, NULL) != 0) {
        zmq_close(zap);
        sec.zap = NULL;
        return ink_err_set(err, INK_EIO, "cannot start the security thread");
    }
    pthread_detach(th);
    sec.running = true;
    return 0;
}

/* Load the allow-list: a file of keys, one a line, or a directory of key
 * files (files named *_secret are skipped). */
static int add_key_line(struct domain *d, int *cap, char *line, const char *path, int lineno,
                        struct ink_err *err)
{
    bool keyline = strstr(line, "public-key") != NULL, assign = strchr(line, '=') != NULL;
    char *k = line_key(line);
    if (!k) return 0;
    /* a zcert file's other lines: sections and metadata */
    if (!keyline && !z85_key(k) && (assign || !strcmp(k, "curve") || !strcmp(k, "metadata")))
        return 0;
    if (!z85_key(k))
        return ink_err_set(err, INK_EINVAL, "%s:%d: not a CURVE public key (40 Z85 characters)",
                           path, lineno);
    if (d->nkeys == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        void *p = realloc(d->keys, (size_t)*cap * 32);
        if (!p) return ink_err_set(err, INK_ENOMEM, "out of memory");
        d->keys = p;
    }
    zmq_z85_decode(d->keys[d->nkeys++], k);
    return 0;
}

static int load_keys_file(struct domain *d, int *cap, const char *path, bool one,
                          struct ink_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return ink_err_set(err, INK_EINVAL, "authorized_keys %s: %s", path, strerror(errno));
    char line[512];
    int lineno = 0, rc = 0, n0 = d->nkeys;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        if (strstr(line, "secret-key")) continue;
        rc = add_key_line(d, cap, line, path, lineno, err);
        if (one && d->nkeys > n0) break;
    }
    fclose(f);
    return rc;
}

static int load_authorized(struct domain *d, const char *path, struct ink_err *err)
{
    int cap = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return ink_err_set(err, INK_EINVAL, "authorized_keys %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return load_keys_file(d, &cap, path, false, err);
    DIR *dir = opendir(path);
    if (!dir) return ink_err_set(err, INK_EINVAL, "authorized_keys %s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || (l > 7 && strcmp(e->d_name + l - 7, "_secret") == 0)) continue;
        char p[4096];
        if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p) continue;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) rc = load_keys_file(d, &cap, p, true, err);
    }
    closedir(dir);
    return rc;
}

/* A key file named in the config: relative to the config's directory. */
static int read_key(const char *base, const char *file, char key[41], bool secret,
                    struct ink_err *err)
{
    char buf[4096];
    const char *p = ink_path_resolve(base, file, buf, sizeof buf);
    if (!p) return ink_err_set(err, INK_EINVAL, "curve: path too long: %s", file);
    return ink_curve_key_read(p, key, secret, err);
}

/* CURVE options on s (before bind/connect). */
static int curve_setup(void *s, const struct ink_zmq_conf *c, struct domain *d, struct ink_err *err)
{
    const struct ink_curve_conf *k = &c->curve;
    char b2[4096], sk[41], pk[41], srv[41];
    if (!k->secret_key_file)
        return ink_err_set(err, INK_EINVAL, "curve: 'secret_key_file' is required");
    if (read_key(c->base_dir, k->secret_key_file, sk, true, err)) return INK_EINVAL;
    if (k->public_key_file) {
        if (read_key(c->base_dir, k->public_key_file, pk, false, err)) return INK_EINVAL;
        char derived[41];
        if (zmq_curve_public(derived, sk) == 0 && strcmp(derived, pk) != 0)
            return ink_err_set(err, INK_EINVAL,
                               "curve: public_key_file does not match secret_key_file");
    } else if (zmq_curve_public(pk, sk) != 0) {
        return ink_err_set(err, INK_EINVAL, "curve: cannot derive the public key");
    }
    if (k->server_key) {
        if (z85_key(k->server_key))
            memcpy(srv, k->server_key, 41);
        else if (read_key(c->base_dir, k->server_key, srv, false, err))
            return INK_EINVAL;
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, srv, 41) ||
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pk, 41) ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sk, 41))
            return ink_err_set(err, INK_EIO, "curve: %s", zmq_strerror(zmq_errno()));
        memset(sk, 0, sizeof sk);
        return 0;
    }
    if (!d)
        return ink_err_set(err, INK_EINVAL,
                           "curve: a CURVE server endpoint needs the engine's ZAP handler "
                           "(graph endpoints only)");
    if (setint(s, ZMQ_CURVE_SERVER, 1) || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sk, 41) ||
        zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, d->name, strlen(d->name)))
        return ink_err_set(err, INK_EIO, "curve: %s", zmq_strerror(zmq_errno()));
    memset(sk, 0, sizeof sk);
    /* zmq.h declares ZMQ_ZAP_ENFORCE_DOMAIN only with the draft API, but
     * libzmq 4.3.4 accepts it by number. Should a libzmq refuse it, the
     * handler (bound before this socket) still refuses every request whose
     * domain is not a known CURVE server node. */
    if (setint(s, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, 1) != 0)
        fprintf(stderr,
                "inkflow: [%s] note: this libzmq refuses ZMQ_ZAP_ENFORCE_DOMAIN; the ZAP "
                "handler checks the domain itself\n",
                d->name);
    d->server = true;
    const char *ak = ink_path_resolve(c->base_dir, k->authorized_keys, b2, sizeof b2);
    if (!ak) return ink_err_set(err, INK_EINVAL, "curve: path too long: %s", k->authorized_keys);
    int rc = load_authorized(d, ak, err);
    if (!rc && d->nkeys == 0)
        rc = ink_err_set(err, INK_EINVAL, "authorized_keys %s holds no key: nobody could connect",
                         ak);
    return rc;
}

void ink_zmq_stats(const char *name, struct ink_zmq_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&sec.mu);
    struct domain *d = name ? find_domain(name, strlen(name)) : NULL;
    if (d) {
        out->accepted = __atomic_load_n(&d->st.accepted, __ATOMIC_RELAXED);
        out->handshakes = __atomic_load_n(&d->st.handshakes, __ATOMIC_RELAXED);
        out->refused_auth = __atomic_load_n(&d->st.refused_auth, __ATOMIC_RELAXED);
        out->refused_protocol = __atomic_load_n(&d->st.refused_protocol, __ATOMIC_RELAXED);
        out->disconnects = __atomic_load_n(&d->st.disconnects, __ATOMIC_RELAXED);
        out->dropped = __atomic_load_n(&d->st.dropped, __ATOMIC_RELAXED);
        /* a failed handshake is counted as refused, not as a disconnect */
        out->open = out->handshakes > out->disconnects ? out->handshakes - out->disconnects : 0;
        __atomic_load(&d->last_open, &out->last_open, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&sec.mu);
}

/* Register node `name` and watch socket s. Caller holds sec.mu. */
static struct domain *sec_domain(void *ctx, void *s, const char *name, int64_t maxmsg,
                                 struct ink_err *err)
{
    if (sec_start(ctx, err)) return NULL;
    if (sec.n == MAX_DOMAINS || strlen(name) >= sizeof sec.d[0].name) {
        ink_err_set(err, INK_EINVAL, "too many ZeroMQ endpoints (or a node name over 63 bytes)");
        return NULL;
    }
    struct domain *d = &sec.d[sec.n];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    for (int i = 0; i < MAX_CONNS; i++) d->conn[i].fd = d->conn[i].dup = -1;
    d->maxmsg = maxmsg;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://inkflow-monitor-%d", sec.mon_seq++);
    int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED |
                 ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                 ZMQ_EVENT_MONITOR_STOPPED;
    void *mon = NULL;
    if (zmq_socket_monitor(s, ep, events) == 0 && (mon = zmq_socket(ctx, ZMQ_PAIR)) &&
        zmq_connect(mon, ep) == 0) {
        d->mon = mon;
    } else {
        if (mon) zmq_close(mon);
        ink_err_set(err, INK_EIO, "socket monitor: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    sec.n++;
    return d;
}

void *ink_zmq_open(void *ctx, int zt, const struct ink_zmq_conf *c, struct ink_err *err)
{
    return ink_zmq_open_node(ctx, zt, c, NULL, err);
}

void *ink_zmq_open_node(void *ctx, int zt, const struct ink_zmq_conf *c, const char *name,
                        struct ink_err *err)
{
    void *s = zmq_socket(ctx, zt);
    if (!s) {
        ink_err_set(err, INK_EIO, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    if (name) {
        pthread_mutex_lock(&sec.mu);
        struct domain *d = sec_domain(ctx, s, name, (int64_t)c->max_message_bytes, err);
        int rc = d ? 0 : INK_EIO;
        if (d && c->curve.set) rc = curve_setup(s, c, d, err);
        if (!rc && d->server) d->zap_sync = true;
        /* A capped plain socket asks the ZAP handler too (which admits it):
         * that holds each handshake until the monitor has seen the
         * connection, so conn_note's duplicate is of the right socket. */
        if (!rc && !c->curve.set && d->maxmsg > 0) {
            if (zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, d->name, strlen(d->name)) == 0)
                d->zap_sync = true;
        }
        pthread_mutex_unlock(&sec.mu);
        if (rc) {
            zmq_close(s);
            return NULL;
        }
    } else if (c->curve.set && curve_setup(s, c, NULL, err)) {
        zmq_close(s);
        return NULL;
    }
    int linger = (int)(c->linger * 1000.0);
    setint(s, ZMQ_LINGER, linger);
    int hwm = c->hwm > 0 ? (int)c->hwm : 1000;
    setint(s, ZMQ_SNDHWM, hwm);
    setint(s, ZMQ_RCVHWM, hwm);
    if (c->max_message_bytes) {
        int64_t m = (int64_t)c->max_message_bytes;
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &m, sizeof m);
    }
    if (c->conflate) setint(s, ZMQ_CONFLATE, 1);
    /* zmq.h declares ZMQ_METADATA only with the draft API; Debian's libzmq
     * 4.3.4 accepts it by its number */
    if (c->metadata && zmq_setsockopt(s, 95 /* ZMQ_METADATA */, c->metadata, strlen(c->metadata)))
        fprintf(stderr,
                "inkflow: note: this libzmq refuses ZMQ_METADATA (%s): inkflow receivers "
                "cannot tell that this sender sends an end of stream\n",
                zmq_strerror(zmq_errno()));
    if (zt == ZMQ_SUB) {
        const char *topic = c->subscribe ? c->subscribe : "";
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic, strlen(topic));
    }
    if (zt == ZMQ_PUB) setint(s, ZMQ_XPUB_NODROP, 1); /* EAGAIN at the HWM, so drops are counted */
    if (zt == ZMQ_ROUTER) setint(s, ZMQ_ROUTER_MANDATORY, 1);
    int rc = c->bind ? zmq_bind(s, c->bind) : zmq_connect(s, c->connect);
    if (rc != 0) {
        ink_err_set(err, INK_EIO, "%s %s: %s", c->bind ? "bind" : "connect",
                    c->bind ? c->bind : c->connect, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}
