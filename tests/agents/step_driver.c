/*  step_driver.c - drives a running constellation for the agent system
    tests: creates certificates and sends one request, printing the reply as
    one line of JSON.

      step_driver certs RUN_DIR NAME...
      step_driver call --endpoint E --home RUN_DIR --name NAME [--insecure]
                       --service S --json BODY [--timeout MS]

    BODY is a JSON object; "v" is added when missing. Integers become ints and
    other numbers floats, as in every emads body. Exit 0 when a reply came
    (even an error reply; the test reads it), 1 when none did, 2 on usage
    errors.
*/
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/evjson.h"
#include "bus/bus.h"

static int s_usage(void)
{
    fprintf(stderr, "usage: step_driver certs RUN_DIR NAME...\n"
                    "       step_driver call --endpoint E --home RUN_DIR --name NAME "
                    "[--insecure] --service S --json BODY [--timeout MS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return s_usage();
    if (strcmp(argv[1], "certs") == 0) {
        if (argc < 4)
            return s_usage();
        int n = bus_certs_init(argv[2], (const char *const *)&argv[3]);
        if (n < 0) {
            fprintf(stderr, "step_driver: cannot create certificates in %s\n", argv[2]);
            return 1;
        }
        return 0;
    }
    if (strcmp(argv[1], "call") != 0)
        return s_usage();
    const char *endpoint = NULL, *home = NULL, *name = NULL, *service = NULL, *json = NULL;
    bool insecure = false;
    int timeout = 10000;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--insecure") == 0)
            insecure = true;
        else if (i + 1 < argc && strcmp(argv[i], "--endpoint") == 0)
            endpoint = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--home") == 0)
            home = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--name") == 0)
            name = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--service") == 0)
            service = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--json") == 0)
            json = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0)
            timeout = atoi(argv[++i]);
        else
            return s_usage();
    }
    if (!endpoint || !home || !name || !service || !json)
        return s_usage();
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    if (!json_is_object(j)) {
        fprintf(stderr, "step_driver: --json: not a JSON object: %s\n", jerr.text);
        json_decref(j);
        return 2;
    }
    ev_t *body = evjson_from_json(j);
    json_decref(j);
    if (!ev_get(body, "v"))
        ev_set_int(body, "v", PROTO_VERSION);

    zsys_init();
    bus_security_t sec;
    bus_security_init(&sec, home, name, !insecure);
    bus_client_t *client = bus_client_new(endpoint, &sec);
    if (!client) {
        fprintf(stderr, "step_driver: cannot connect to %s as %s\n", endpoint, name);
        ev_destroy(&body);
        return 1;
    }
    ev_t *reply = bus_client_call(client, service, &body, timeout, NULL, NULL);
    int rc = 1;
    if (reply) {
        char *s = evjson_dump(reply);
        if (s) {
            printf("%s\n", s);
            free(s);
            rc = 0;
        }
    }
    ev_destroy(&reply);
    bus_client_destroy(&client);
    return rc;
}
