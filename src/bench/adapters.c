/* The three protocols parley-bench speaks: Parley (docs/PROTOCOL.md), Redis RESP3 pub/sub and
 * lists, and MQTT 3.1.1 at QoS 0. Each turns "send this message" into bytes in a connection's
 * output buffer and turns input bytes into the hooks of bench.h. The message text is the same
 * for all three: `<16 hex: intended send time ns> <8 hex: sender> <8 hex: seq>` padded to
 * o.size bytes. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"

#define PAYLOAD_HEAD 34 /* 16 + 1 + 8 + 1 + 8 */

enum { RK_OTHER, RK_MESSAGE, RK_SUBSCRIBE };

static const char hexdig[] = "0123456789abcdef";

static void put_hex(char *dst, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        dst[i] = hexdig[v & 15];
        v >>= 4;
    }
}

/* Writes a decimal number; returns its length. */
static size_t put_dec(char *dst, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

static void put_payload(char *dst, uint64_t t, uint32_t src, uint32_t seq)
{
    memcpy(dst, B.payload, (size_t)B.o.size);
    put_hex(dst, t, 16);
    dst[16] = ' ';
    put_hex(dst + 17, src, 8);
    dst[25] = ' ';
    put_hex(dst + 26, seq, 8);
}

static void fail_conn(struct bconn *c, const char *why, const char *detail, size_t len)
{
    if (B.setup_fail + B.conn_errors < 5)
        fprintf(stderr, "parley-bench: connection %u (user %u): %s: %.*s\n", c->id, c->user, why,
                (int)(len > 120 ? 120 : len), detail);
    if (c->state == CS_HANDSHAKE)
        B.setup_fail++;
    else
        B.conn_errors++;
    conn_close(c);
    hook_closed(c, false);
}

static void check_ready(struct bconn *c)
{
    bool wants_sub = B.o.target != TGT_PARLEY && (c->role & (ROLE_RECIPIENT | ROLE_BCAST_SUB));
    if (c->state == CS_HANDSHAKE && c->hello_done && (!wants_sub || c->sub_done)) {
        c->state = CS_READY;
        hook_ready(c);
    }
}

/* ---- Parley ------------------------------------------------------------------------------ */

static void parley_handshake(struct bconn *c)
{
    char *p = conn_reserve(c, 128 + strlen(B.o.password));
    if (!p)
        return;
    int n = snprintf(p, 128 + strlen(B.o.password),
                     "h1 HELLO 1 parley-bench\nh2 USER %c%u\nh3 PASS %s\n",
                     (c->role & ROLE_STORM) ? 's' : 'u', c->user, B.o.password);
    conn_commit(c, (size_t)n);
}

/* `<tag> <verb> [u<to> ]<payload>\n` */
static void parley_request(struct bconn *c, const char *verb, size_t vlen, bool has_to, uint32_t to,
                           uint64_t t, uint32_t seq)
{
    size_t need = 20 + vlen + 12 + (size_t)B.o.size;
    char *p = conn_reserve(c, need);
    if (!p) {
        fail_conn(c, "output", "too much queued", 15);
        return;
    }
    size_t n = 0;
    p[n++] = 'm';
    uint64_t tag = ++c->tag;
    int w = 1;
    while (w < 15 && (tag >> (4 * w)))
        w++;
    put_hex(p + n, tag, w);
    n += (size_t)w;
    p[n++] = ' ';
    memcpy(p + n, verb, vlen);
    n += vlen;
    p[n++] = ' ';
    if (has_to) {
        p[n++] = 'u';
        n += put_dec(p + n, to);
        p[n++] = ' ';
    }
    put_payload(p + n, t, c->id, seq);
    n += (size_t)B.o.size;
    p[n++] = '\n';
    conn_commit(c, n);
}

/* Skips one field and its separator; returns false when none is left. */
static bool skip_field(const char **p, size_t *n)
{
    const char *sp = memchr(*p, ' ', *n);
    if (!sp)
        return false;
    *n -= (size_t)(sp + 1 - *p);
    *p = sp + 1;
    return true;
}

static void parley_event(struct bconn *c, const char *p, size_t n)
{
    if (n > 4 && memcmp(p, "MSG ", 4) == 0) {
        p += 4;
        n -= 4;
        uint64_t id = 0;
        while (n && *p >= '0' && *p <= '9') {
            id = id * 10 + (uint64_t)(*p - '0');
            p++;
            n--;
        }
        /* " <from> <time> <text>" */
        if (!n || *p != ' ')
            return;
        p++;
        n--;
        if (!skip_field(&p, &n) || !skip_field(&p, &n))
            return;
        if (id > c->max_id)
            c->max_id = id;
        hook_delivery(c, p, n);
    } else if (n > 6 && memcmp(p, "BCAST ", 6) == 0) {
        p += 6;
        n -= 6;
        if (skip_field(&p, &n))
            hook_delivery(c, p, n);
    } else if ((n > 6 && memcmp(p, "LOGIN ", 6) == 0) || (n > 7 && memcmp(p, "LOGOUT ", 7) == 0)) {
        B.presence++;
    } else if (n > 4 && memcmp(p, "BYE ", 4) == 0) {
        B.byes++;
        if (B.byes < 5)
            fprintf(stderr, "parley-bench: connection %u: * %.*s\n", c->id, (int)n, p);
    }
}

static void parley_line(struct bconn *c, const char *l, size_t n)
{
    if (n >= 2 && l[0] == '*' && l[1] == ' ') {
        parley_event(c, l + 2, n - 2);
        return;
    }
    const char *sp = memchr(l, ' ', n);
    if (!sp)
        return;
    size_t rest = n - (size_t)(sp + 1 - l);
    bool ok = rest >= 2 && sp[1] == 'O' && sp[2] == 'K';
    if (l[0] == 'm') {
        if (!ok) {
            c->errors++;
            if (c->errors < 3 && B.measuring)
                fprintf(stderr, "parley-bench: connection %u: %.*s\n", c->id, (int)n, l);
        }
        hook_reply(c, ok);
    } else if (l[0] == 'h') {
        if (!ok) {
            fail_conn(c, "login refused", l, n);
            return;
        }
        if (l[1] == '3' && l[2] == ' ') {
            c->hello_done = true;
            check_ready(c);
        }
    }
    /* "L OK": the server closes the connection next. */
}

static size_t parley_parse(struct bconn *c, const char *buf, size_t len)
{
    size_t pos = 0;
    while (pos < len && c->state != CS_CLOSED) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (buf + pos));
        parley_line(c, buf + pos, n);
        pos += n + 1;
    }
    return pos;
}

/* ---- Redis (RESP3) ----------------------------------------------------------------------- */

/* `*<argc>\r\n` then `$<len>\r\n<arg>\r\n` per argument; arguments given as (ptr, len) pairs,
 * a NULL pointer meaning "the payload". */
struct rarg {
    const char *p;
    size_t n;
};

static void resp_command(struct bconn *c, const struct rarg *a, int argc, uint64_t t, uint32_t seq)
{
    size_t need = 16;
    for (int i = 0; i < argc; i++)
        need += 16 + (a[i].p ? a[i].n : (size_t)B.o.size);
    char *p = conn_reserve(c, need);
    if (!p) {
        fail_conn(c, "output", "too much queued", 15);
        return;
    }
    size_t n = 0;
    p[n++] = '*';
    n += put_dec(p + n, (uint64_t)argc);
    p[n++] = '\r';
    p[n++] = '\n';
    for (int i = 0; i < argc; i++) {
        size_t len = a[i].p ? a[i].n : (size_t)B.o.size;
        p[n++] = '$';
        n += put_dec(p + n, len);
        p[n++] = '\r';
        p[n++] = '\n';
        if (a[i].p)
            memcpy(p + n, a[i].p, len);
        else
            put_payload(p + n, t, c->id, seq);
        n += len;
        p[n++] = '\r';
        p[n++] = '\n';
    }
    conn_commit(c, n);
}

/* Formats `<prefix><number>` into `buf`; returns its length. */
static size_t name_of(char *buf, const char *prefix, uint32_t user)
{
    size_t k = strlen(prefix);
    memcpy(buf, prefix, k);
    return k + put_dec(buf + k, user);
}

static void redis_handshake(struct bconn *c)
{
    struct rarg hello[2] = {{"HELLO", 5}, {"3", 1}};
    resp_command(c, hello, 2, 0, 0);
    char ch[32];
    if (c->role & ROLE_RECIPIENT) {
        struct rarg sub[2] = {{"SUBSCRIBE", 9}, {ch, name_of(ch, "u", c->user)}};
        resp_command(c, sub, 2, 0, 0);
    } else if (c->role & ROLE_BCAST_SUB) {
        struct rarg sub[2] = {{"SUBSCRIBE", 9}, {"bcast", 5}};
        resp_command(c, sub, 2, 0, 0);
    }
}

static void redis_top_done(struct bconn *c)
{
    struct resp_state *r = &c->resp;
    if (r->top == '%' && !c->hello_done) {
        c->hello_done = true;
        check_ready(c);
    } else if (r->top == '>') {
        if (r->kind == RK_SUBSCRIBE) {
            c->sub_done = true;
            check_ready(c);
        }
    } else if (r->top == '*') {
        hook_reply(c, true); /* LRANGE */
    }
}

static void redis_elem_done(struct bconn *c)
{
    struct resp_state *r = &c->resp;
    for (;;) {
        if (r->depth == 0) {
            redis_top_done(c);
            return;
        }
        if (--r->left[r->depth] > 0) {
            if (r->depth == 1)
                r->idx++;
            return;
        }
        r->depth--;
    }
}

static void redis_scalar(struct bconn *c, char t, const char *data, size_t n)
{
    struct resp_state *r = &c->resp;
    if (r->depth == 0) {
        bool err = t == '-' || t == '!';
        if (!c->hello_done || (c->state == CS_HANDSHAKE && err)) {
            fail_conn(c, "redis handshake", data ? data : "", data ? n : 0);
            return;
        }
        if (err) {
            c->errors++;
            if (c->errors < 3)
                fprintf(stderr, "parley-bench: redis: %.*s\n", (int)n, data);
        }
        hook_reply(c, !err);
        return;
    }
    if (r->depth == 1) {
        if (r->top == '>') {
            if (r->idx == 0 && data) {
                if (n == 7 && memcmp(data, "message", 7) == 0)
                    r->kind = RK_MESSAGE;
                else if (n == 9 && memcmp(data, "subscribe", 9) == 0)
                    r->kind = RK_SUBSCRIBE;
                else
                    r->kind = RK_OTHER;
            } else if (r->idx == 2 && r->kind == RK_MESSAGE && data) {
                hook_delivery(c, data, n);
            }
        } else if (r->top == '*' && (c->role & ROLE_DRAIN) && data && t == '$') {
            hook_delivery(c, data, n);
        }
    }
    if (c->state != CS_CLOSED)
        redis_elem_done(c);
}

static int64_t parse_int(const char *p, const char *end)
{
    bool neg = p < end && *p == '-';
    if (neg)
        p++;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    return neg ? -v : v;
}

static size_t redis_parse(struct bconn *c, const char *buf, size_t len)
{
    struct resp_state *r = &c->resp;
    size_t pos = 0;
    while (pos < len && c->state != CS_CLOSED) {
        const char *p = buf + pos;
        const char *nl = memchr(p, '\n', len - pos);
        if (!nl)
            break;
        size_t hl = (size_t)(nl - p) + 1;
        const char *end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        char t = p[0];
        switch (t) {
        case '*':
        case '>':
        case '%':
        case '~':
        case '|': {
            int64_t num = parse_int(p + 1, end);
            if (t == '%' || t == '|')
                num *= 2;
            if (r->depth == 0) {
                r->top = t;
                r->idx = 0;
                r->kind = RK_OTHER;
            }
            pos += hl;
            if (num <= 0) {
                redis_elem_done(c);
            } else if (r->depth >= 7) {
                fail_conn(c, "redis", "nesting too deep", 16);
            } else {
                r->left[++r->depth] = num;
            }
            break;
        }
        case '$':
        case '=':
        case '!': {
            int64_t num = parse_int(p + 1, end);
            if (num < 0) {
                pos += hl;
                redis_scalar(c, '_', NULL, 0);
                break;
            }
            if (len - pos < hl + (size_t)num + 2)
                return pos;
            pos += hl + (size_t)num + 2;
            redis_scalar(c, t, p + hl, (size_t)num);
            break;
        }
        default:
            pos += hl;
            redis_scalar(c, t, p + 1, (size_t)(end - (p + 1)));
            break;
        }
    }
    return pos;
}

/* ---- MQTT 3.1.1 -------------------------------------------------------------------------- */

static size_t mqtt_varint(char *p, size_t v)
{
    size_t n = 0;
    do {
        unsigned char b = (unsigned char)(v % 128);
        v /= 128;
        if (v)
            b |= 128;
        p[n++] = (char)b;
    } while (v);
    return n;
}

static void mqtt_packet(struct bconn *c, unsigned char type, const char *var, size_t vlen,
                        bool payload, uint64_t t, uint32_t seq)
{
    size_t body = vlen + (payload ? (size_t)B.o.size : 0);
    char *p = conn_reserve(c, body + 8);
    if (!p) {
        fail_conn(c, "output", "too much queued", 15);
        return;
    }
    size_t n = 0;
    p[n++] = (char)type;
    n += mqtt_varint(p + n, body);
    memcpy(p + n, var, vlen);
    n += vlen;
    if (payload) {
        put_payload(p + n, t, c->id, seq);
        n += (size_t)B.o.size;
    }
    conn_commit(c, n);
}

/* A two-byte length then the string; returns bytes written. */
static size_t mqtt_str(char *p, const char *s, size_t n)
{
    p[0] = (char)(n >> 8);
    p[1] = (char)(n & 255);
    memcpy(p + 2, s, n);
    return n + 2;
}

static void mqtt_handshake(struct bconn *c)
{
    char v[96], id[40];
    size_t n = 0;
    n += mqtt_str(v + n, "MQTT", 4);
    v[n++] = 4; /* protocol level 3.1.1 */
    v[n++] = 2; /* clean session */
    v[n++] = 0; /* keep-alive off */
    v[n++] = 0;
    int il = snprintf(id, sizeof(id), "pb%d-%u", (int)getpid(), c->id);
    n += mqtt_str(v + n, id, (size_t)il);
    mqtt_packet(c, 0x10, v, n, false, 0, 0);
    if (c->role & (ROLE_RECIPIENT | ROLE_BCAST_SUB)) {
        char topic[32];
        size_t tl;
        if (c->role & ROLE_RECIPIENT) {
            tl = name_of(topic, "u", c->user);
        } else {
            memcpy(topic, "bcast", 5);
            tl = 5;
        }
        n = 0;
        v[n++] = 0; /* packet id 1 */
        v[n++] = 1;
        n += mqtt_str(v + n, topic, tl);
        v[n++] = 0; /* QoS 0 */
        mqtt_packet(c, 0x82, v, n, false, 0, 0);
    }
}

static void mqtt_publish(struct bconn *c, const char *topic, size_t tl, uint64_t t, uint32_t seq)
{
    char v[40];
    size_t n = mqtt_str(v, topic, tl);
    mqtt_packet(c, 0x30, v, n, true, t, seq);
}

static size_t mqtt_parse(struct bconn *c, const char *buf, size_t len)
{
    size_t pos = 0;
    while (pos < len && c->state != CS_CLOSED) {
        const unsigned char *p = (const unsigned char *)buf + pos;
        size_t avail = len - pos, rl = 0, i = 1, mult = 1;
        bool complete = false;
        while (i < avail && i <= 4) {
            unsigned char b = p[i++];
            rl += (size_t)(b & 127) * mult;
            mult *= 128;
            if (!(b & 128)) {
                complete = true;
                break;
            }
        }
        if (!complete) {
            if (i > 4) {
                fail_conn(c, "mqtt", "bad length", 10);
                return pos;
            }
            break;
        }
        if (avail - i < rl)
            break;
        const unsigned char *body = p + i;
        switch (p[0] >> 4) {
        case 2: /* CONNACK */
            if (rl >= 2 && body[1] == 0) {
                c->hello_done = true;
                check_ready(c);
            } else {
                fail_conn(c, "mqtt", "connection refused", 18);
            }
            break;
        case 9: /* SUBACK */
            if (rl >= 3 && body[2] == 0x80) {
                fail_conn(c, "mqtt", "subscription refused", 20);
            } else {
                c->sub_done = true;
                check_ready(c);
            }
            break;
        case 3: { /* PUBLISH */
            if (rl < 2)
                break;
            size_t off = 2 + (((size_t)body[0] << 8) | body[1]);
            if (p[0] & 6)
                off += 2;
            if (off <= rl)
                hook_delivery(c, (const char *)body + off, rl - off);
            break;
        }
        default:
            break;
        }
        pos += i + rl;
    }
    return pos;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

void ad_handshake(struct bconn *c)
{
    switch (B.o.target) {
    case TGT_PARLEY:
        parley_handshake(c);
        break;
    case TGT_REDIS:
        redis_handshake(c);
        break;
    case TGT_MQTT:
        mqtt_handshake(c);
        break;
    }
}

void ad_send_direct(struct bconn *c, uint32_t to_user, uint64_t t, uint32_t seq)
{
    char ch[32];
    switch (B.o.target) {
    case TGT_PARLEY:
        parley_request(c, "MSG", 3, true, to_user, t, seq);
        break;
    case TGT_REDIS: {
        struct rarg a[3] = {{"PUBLISH", 7}, {ch, name_of(ch, "u", to_user)}, {NULL, 0}};
        resp_command(c, a, 3, t, seq);
        break;
    }
    case TGT_MQTT:
        mqtt_publish(c, ch, name_of(ch, "u", to_user), t, seq);
        break;
    }
    c->sent++;
}

void ad_send_bcast(struct bconn *c, uint64_t t, uint32_t seq)
{
    switch (B.o.target) {
    case TGT_PARLEY:
        parley_request(c, "BCAST", 5, false, 0, t, seq);
        break;
    case TGT_REDIS: {
        struct rarg a[3] = {{"PUBLISH", 7}, {"bcast", 5}, {NULL, 0}};
        resp_command(c, a, 3, t, seq);
        break;
    }
    case TGT_MQTT:
        mqtt_publish(c, "bcast", 5, t, seq);
        break;
    }
    c->sent++;
}

void ad_send_store(struct bconn *c, uint32_t to_user, uint64_t t, uint32_t seq)
{
    char key[32];
    switch (B.o.target) {
    case TGT_PARLEY:
        parley_request(c, "MSG", 3, true, to_user, t, seq);
        break;
    case TGT_REDIS: {
        struct rarg a[3] = {{"RPUSH", 5}, {key, name_of(key, "q:u", to_user)}, {NULL, 0}};
        resp_command(c, a, 3, t, seq);
        break;
    }
    case TGT_MQTT:
        break;
    }
    c->sent++;
}

void ad_drain(struct bconn *c)
{
    if (B.o.target != TGT_REDIS)
        return; /* Parley sends the backlog at login */
    char key[32];
    struct rarg a[4] = {{"LRANGE", 6}, {key, name_of(key, "q:u", c->user)}, {"0", 1}, {"-1", 2}};
    resp_command(c, a, 4, 0, 0);
}

void ad_logout(struct bconn *c)
{
    c->logout_sent = true;
    if (B.o.target == TGT_PARLEY) {
        char *p = conn_reserve(c, 16);
        if (p) {
            memcpy(p, "L LOGOUT\n", 9);
            conn_commit(c, 9);
        }
    }
}

size_t ad_parse(struct bconn *c, const char *buf, size_t len)
{
    c->received++;
    switch (B.o.target) {
    case TGT_PARLEY:
        return parley_parse(c, buf, len);
    case TGT_REDIS:
        return redis_parse(c, buf, len);
    case TGT_MQTT:
        return mqtt_parse(c, buf, len);
    }
    return len;
}

void ad_batch_end(struct bconn *c)
{
    if (B.o.target != TGT_PARLEY || c->max_id <= c->acked_id || c->state != CS_READY)
        return;
    char *p = conn_reserve(c, 32);
    if (!p)
        return;
    memcpy(p, "* ACK ", 6);
    size_t n = 6 + put_dec(p + 6, c->max_id);
    p[n++] = '\n';
    conn_commit(c, n);
    c->acked_id = c->max_id;
}
