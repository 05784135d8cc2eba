/* The login dialogue of spec §3: HELLO, then `Username: ` and `Password: ` until the server
 * lets the user in, re-asking and exiting exactly where the spec says. */
#ifndef PARLEY_CLIENT_LOGIN_H
#define PARLEY_CLIENT_LOGIN_H

struct client;

/* Starts the login on a fresh connection: sends HELLO, then asks for the user name. */
void login_start(struct client *c);

/* Takes the line the user typed at a login prompt (NULL at end of input: the client exits). */
void login_input(struct client *c, const char *line);

#endif
