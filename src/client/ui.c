/* The terminal: readline callback interface on a tty, plain lines from a pipe; see ui.h. */
#include "client/ui.h"

#include "client/histfile.h"
#include "client/text.h"
#include "common/linebuf.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#define UI_PIPE_MAX_LINE 65536     /* longest line read from a pipe, newline included */
#define UI_QUEUE_MAX (1024 * 1024) /* pipe bytes read ahead before reading pauses */
#define UI_SECRET_MAX 1024         /* longest password line kept */
#define UI_MAX_NAMES 4096          /* user names remembered for completion */
#define UI_HISTORY 500

enum ui_mode {
    UI_OFF,      /* not reading */
    UI_LINE,     /* one echoed line */
    UI_SECRET,   /* one line without echo */
    UI_COMMANDS, /* command lines until stopped */
    UI_CLOSED,   /* shut down */
};

/* A line read from a pipe and not yet handed over. */
struct ui_qline {
    struct ui_qline *next;
    size_t len;
    bool too_long;
    char text[];
};

static struct {
    struct event_base *base;
    ui_line_fn on_line;
    void *ctx;
    bool tty;
    enum ui_mode mode;
    char prompt[512];
    struct event *in_ev;
    bool in_ev_on;
    /* readline */
    bool rl_on;    /* a readline handler is installed */
    bool in_rl_cb; /* inside readline's line callback: readline redraws the prompt itself */
    char *stash;   /* the line being typed when a question took the edit line, or NULL */
    int stash_point;
    bool stash_due; /* give the stash back when readline starts its next line */
    /* password on a terminal */
    struct termios saved_tio;
    bool tio_saved;
    char secret[UI_SECRET_MAX + 1];
    size_t secret_len;
    /* pipe */
    struct event *pump_ev;
    struct linebuf lb;
    struct ui_qline *q_head, *q_tail;
    size_t q_bytes;
    unsigned holds;
    bool eof, eof_sent;
    bool error_color;    /* `Error. ` lines in red */
    bool history_loaded; /* the saved history was read: it is saved again at the end */
    /* completion */
    const char *const *commands;
    ui_user_arg_fn user_arg;
    char *names[UI_MAX_NAMES];
    size_t n_names;
} ui;

static void input_on(void)
{
    if (!ui.in_ev_on && event_add(ui.in_ev, NULL) == 0)
        ui.in_ev_on = true;
}

static void input_off(void)
{
    if (ui.in_ev_on)
        event_del(ui.in_ev);
    ui.in_ev_on = false;
}

static void set_prompt_text(const char *prompt)
{
    snprintf(ui.prompt, sizeof(ui.prompt), "%s", prompt);
}

static void deliver(const char *line)
{
    ui.on_line(ui.ctx, line);
}

/* ---- printing ---- */

/* Writes the clean `s`, in the colour of SGR code `sgr` if any. */
static void write_line(const char *sgr, const char *s)
{
    if (sgr)
        printf("\033[%sm%s\033[0m\n", sgr, s);
    else
        printf("%s\n", s);
    fflush(stdout);
}

/* Prints `line` above the line being typed; `sgr` colours it (NULL: no colour). */
static void print_line(const char *sgr, const char *line)
{
    size_t len = strlen(line);
    char small[1024];
    char *clean = len < sizeof(small) ? small : malloc(len + 1);
    if (!clean)
        return;
    text_sanitize(line, len, clean, len + 1);
    if (ui.tty && ui.rl_on && !ui.in_rl_cb) {
        rl_clear_visible_line();
        write_line(sgr, clean);
        rl_on_new_line();
        rl_redisplay();
    } else if (ui.tty && ui.mode == UI_SECRET) {
        fputs("\r\033[K", stdout);
        write_line(sgr, clean);
        fputs(ui.prompt, stdout);
        fflush(stdout);
    } else {
        write_line(sgr, clean);
    }
    if (clean != small)
        free(clean);
}

void ui_print(const char *line)
{
    bool error = ui.error_color && strncmp(line, "Error. ", 7) == 0;
    print_line(error ? "31" : NULL, line);
}

/* print_line() of a formatted line; `sgr` NULL means as ui_print(). */
static void vprint(const char *sgr, const char *fmt, va_list ap)
{
    char buf[2048];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    char *line = n >= 0 && (size_t)n >= sizeof(buf) ? malloc((size_t)n + 1) : buf;
    if (n >= 0 && line) {
        if (line != buf)
            vsnprintf(line, (size_t)n + 1, fmt, again);
        if (sgr)
            print_line(sgr, line);
        else
            ui_print(line);
    }
    if (line != buf)
        free(line);
    va_end(again);
}

void ui_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(NULL, fmt, ap);
    va_end(ap);
}

void ui_printf_color(const char *sgr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(sgr, fmt, ap);
    va_end(ap);
}

void ui_set_error_color(bool on)
{
    ui.error_color = on;
}

/* ---- readline (tty) ---- */

static void rl_remove(void)
{
    if (!ui.rl_on)
        return;
    if (!ui.in_rl_cb)
        rl_clear_visible_line();
    rl_callback_handler_remove();
    ui.rl_on = false;
    fflush(stdout);
}

/* Runs a command line that may hold several (a bracketed paste keeps its newlines): each line
 * in order, as if typed one after another, while commands are still being read. */
static void deliver_commands(char *text)
{
    if (text[0] == '\0') {
        deliver(text);
        return;
    }
    char *next = text;
    while (next && ui.mode == UI_COMMANDS) {
        char *line = next;
        size_t len = strcspn(line, "\r\n");
        next = line[len] ? line + len + 1 : NULL;
        line[len] = '\0';
        if (line[0] == '\0')
            continue;
        add_history(line);
        deliver(line);
    }
}

static void rl_line_cb(char *line)
{
    ui.in_rl_cb = true;
    if (!line) {
        fputc('\n', stdout);
        rl_remove();
        ui.mode = UI_OFF;
        input_off();
        deliver(line);
    } else if (ui.mode == UI_LINE) {
        rl_remove();
        ui.mode = UI_OFF;
        input_off();
        deliver(line);
    } else {
        deliver_commands(line);
    }
    ui.in_rl_cb = false;
    free(line);
}

/* ---- the typed line while a question is asked ---- */

/* Keeps the line being typed aside so that a question's answer starts on an empty line. */
static void stash_line(void)
{
    if (!ui.rl_on || ui.in_rl_cb || ui.stash || rl_end == 0)
        return;
    ui.stash = strdup(rl_line_buffer);
    if (!ui.stash)
        return;
    ui.stash_point = rl_point;
    rl_replace_line("", 0);
    rl_point = 0;
}

static void stash_put_back(void)
{
    rl_replace_line(ui.stash, 0);
    rl_point = ui.stash_point < rl_end ? ui.stash_point : rl_end;
    free(ui.stash);
    ui.stash = NULL;
    ui.stash_due = false;
}

/* The question is over: the kept line comes back. Inside the line callback readline clears the
 * line afterwards, so it comes back when readline starts the next one (stash_hook). */
static void unstash_line(void)
{
    if (!ui.stash)
        return;
    if (ui.in_rl_cb || !ui.rl_on)
        ui.stash_due = true;
    else
        stash_put_back();
}

/* rl_startup_hook: runs as readline starts a line. */
static int stash_hook(void)
{
    if (ui.stash && ui.stash_due)
        stash_put_back();
    return 0;
}

/* Prints the line that was typed and not sent (`Unsent: ...`), so that it is not lost. */
static void show_unsent(void)
{
    const char *text = ui.stash;
    if (!text && ui.rl_on && !ui.in_rl_cb && rl_end > 0)
        text = rl_line_buffer;
    if (text)
        ui_printf("Unsent: %s", text);
    free(ui.stash);
    ui.stash = NULL;
    ui.stash_due = false;
}

/* Shows the current prompt text in place of the one readline shows. */
static void rl_apply_prompt(void)
{
    if (!ui.rl_on)
        return;
    if (ui.in_rl_cb) {
        rl_set_prompt(ui.prompt); /* readline redraws it when the callback returns */
        return;
    }
    rl_clear_visible_line();
    rl_set_prompt(ui.prompt);
    rl_on_new_line();
    rl_redisplay();
}

static void rl_install(void)
{
    if (ui.rl_on) {
        rl_apply_prompt();
        return;
    }
    rl_callback_handler_install(ui.prompt, rl_line_cb);
    ui.rl_on = true;
}

static char *complete_from(const char *const *list, size_t n, const char *text, int state)
{
    static size_t next;
    size_t len = strlen(text);
    if (state == 0)
        next = 0;
    while (list && next < n && list[next]) {
        const char *w = list[next++];
        if (strncmp(w, text, len) == 0)
            return strdup(w);
    }
    return NULL;
}

static char *command_word(const char *text, int state)
{
    return complete_from(ui.commands, (size_t)-1, text, state);
}

static char *name_word(const char *text, int state)
{
    return complete_from((const char *const *)ui.names, ui.n_names, text, state);
}

/* Completes the command name as first word, a user name as second word of commands taking
 * one; nothing else (never file names). */
static char **ui_complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (ui.mode != UI_COMMANDS)
        return NULL;
    const char *b = rl_line_buffer;
    int i = 0;
    while (i < start && b[i] == ' ')
        i++;
    if (i == start)
        return rl_completion_matches(text, command_word);
    int word_end = i;
    while (word_end < start && b[word_end] != ' ')
        word_end++;
    int j = word_end;
    while (j < start && b[j] == ' ')
        j++;
    if (j != start || !ui.user_arg || !ui.user_arg(b + i, (size_t)(word_end - i)))
        return NULL;
    return rl_completion_matches(text, name_word);
}

/* ---- password on a tty ---- */

/* Turns echo off on a terminal stdin (newlines still echo), remembering how it was. */
static void echo_off(void)
{
    if (ui.tio_saved || tcgetattr(STDIN_FILENO, &ui.saved_tio) != 0)
        return;
    struct termios t = ui.saved_tio;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL | ICANON;
    ui.tio_saved = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
}

/* After a stop the shell may have reset the terminal: turns echo off again. */
static void echo_off_again(void)
{
    if (!ui.tio_saved)
        return;
    struct termios t = ui.saved_tio;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL | ICANON;
    tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static void echo_restore(void)
{
    if (ui.tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &ui.saved_tio);
    ui.tio_saved = false;
}

static void secret_begin(void)
{
    echo_off();
    ui.secret_len = 0;
    fputs(ui.prompt, stdout);
    fflush(stdout);
}

static void secret_finish(bool eof)
{
    echo_restore();
    ui.mode = UI_OFF;
    input_off();
    if (eof) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    ui.secret[ui.secret_len] = '\0';
    deliver(eof ? NULL : ui.secret);
    explicit_bzero(ui.secret, sizeof(ui.secret));
    ui.secret_len = 0;
}

static void secret_read(void)
{
    char buf[256];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        secret_finish(true);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            explicit_bzero(buf, sizeof(buf));
            secret_finish(false);
            return;
        }
        if (ui.secret_len < UI_SECRET_MAX)
            ui.secret[ui.secret_len++] = buf[i];
    }
    explicit_bzero(buf, sizeof(buf));
}

/* ---- pipe ---- */

static void pump_soon(void)
{
    if (ui.pump_ev && ui.mode != UI_CLOSED)
        event_active(ui.pump_ev, EV_TIMEOUT, 0);
}

static int queue_line(void *ctx, enum linebuf_kind kind, const char *line, size_t len)
{
    (void)ctx;
    bool too_long = kind == LINEBUF_TOO_LONG;
    if (too_long)
        len = 0;
    else if (len > 0 && line[len - 1] == '\r')
        len--;
    struct ui_qline *q = malloc(sizeof(*q) + len + 1);
    if (!q)
        return -1;
    q->next = NULL;
    q->len = len;
    q->too_long = too_long;
    memcpy(q->text, line, len);
    q->text[len] = '\0';
    /* A NUL would silently cut the line short: make it a byte every check refuses (DEL). */
    for (char *z = memchr(q->text, '\0', len); z; z = memchr(z, '\0', len - (size_t)(z - q->text)))
        *z = 0x7f;
    if (ui.q_tail)
        ui.q_tail->next = q;
    else
        ui.q_head = q;
    ui.q_tail = q;
    ui.q_bytes += len + 1;
    return 0;
}

static struct ui_qline *queue_pop(void)
{
    struct ui_qline *q = ui.q_head;
    if (!q)
        return NULL;
    ui.q_head = q->next;
    if (!ui.q_head)
        ui.q_tail = NULL;
    ui.q_bytes -= q->len + 1;
    return q;
}

static void pipe_read(void)
{
    char buf[16384];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        ui.eof = true;
        input_off();
        if (linebuf_pending(&ui.lb) > 0 || ui.lb.discarding)
            linebuf_feed(&ui.lb, "\n", 1, queue_line, NULL);
    } else if (linebuf_feed(&ui.lb, buf, (size_t)n, queue_line, NULL) != 0) {
        ui.eof = true;
        input_off();
    }
    if (ui.q_bytes > UI_QUEUE_MAX)
        input_off();
    pump_soon();
}

static bool pipe_ready(void)
{
    return ui.mode != UI_OFF && ui.mode != UI_CLOSED && ui.holds == 0;
}

/* Hands queued lines over one at a time while someone is reading and nothing is held. */
static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    while (pipe_ready()) {
        struct ui_qline *q = queue_pop();
        if (!q) {
            if (ui.eof && !ui.eof_sent) {
                ui.eof_sent = true;
                ui.mode = UI_OFF;
                deliver(NULL);
            }
            break;
        }
        if (ui.mode == UI_SECRET)
            echo_restore();
        if (ui.mode != UI_COMMANDS)
            ui.mode = UI_OFF;
        if (q->too_long)
            ui_print("Error. Line too long");
        else
            deliver(q->text);
        explicit_bzero(q->text, q->len);
        free(q);
    }
    if (!ui.eof && ui.mode != UI_CLOSED && ui.q_bytes <= UI_QUEUE_MAX / 2)
        input_on();
}

/* ---- input dispatch ---- */

static void in_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!ui.tty)
        pipe_read();
    else if (ui.mode == UI_SECRET)
        secret_read();
    else if (ui.rl_on)
        rl_callback_read_char();
    else
        input_off();
}

/* ---- public ---- */

int ui_init(struct event_base *base, ui_line_fn fn, void *ctx)
{
    memset(&ui, 0, sizeof(ui));
    ui.base = base;
    ui.on_line = fn;
    ui.ctx = ctx;
    ui.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    linebuf_init(&ui.lb, UI_PIPE_MAX_LINE);
    ui.in_ev = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, in_cb, NULL);
    ui.pump_ev = event_new(base, -1, 0, pump_cb, NULL);
    if (!ui.in_ev || !ui.pump_ev)
        goto fail;
    if (ui.tty) {
        rl_readline_name = "parley";
        rl_instream = stdin;
        rl_outstream = stdout;
        rl_catch_signals = 0;
        rl_catch_sigwinch = 0;
        rl_change_environment = 0;
        rl_attempted_completion_function = ui_complete;
        rl_startup_hook = stash_hook;
        rl_basic_word_break_characters = " ";
        using_history();
        stifle_history(UI_HISTORY);
        histfile_load();
        ui.history_loaded = true;
    } else {
        input_on();
    }
    return 0;
fail:
    ui_free();
    return -1;
}

bool ui_is_tty(void)
{
    return ui.tty;
}

bool ui_input_is_tty(void)
{
    return isatty(STDIN_FILENO);
}

void ui_ask(enum ui_input kind, const char *prompt)
{
    if (ui.mode == UI_CLOSED)
        return;
    set_prompt_text(prompt);
    ui.mode = kind == UI_INPUT_SECRET ? UI_SECRET : UI_LINE;
    if (!ui.tty) {
        if (ui.mode == UI_SECRET && isatty(STDIN_FILENO))
            echo_off(); /* a terminal typing into a redirected client */
        fputs(ui.prompt, stdout);
        fflush(stdout);
        pump_soon();
        return;
    }
    if (ui.mode == UI_SECRET) {
        rl_remove();
        secret_begin();
    } else {
        rl_install();
    }
    input_on();
}

void ui_commands(const char *prompt)
{
    if (ui.mode == UI_CLOSED)
        return;
    set_prompt_text(prompt);
    ui.mode = UI_COMMANDS;
    if (!ui.tty) {
        pump_soon();
        return;
    }
    rl_install();
    input_on();
}

void ui_set_prompt(const char *prompt, bool question)
{
    if (ui.mode == UI_CLOSED)
        return;
    if (!ui.tty) {
        set_prompt_text(prompt);
        if (question) {
            fputs(ui.prompt, stdout);
            fflush(stdout);
        }
        return;
    }
    if (strcmp(ui.prompt, prompt) == 0)
        return;
    set_prompt_text(prompt);
    if (question)
        stash_line();
    else
        unstash_line();
    rl_apply_prompt();
}

void ui_stop(void)
{
    if (ui.mode == UI_CLOSED)
        return;
    echo_restore();
    if (ui.tty) {
        show_unsent();
        rl_remove();
        input_off();
    }
    ui.mode = UI_OFF;
}

void ui_hold(void)
{
    if (!ui.tty)
        ui.holds++;
}

void ui_release(void)
{
    if (ui.tty || ui.holds == 0)
        return;
    if (--ui.holds == 0)
        pump_soon();
}

void ui_set_completion(const char *const *commands, ui_user_arg_fn user_arg)
{
    ui.commands = commands;
    ui.user_arg = user_arg;
}

void ui_remember_name(const char *name)
{
    for (size_t i = 0; i < ui.n_names; i++)
        if (strcmp(ui.names[i], name) == 0)
            return;
    if (ui.n_names == UI_MAX_NAMES)
        return;
    char *copy = strdup(name);
    if (copy)
        ui.names[ui.n_names++] = copy;
}

void ui_resume(void)
{
    if (!ui.tty || ui.mode == UI_CLOSED)
        return;
    if (ui.mode == UI_SECRET) {
        echo_off_again();
        fputs(ui.prompt, stdout);
        fflush(stdout);
        return;
    }
    if (!ui.rl_on)
        return;
    rl_deprep_term_function(); /* readline thinks the terminal is still its own */
    rl_prep_term_function(1);
    rl_forced_update_display();
}

void ui_resize(void)
{
    if (ui.tty && ui.rl_on)
        rl_resize_terminal();
}

void ui_shutdown(void)
{
    if (ui.mode == UI_CLOSED)
        return;
    ui_stop();
    input_off();
    ui.mode = UI_CLOSED;
    fflush(stdout);
    if (isatty(STDIN_FILENO))
        tcflush(STDIN_FILENO, TCIFLUSH); /* typed ahead for us, not for the shell */
}

void ui_free(void)
{
    if (ui.in_ev)
        event_free(ui.in_ev);
    if (ui.pump_ev)
        event_free(ui.pump_ev);
    ui.in_ev = ui.pump_ev = NULL;
    ui.in_ev_on = false;
    struct ui_qline *q;
    while ((q = queue_pop()) != NULL)
        free(q);
    linebuf_free(&ui.lb);
    for (size_t i = 0; i < ui.n_names; i++)
        free(ui.names[i]);
    ui.n_names = 0;
    if (ui.history_loaded) /* never write over the file with a history not read from it */
        histfile_save(UI_HISTORY);
    if (ui.tty)
        clear_history();
    ui.history_loaded = false;
}
