/* Server events; see events.h. */
#include "client/events.h"

#include "client/client.h"
#include "client/display.h"
#include "client/link.h"
#include "client/p2p.h"
#include "client/seen.h"
#include "client/text.h"
#include "client/ui.h"

#include <stdint.h>

/* Copies a name field; false when it is not a valid user name. */
static bool take_name(struct proto_slice *rest, char *name)
{
    struct proto_slice f;
    return proto_next_field(rest, &f) && proto_is_name(f) &&
           proto_slice_copy(f, name, PROTO_MAX_NAME + 1);
}

/* `* MSG <id> <from> <unix-time> <text>`: shown unless it was shown already (a redelivery
 * after the server lost our acknowledgement), and acknowledged either way. */
static void on_msg(struct client *c, struct proto_slice rest)
{
    struct proto_slice id_f, time_f;
    char from[PROTO_MAX_NAME + 1];
    uint64_t id, when;
    if (!proto_next_field(&rest, &id_f) || !proto_parse_u64(id_f, &id) || !take_name(&rest, from) ||
        !proto_next_field(&rest, &time_f) || !proto_parse_u64(time_f, &when) || rest.len == 0)
        return;
    if (!seen_already(c->seen, id, when)) {
        display_direct(from, when, rest.ptr, rest.len);
        ui_remember_name(from);
        seen_note(c->seen, id, when);
    }
    link_ack(c->link, id);
}

/* `* BCAST <from> <text>` */
static void on_bcast(struct proto_slice rest)
{
    char from[PROTO_MAX_NAME + 1];
    if (!take_name(&rest, from) || rest.len == 0)
        return;
    display_broadcast(from, rest.ptr, rest.len);
    ui_remember_name(from);
}

/* `* LOGIN <name>` and `* LOGOUT <name>` */
static void on_presence(struct proto_slice rest, const char *what)
{
    char name[PROTO_MAX_NAME + 1];
    if (!take_name(&rest, name) || rest.len != 0)
        return;
    ui_printf("%s %s", name, what);
    ui_remember_name(name);
}

/* `* P2PREQ <from> <secret> <ask>` */
static void on_p2preq(struct client *c, struct proto_slice rest)
{
    char from[PROTO_MAX_NAME + 1], secret[PROTO_SECRET_HEX + 1];
    struct proto_slice sf, ask;
    if (!take_name(&rest, from) || !proto_next_field(&rest, &sf) ||
        !text_is_secret(sf.ptr, sf.len) || !proto_next_field(&rest, &ask))
        return;
    proto_slice_copy(sf, secret, sizeof(secret));
    if (c->state == CLIENT_ONLINE)
        p2p_offer(c->p2p, from, secret, !proto_slice_eq(ask, "0"));
}

/* `* P2PWAIT <name>`: our private messaging request waits for `name` to answer. */
static void on_p2pwait(struct proto_slice rest)
{
    char name[PROTO_MAX_NAME + 1];
    if (take_name(&rest, name) && rest.len == 0)
        ui_printf("Waiting for %s to accept or decline private messaging", name);
}

/* `* BYE <reason>` */
static void on_bye(struct client *c, struct proto_slice rest)
{
    char reason[32];
    struct proto_slice f;
    if (!proto_next_field(&rest, &f) || !proto_slice_copy(f, reason, sizeof(reason)))
        reason[0] = '\0';
    client_bye(c, reason);
}

void events_dispatch(struct client *c, struct proto_slice verb, struct proto_slice rest)
{
    if (proto_slice_eq(verb, "MSG"))
        on_msg(c, rest);
    else if (proto_slice_eq(verb, "BCAST"))
        on_bcast(rest);
    else if (proto_slice_eq(verb, "LOGIN"))
        on_presence(rest, "logged in");
    else if (proto_slice_eq(verb, "LOGOUT"))
        on_presence(rest, "logged out");
    else if (proto_slice_eq(verb, "P2PREQ"))
        on_p2preq(c, rest);
    else if (proto_slice_eq(verb, "P2PWAIT"))
        on_p2pwait(rest);
    else if (proto_slice_eq(verb, "BYE"))
        on_bye(c, rest);
}
