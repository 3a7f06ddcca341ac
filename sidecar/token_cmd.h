/*
 * token_cmd.h — `ringside token`: mint a development token (DESIGN "ringside token").
 */
#ifndef RINGSIDE_TOKEN_CMD_H
#define RINGSIDE_TOKEN_CMD_H

/*
 * Runs `ringside token`.  argv[0] is the subcommand name ("token"); options follow:
 *   --jwt-key FILE --sub USER --projects p1,p2|'*' [--agents a1,a2|'*'] [--ttl SECONDS]
 *   [--jwt-alg HS256|RS256|ES256] [--iss S] [--aud S] [--help]
 * (also --opt=VALUE; --jwt-issuer/--jwt-audience are synonyms of --iss/--aud; RINGSIDE_JWT_KEY,
 * RINGSIDE_JWT_ALG, RINGSIDE_JWT_ISSUER, RINGSIDE_JWT_AUDIENCE supply defaults).
 * Prints the token and a newline on stdout.  Errors are one line on stderr.
 * Returns the process exit status: 0 success, 1 runtime failure (key unusable), 2 usage error.
 * Keeps no global state (no getopt), so it may be called after the daemon parsed its own options.
 */
int token_cmd_main(int argc, char **argv);

#endif /* RINGSIDE_TOKEN_CMD_H */
