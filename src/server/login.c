/* Logging in: HELLO, USER, PASS, lock-outs and registration. Password checks that cost a hash
 * run on the worker pool; the session waits in SESSION_CHECKING meanwhile. */
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/metrics.h"
#include "server/log.h"
#include "server/presence.h"
#include "server/server.h"
#include "server/store.h"
#include "server/worker.h"

/* What a worker job does. */
enum login_job_kind {
    JOB_CHECK,  /* verify a password against a hash */
    JOB_CREATE, /* hash a new password and append the account to the credentials file */
};

/* Registrations from one address are counted over this period (--register-rate is per it). */
#define LOGIN_REGISTER_PERIOD_MS 60000

/* One password check or account creation handed to a worker. */
struct login_job {
    struct login_job *next;  /* in the user's queue of checks waiting their turn */
    struct session *session; /* NULL once the session went away */
    struct user *user;
    struct server *srv;
    struct worker_job *ticket; /* while handed to the worker pool */
    enum login_job_kind kind;
    struct auth_entry entry;
    struct auth_cost cost;
    char password[PROTO_MAX_PASSWORD + 1];
    char hash[256];
    bool ok;
};

/* Frees a job and gives its place among the --max-hash-jobs back. */
static void job_free(struct login_job *job)
{
    assert(job->srv->hash_jobs > 0);
    job->srv->hash_jobs--;
    sodium_memzero(job->password, sizeof(job->password));
    if (job->entry.secret) {
        sodium_memzero(job->entry.secret, strlen(job->entry.secret));
        free(job->entry.secret);
    }
    free(job);
}

/* Returns the wall clock in unix milliseconds: lock-outs are kept across restarts. */
static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns true when the user is locked now, as far as this node knows (the store decides at
 * the end of each attempt: store_lock_attempt). */
static bool is_locked(const struct user *u)
{
    struct lockout l = u->lock;
    return lockout_is_locked(&l, unix_ms());
}

void login_hello(struct session *s, const struct request *r)
{
    const char *t = r->tag;
    if (!proto_slice_eq(r->arg[0], "1")) {
        session_err(s, t, PROTO_E_BAD_VERSION);
        session_close(s);
        return;
    }
    session_ok(s, t, "%d parleyd/%s", PROTO_VERSION, PARLEY_VERSION);
    s->state = SESSION_USERNAME;
}

/* Refuses a locked account and closes the connection. */
static void refuse_locked(struct session *s, const char *tag, int code)
{
    session_err(s, tag, code);
    session_close(s);
}

void login_user(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    const char *tag = r->tag;
    s->user = NULL;
    s->new_account = false;
    s->state = SESSION_USERNAME;
    if (!proto_is_name(r->arg[0])) {
        session_err(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    struct user *u = directory_find(&srv->dir, r->arg[0].ptr, r->arg[0].len);
    if (!u || !u->has_account) {
        if (!srv->cfg.allow_register) {
            metrics_count(METRICS_LOGIN_UNKNOWN);
            session_err(s, tag, PROTO_E_NO_SUCH_USER);
            return;
        }
        if (u && (u->registering || presence_is_online(u))) {
            session_err(s, tag, PROTO_E_ALREADY_ONLINE);
            return;
        }
        /* The name is only remembered here; the directory gets it when the account exists. */
        proto_slice_copy(r->arg[0], s->new_name, sizeof(s->new_name));
        s->new_account = true;
        s->state = SESSION_PASSWORD;
        session_ok(s, tag, "new");
        return;
    }
    /* Locked or online is told only after a password (spec §3.5, §3.8): see login_pass. */
    s->user = u;
    s->state = SESSION_PASSWORD;
    session_ok(s, tag, NULL);
}

static void login_success(struct session *s, const char *tag)
{
    struct user *u = s->user;
    s->state = SESSION_ONLINE;
    metrics_count(METRICS_LOGIN_OK);
    session_touch(s);
    session_ok(s, tag, NULL);
    log_info("%s logged in from %s", u->name, net_peer_addr(s->conn));
    presence_online(s);
    msg_deliver_backlog(s);
}

/* The answer to presence_claim: the user is ours now, or online somewhere already. */
static void claim_answered(struct session *s, int rc)
{
    if (session_live(s)) {
        if (rc == PRESENCE_CLAIMED) {
            login_success(s, s->tag);
        } else {
            s->state = SESSION_USERNAME;
            session_err(s, s->tag,
                        rc == PRESENCE_TAKEN ? PROTO_E_ALREADY_ONLINE : PROTO_E_STORE_UNAVAILABLE);
        }
    }
    session_resume(s);
}

/* Logs in a session whose password (or new account) is settled, unless its user is online. */
static void claim_user(struct session *s)
{
    session_wait(s);
    presence_claim(s, claim_answered);
}

/* Applies the store's verdict on a password check. */
static void apply_verdict(struct session *s, enum store_lock_verdict v)
{
    struct server *srv = s->srv;
    struct user *u = s->user;
    const char *tag = s->tag;
    switch (v) {
    case STORE_LOCK_LOCKED:
        metrics_count(METRICS_LOGIN_LOCKED);
        refuse_locked(s, tag, PROTO_E_LOCKED);
        return;
    case STORE_LOCK_PASS:
        claim_user(s);
        return;
    case STORE_LOCK_WRONG:
    case STORE_LOCK_NOW_LOCKED:
        break;
    }
    metrics_count(METRICS_LOGIN_WRONG_PASSWORD);
    log_info("wrong password for %s from %s", u->name, net_peer_addr(s->conn));
    if (v == STORE_LOCK_NOW_LOCKED) {
        log_info("%s locked for %ld s", u->name, srv->cfg.block_duration);
        refuse_locked(s, tag, PROTO_E_LOCKED_NOW);
        return;
    }
    session_err(s, tag, PROTO_E_BAD_PASSWORD);
}

/* The store counted the attempt (store_lock_attempt). */
static void lock_decided(void *arg, int rc, enum store_lock_verdict v, const struct store_lock *l)
{
    struct session *s = arg;
    if (rc == 0)
        s->user->lock = (struct lockout){l->failures, l->locked_until};
    if (session_live(s)) {
        if (rc < 0) {
            log_error("store: cannot count a login of %s: %s", s->user->name,
                      store_error(s->srv->store));
            session_err(s, s->tag, PROTO_E_STORE_UNAVAILABLE);
        } else {
            apply_verdict(s, v);
        }
    }
    session_resume(s);
}

/* Applies the outcome of a password check: the store counts it, then decides. */
static void finish_check(struct session *s, const char *tag, bool ok)
{
    struct server *srv = s->srv;
    s->state = SESSION_PASSWORD;
    if (tag != s->tag)
        snprintf(s->tag, sizeof(s->tag), "%s", tag);
    struct store_lock_policy policy = {srv->cfg.max_failures, srv->cfg.block_duration};
    session_wait(s);
    store_lock_attempt(srv->store, s->user->name, ok, unix_ms(), &policy, lock_decided, s);
}

/* The store recorded (or failed to record) a new account for the other nodes. */
static void account_shared(void *arg, int rc)
{
    const struct user *u = arg;
    if (rc < 0)
        log_error("store: cannot share the new account %s with the other nodes", u->name);
}

/* Applies the outcome of an account creation. */
static void finish_create(struct server *srv, struct session *s, struct login_job *job)
{
    struct user *u = directory_find(&srv->dir, job->entry.name, strlen(job->entry.name));
    if (u)
        u->registering = false;
    if (job->ok && u && directory_set_account(u, AUTH_ARGON2ID, job->hash) == 0) {
        log_info("new account %s", u->name);
        store_account_add(srv->store, u->name, job->hash, account_shared, u);
    } else {
        job->ok = false;
    }
    if (!s)
        return;
    if (!job->ok) {
        s->state = SESSION_USERNAME;
        session_err(s, s->tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    s->new_account = false;
    claim_user(s);
}

static void job_run(void *arg)
{
    struct login_job *job = arg;
    if (job->kind == JOB_CHECK) {
        job->ok = auth_check(&job->entry, job->password);
        return;
    }
    job->ok = auth_hash(job->password, &job->cost, job->hash, sizeof(job->hash)) == 0 &&
              auth_append(job->srv->cfg.credentials, job->entry.name, job->hash) == 0;
}

static void job_done(void *arg);

/* Refuses a PASS because the server already has --max-hash-jobs hashes queued or running; the
 * session stays where it was, so the client may send PASS again. */
static void refuse_busy(struct session *s, const char *tag)
{
    s->state = SESSION_PASSWORD;
    session_err(s, tag, PROTO_E_BUSY);
}

/* Fails a job that could not be handed to a worker. */
static void job_refused(struct login_job *job)
{
    struct session *s = job->session;
    if (s) {
        s->job = NULL;
        refuse_busy(s, s->tag);
    }
    job_free(job);
}

/* Starts the next waiting password check of `u`. Checks of one user run one at a time, in the
 * order they arrived, so parallel guesses are counted as if made one after another and none
 * can finish after a third failure without seeing the lock. A check for an account that is
 * locked by now is answered at once: no hash is spent on it. */
static void next_check(struct user *u)
{
    while (!u->checking && u->check_queue) {
        struct login_job *job = u->check_queue;
        struct session *s = job->session;
        u->check_queue = job->next;
        assert(s && s->job == job); /* login_abandon takes abandoned checks out */
        if (is_locked(u)) {
            s->job = NULL;
            job_free(job);
            refuse_locked(s, s->tag, PROTO_E_LOCKED);
            continue;
        }
        job->ticket = worker_submit(job->srv->workers, job_run, job_done, job);
        if (!job->ticket) {
            job_refused(job);
            continue;
        }
        u->checking = true;
    }
}

static void job_done(void *arg)
{
    struct login_job *job = arg;
    struct session *s = job->session;
    job->ticket = NULL;
    if (s)
        s->job = NULL;
    if (s && s->state != SESSION_CHECKING)
        s = NULL; /* it is on its way out: only the account (if any) is kept */
    if (job->kind == JOB_CREATE) {
        finish_create(job->srv, s, job);
    } else {
        if (s)
            finish_check(s, s->tag, job->ok);
        job->user->checking = false;
        next_check(job->user);
    }
    job_free(job);
}

/* Takes a check that waits its turn out of its user's queue. */
static void unqueue_check(struct login_job *job)
{
    struct login_job **p = &job->user->check_queue;
    while (*p && *p != job)
        p = &(*p)->next;
    assert(*p == job);
    *p = job->next;
}

/* Drops a job that had not started: no hash is spent on a connection that is gone. A check
 * that held its user's turn passes the turn on. */
static void drop_job(struct login_job *job)
{
    struct user *u = job->user;
    bool held_turn = job->kind == JOB_CHECK && job->ticket != NULL;
    if (job->kind == JOB_CREATE)
        u->registering = false;
    else if (held_turn)
        u->checking = false;
    else
        unqueue_check(job);
    job_free(job);
    if (held_turn)
        next_check(u);
}

void login_abandon(struct session *s)
{
    struct login_job *job = s->job;
    s->job = NULL;
    if (!job)
        return;
    job->session = NULL;
    if (!job->ticket || worker_cancel(job->srv->workers, job->ticket))
        drop_job(job);
}

/* Hands a check or a creation to a worker; the reply comes from job_done. */
static void start_job(struct session *s, enum login_job_kind kind, const struct request *r)
{
    struct server *srv = s->srv;
    struct login_job *job = calloc(1, sizeof(*job));
    if (!job) {
        refuse_busy(s, r->tag);
        return;
    }
    srv->hash_jobs++;
    job->session = s;
    job->srv = srv;
    job->kind = kind;
    job->cost.ops = srv->cfg.hash_ops;
    job->cost.mem = srv->cfg.hash_mem;
    memcpy(job->entry.name, s->user->name, sizeof(job->entry.name));
    job->entry.kind = s->user->kind;
    proto_slice_copy(r->arg[0], job->password, sizeof(job->password));
    job->user = s->user;
    if (kind == JOB_CHECK && !(job->entry.secret = strdup(s->user->secret)))
        goto fail;
    if (kind == JOB_CREATE && !(job->ticket = worker_submit(srv->workers, job_run, job_done, job)))
        goto fail;
    memcpy(s->tag, r->tag, sizeof(s->tag));
    s->job = job;
    s->state = SESSION_CHECKING;
    if (kind == JOB_CREATE) {
        s->user->registering = true;
        return;
    }
    struct login_job **tail = &s->user->check_queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = job;
    next_check(s->user);
    return;
fail:
    job_free(job);
    refuse_busy(s, r->tag);
}

/* Returns true when a new password hash may be queued now (--max-hash-jobs). */
static bool hash_room(const struct server *srv)
{
    return srv->hash_jobs < srv->cfg.max_hash_jobs;
}

/* PASS after `OK new`: the account is created unless someone took the name meanwhile, the
 * server has no room for another hash, or this address registered too often. */
static void start_registration(struct session *s, const struct request *r)
{
    struct server *srv = s->srv;
    struct user *u = directory_find(&srv->dir, s->new_name, strlen(s->new_name));
    if (u && (u->has_account || u->registering || presence_is_online(u))) {
        s->state = SESSION_USERNAME;
        session_err(s, r->tag, PROTO_E_ALREADY_ONLINE);
        return;
    }
    if (!hash_room(srv)) {
        refuse_busy(s, r->tag);
        return;
    }
    if (!ratelimit_table_take(&srv->register_limits, net_peer_addr(s->conn), server_now_ms(),
                              srv->cfg.register_rate, LOGIN_REGISTER_PERIOD_MS,
                              srv->cfg.register_rate)) {
        log_info("registration from %s refused: --register-rate", net_peer_addr(s->conn));
        session_err(s, r->tag, PROTO_E_RATE_LIMITED);
        return;
    }
    s->user = u ? u : directory_add(&srv->dir, s->new_name);
    if (!s->user) {
        s->state = SESSION_USERNAME;
        session_err(s, r->tag, PROTO_E_STORE_UNAVAILABLE);
        return;
    }
    start_job(s, JOB_CREATE, r);
}

void login_pass(struct session *s, const struct request *r)
{
    struct user *u = s->user;
    const char *tag = r->tag;
    if (!proto_is_password(r->arg[0])) {
        session_err(s, tag, PROTO_E_BAD_REQUEST);
        return;
    }
    if (s->new_account) {
        start_registration(s, r);
        return;
    }
    if (!u->has_account) {
        s->state = SESSION_USERNAME;
        metrics_count(METRICS_LOGIN_UNKNOWN);
        session_err(s, tag, PROTO_E_NO_SUCH_USER);
        return;
    }
    if (is_locked(u)) {
        /* Not checked and not counted: the answer says nothing about the password. */
        metrics_count(METRICS_LOGIN_LOCKED);
        refuse_locked(s, tag, PROTO_E_LOCKED);
        return;
    }
    struct auth_entry e = {.kind = u->kind, .secret = u->secret};
    if (auth_check_is_slow(&e)) {
        if (hash_room(s->srv))
            start_job(s, JOB_CHECK, r);
        else
            refuse_busy(s, tag);
        return;
    }
    char password[PROTO_MAX_PASSWORD + 1];
    proto_slice_copy(r->arg[0], password, sizeof(password));
    bool ok = auth_check(&e, password);
    sodium_memzero(password, sizeof(password));
    finish_check(s, tag, ok);
}
