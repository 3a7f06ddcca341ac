#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define WINDOW_NS (60ull * 1000000000ull)
#define KEY_MAX 128

typedef struct entry {
    char key[KEY_MAX];
    uint64_t window_start; /* start of the current fixed window (ns) */
    long cur, prev;        /* IP: attempts in the current and previous window; user: open conns */
    struct entry *next;
} entry;

typedef struct table {
    entry **slots;
    size_t n_slots, n;
} table;

struct ratelimit {
    long per_ip, per_user;
    table ips, users;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void table_grow(table *t)
{
    size_t n = t->n_slots ? t->n_slots * 2 : 64;
    entry **slots = xcalloc(n, sizeof *slots);
    for (size_t i = 0; i < t->n_slots; i++) {
        for (entry *e = t->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t j = hash(e->key) & (n - 1);
            e->next = slots[j];
            slots[j] = e;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->n_slots = n;
}

static entry *table_get(table *t, const char *key, int create)
{
    if (t->n_slots != 0) {
        for (entry *e = t->slots[hash(key) & (t->n_slots - 1)]; e != NULL; e = e->next) {
            if (strcmp(e->key, key) == 0)
                return e;
        }
    }
    if (!create)
        return NULL;
    if (t->n + 1 > t->n_slots)
        table_grow(t);
    entry *e = xcalloc(1, sizeof *e);
    strncpy(e->key, key, KEY_MAX - 1);
    size_t j = hash(e->key) & (t->n_slots - 1);
    e->next = t->slots[j];
    t->slots[j] = e;
    t->n++;
    return e;
}

static void table_del(table *t, const entry *victim)
{
    entry **pp = &t->slots[hash(victim->key) & (t->n_slots - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == victim) {
            entry *e = *pp;
            *pp = e->next;
            free(e);
            t->n--;
            return;
        }
    }
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n_slots; i++) {
        for (entry *e = t->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(t->slots);
}

ratelimit *ratelimit_new(long per_ip_per_min, long per_user)
{
    ratelimit *rl = xcalloc(1, sizeof *rl);
    rl->per_ip = per_ip_per_min;
    rl->per_user = per_user;
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (rl == NULL)
        return;
    table_free(&rl->ips);
    table_free(&rl->users);
    free(rl);
}

/* Moves e's fixed windows forward to the one containing now. */
static void roll(entry *e, uint64_t now)
{
    if (now - e->window_start >= 2 * WINDOW_NS) {
        e->prev = 0;
        e->cur = 0;
        e->window_start = now;
    } else if (now - e->window_start >= WINDOW_NS) {
        e->prev = e->cur;
        e->cur = 0;
        e->window_start += WINDOW_NS;
    }
}

int ratelimit_ip_admit(ratelimit *rl, const char *ip, uint64_t now_ns)
{
    if (rl->per_ip <= 0)
        return 0;
    entry *e = table_get(&rl->ips, ip, 1);
    if (e->window_start == 0)
        e->window_start = now_ns;
    roll(e, now_ns);
    /* Sliding-window estimate: the previous window weighted by how much of it still overlaps. */
    double elapsed = (double)(now_ns - e->window_start) / (double)WINDOW_NS;
    double count = (double)e->prev * (1.0 - elapsed) + (double)e->cur;
    if (count + 1.0 > (double)rl->per_ip) {
        /* Retry once the current fixed window turns (the estimate may still be over then, in
         * which case the client is told again). */
        int secs = (int)((1.0 - elapsed) * 60.0) + 1;
        return secs < 1 ? 1 : secs;
    }
    e->cur++;
    return 0;
}

int ratelimit_user_acquire(ratelimit *rl, const char *user)
{
    entry *e = table_get(&rl->users, user, 1);
    if (rl->per_user > 0 && e->cur >= rl->per_user) {
        if (e->cur == 0)
            table_del(&rl->users, e);
        return -1;
    }
    e->cur++;
    return 0;
}

void ratelimit_user_release(ratelimit *rl, const char *user)
{
    entry *e = table_get(&rl->users, user, 0);
    if (e == NULL)
        return;
    if (--e->cur <= 0)
        table_del(&rl->users, e);
}

long ratelimit_user_count(const ratelimit *rl, const char *user)
{
    entry *e = table_get((table *)&rl->users, user, 0);
    return e ? e->cur : 0;
}

void ratelimit_sweep(ratelimit *rl, uint64_t now_ns)
{
    table *t = &rl->ips;
    for (size_t i = 0; i < t->n_slots; i++) {
        entry **pp = &t->slots[i];
        while (*pp != NULL) {
            entry *e = *pp;
            if (now_ns - e->window_start >= 2 * WINDOW_NS) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

size_t ratelimit_size(const ratelimit *rl)
{
    return rl->ips.n + rl->users.n;
}
