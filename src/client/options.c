/* The command line and the config file; see options.h. */
#include "client/options.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/link.h"
#include "client/p2p.h"

#define OPTIONS_LINE_MAX 512

static const char usage_text[] =
    "usage: parley <server_ip> <server_port>\n"
    "       parley [options] <server_ip> <server_port>\n"
    "       parley --help | --version\n"
    "\n"
    "Logs in to a Parley server and chats: type `help` after logging in.\n"
    "From a pipe, runs the lines of its input as the user's answers and commands.\n"
    "\n"
    "Options (each also a line `name = on` in ~/.config/parley/parley.conf):\n"
    "  --timestamps       show the time of each message\n"
    "  --mark-broadcasts  show [all] before broadcasts\n"
    "  --name-in-prompt   show your name in the prompt\n"
    "  --bell             ring the bell on direct and private messages\n"
    "  --color            colours at a terminal (not when NO_COLOR is set)\n"
    "  --reconnect        when the server goes away, log in again by itself\n"
    "  --reply-timeout SECONDS  how long a request may wait for the server's reply\n"
    "                     before the connection counts as lost (default 30)\n"
    "  --p2p-handshakes N incoming private-session connections waiting for their\n"
    "                     handshake, at most (default 16; the oldest goes first)\n"
    "  --p2p-per-source N of which from one address (default 4)\n"
    "  --tls              speak TLS to the server; its key is pinned on first use in\n"
    "                     ~/.config/parley/known_servers and a changed key is refused\n"
    "  --ca FILE|system   check the server's certificate chain and name against FILE\n"
    "                     or the system's CA store instead (implies --tls)\n"
    "  --pin sha256:HEX   the server's key must have this fingerprint (implies --tls)\n"
    "  --accept-new       pin an unknown server key without asking (implies --tls)\n"
    "  --config FILE      read FILE instead of the usual config file\n"
    "  --no-config        read no config file\n";

/* The comforts by name, as switches (`--name`) and config keys (`name = on`). */
static const struct setting {
    const char *name;
    size_t offset;
} settings[] = {
    {"timestamps", offsetof(struct options, timestamps)},
    {"mark-broadcasts", offsetof(struct options, mark_broadcasts)},
    {"name-in-prompt", offsetof(struct options, name_in_prompt)},
    {"bell", offsetof(struct options, bell)},
    {"color", offsetof(struct options, color)},
    {"reconnect", offsetof(struct options, reconnect)},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

enum {
    OPT_CONFIG = 1000,
    OPT_REPLY_TIMEOUT,
    OPT_P2P_HANDSHAKES,
    OPT_P2P_PER_SOURCE,
    OPT_NO_CONFIG,
    OPT_TLS,
    OPT_CA,
    OPT_PIN,
    OPT_ACCEPT_NEW,
    OPT_HELP,
    OPT_VERSION,
};

const char *options_usage(void)
{
    return usage_text;
}

static bool *setting_slot(struct options *o, const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return (bool *)((char *)o + settings[i].offset);
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One `name = value` line (blank lines and `#` comments allowed); -1 when it is wrong. */
static int config_line(struct options *o, char *line)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq)
        return -1;
    *eq = '\0';
    bool *slot = setting_slot(o, trim(s));
    return slot ? parse_bool(trim(eq + 1), slot) : -1;
}

/* Reads `path`; a missing file is fine unless `must_exist`. */
static int config_read(struct options *o, const char *path, bool must_exist)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && !must_exist)
            return 0;
        fprintf(stderr, "parley: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[OPTIONS_LINE_MAX];
    int n = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        n++;
        if (config_line(o, line) < 0) {
            fprintf(stderr,
                    "parley: %s line %d: expected `setting = on|off` with one of "
                    "timestamps, mark-broadcasts, name-in-prompt, bell, color, reconnect\n",
                    path, n);
            rc = -1;
        }
    }
    fclose(f);
    return rc;
}

static int config_default(struct options *o)
{
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(path, sizeof(path), "%s/parley/parley.conf", xdg);
    else if (home && home[0] == '/')
        n = snprintf(path, sizeof(path), "%s/.config/parley/parley.conf", home);
    else
        return 0;
    if (n < 0 || (size_t)n >= sizeof(path))
        return 0;
    return config_read(o, path, false);
}

static bool valid_port(const char *s)
{
    unsigned long v = 0;
    if (!*s || strlen(s) > 5)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    return v > 0 && v < 65536;
}

/* Finds `--config FILE` / `--no-config` first: the file is read before the switches. */
static int config_from_args(struct options *o, int argc, char **argv)
{
    const char *file = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--no-config") == 0)
            return 0;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    return file ? config_read(o, file, true) : config_default(o);
}

static enum options_result positionals(struct options *o, int argc, char **argv)
{
    if (argc - optind != 2) {
        fputs(usage_text, stderr);
        return OPTIONS_USAGE;
    }
    o->host = argv[optind];
    o->port = argv[optind + 1];
    if (!valid_port(o->port)) {
        fprintf(stderr, "parley: %s is not a port number (1 to 65535)\n%s", o->port, usage_text);
        return OPTIONS_USAGE;
    }
    return OPTIONS_RUN;
}

/* Parses the decimal `s` into `*out` when it lies in [lo, hi]; else says why. */
static bool parse_limit(const char *name, const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;
    bool ok = *s && strlen(s) <= 9;
    for (const char *p = s; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (!ok || v < lo || v > hi) {
        fprintf(stderr, "parley: --%s must be a number from %u to %u, not '%s'\n", name, lo, hi, s);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* Stores a numeric or TLS option's value; false for a bad value (the reason is printed). */
static bool set_limit(struct options *o, int opt, const char *arg)
{
    switch (opt) {
    case OPT_TLS:
        o->tls = true;
        return true;
    case OPT_CA:
        o->ca = arg;
        o->tls = true;
        return true;
    case OPT_PIN:
        o->pin = arg;
        o->tls = true;
        return true;
    case OPT_ACCEPT_NEW:
        o->accept_new = o->tls = true;
        return true;
    case OPT_REPLY_TIMEOUT:
        return parse_limit("reply-timeout", arg, 1, OPTIONS_MAX_REPLY_TIMEOUT, &o->reply_timeout);
    case OPT_P2P_HANDSHAKES:
        return parse_limit("p2p-handshakes", arg, 1, OPTIONS_MAX_P2P_HANDSHAKES,
                           &o->p2p_handshakes);
    case OPT_P2P_PER_SOURCE:
        return parse_limit("p2p-per-source", arg, 1, OPTIONS_MAX_P2P_HANDSHAKES,
                           &o->p2p_per_source);
    default:
        return true;
    }
}

enum options_result options_parse(struct options *o, int argc, char **argv)
{
    static const struct option long_options[] = {
        {"timestamps", no_argument, NULL, 0},
        {"mark-broadcasts", no_argument, NULL, 0},
        {"name-in-prompt", no_argument, NULL, 0},
        {"bell", no_argument, NULL, 0},
        {"color", no_argument, NULL, 0},
        {"reconnect", no_argument, NULL, 0},
        {"reply-timeout", required_argument, NULL, OPT_REPLY_TIMEOUT},
        {"p2p-handshakes", required_argument, NULL, OPT_P2P_HANDSHAKES},
        {"p2p-per-source", required_argument, NULL, OPT_P2P_PER_SOURCE},
        {"tls", no_argument, NULL, OPT_TLS},
        {"ca", required_argument, NULL, OPT_CA},
        {"pin", required_argument, NULL, OPT_PIN},
        {"accept-new", no_argument, NULL, OPT_ACCEPT_NEW},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"no-config", no_argument, NULL, OPT_NO_CONFIG},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->reply_timeout = LINK_DEFAULT_REPLY_SECS;
    o->p2p_handshakes = P2P_DEFAULT_MAX_HANDSHAKES;
    o->p2p_per_source = P2P_DEFAULT_MAX_PER_SOURCE;
    optind = 1;
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "hV", long_options, &index)) != -1) {
        if (opt == 'h' || opt == OPT_HELP)
            return OPTIONS_HELP;
        if (opt == 'V' || opt == OPT_VERSION)
            return OPTIONS_VERSION;
        if (opt == '?') {
            fputs(usage_text, stderr);
            return OPTIONS_USAGE;
        }
        if (!set_limit(o, opt, optarg))
            return OPTIONS_USAGE;
    }
    if (config_from_args(o, argc, argv) < 0)
        return OPTIONS_USAGE;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "hV", long_options, &index)) != -1)
        if (opt == 0)
            *setting_slot(o, long_options[index].name) = true;
    return positionals(o, argc, argv);
}
