/* Showing messages with the comforts; see display.h. */
#include "client/display.h"

#include "client/options.h"
#include "client/ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DISPLAY_SKEW_SECS 1 /* a message this much older than the login still counts as live */

#define SGR_DIRECT "1"     /* bold */
#define SGR_BROADCAST "33" /* yellow */
#define SGR_PRIVATE "35"   /* magenta */

static struct {
    const struct options *o;
    bool color;
    time_t login;
} display;

void display_init(const struct options *o)
{
    display.o = o;
    display.color = o->color && ui_is_tty() && !getenv("NO_COLOR");
    ui_set_error_color(display.color);
}

void display_logged_in(void)
{
    display.login = time(NULL);
}

/* `[HH:MM] ` for a message of `when`, or `[YYYY-MM-DD HH:MM, waited] ` when it waited for the
 * user's login; empty without timestamps. */
static void time_prefix(char *buf, size_t cap, time_t when, bool may_have_waited)
{
    buf[0] = '\0';
    if (!display.o->timestamps)
        return;
    struct tm tm;
    if (!localtime_r(&when, &tm))
        return;
    bool waited = may_have_waited && when + DISPLAY_SKEW_SECS < display.login;
    if (!strftime(buf, cap, waited ? "[%Y-%m-%d %H:%M, waited] " : "[%H:%M] ", &tm))
        buf[0] = '\0';
}

static void ring(void)
{
    if (display.o->bell && ui_is_tty()) {
        fputc('\a', stdout);
        fflush(stdout);
    }
}

static const char *sgr(const char *code)
{
    return display.color ? code : NULL;
}

void display_direct(const char *from, uint64_t when, const char *text, size_t len)
{
    char t[64];
    time_prefix(t, sizeof(t), (time_t)when, true);
    ui_printf_color(sgr(SGR_DIRECT), "%s%s: %.*s", t, from, (int)len, text);
    ring();
}

void display_broadcast(const char *from, const char *text, size_t len)
{
    char t[64];
    time_prefix(t, sizeof(t), time(NULL), false);
    ui_printf_color(sgr(SGR_BROADCAST), "%s%s%s: %.*s", t,
                    display.o->mark_broadcasts ? "[all] " : "", from, (int)len, text);
}

void display_private(const char *from, const char *text, size_t len)
{
    char t[64];
    time_prefix(t, sizeof(t), time(NULL), false);
    ui_printf_color(sgr(SGR_PRIVATE), "%s%s(private): %.*s", t, from, (int)len, text);
    ring();
}

void display_prompt(char *buf, size_t cap, const char *me)
{
    if (display.o && display.o->name_in_prompt)
        snprintf(buf, cap, "%s> ", me);
    else
        snprintf(buf, cap, "> ");
}
