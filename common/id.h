/*  id.h - random identifiers (task ids, emadsctl request ids), made in one
    place.
*/
#ifndef COMMON_ID_H_INCLUDED
#define COMMON_ID_H_INCLUDED

#include <stddef.h>

/* The most random bytes one id can carry. */
#define ID_BYTES_MAX 14

/* Write prefix followed by 2 * nbytes lowercase hex digits of fresh random
   bytes to out: "t-" and 6 give "t-1f0c9a44b2e7". The bytes are the random
   bytes of a czmq zuuid (the fixed version and variant bits left out); if
   none can be made, the clock and the pid. Returns 0, or -1 with out ""
   (when outlen > 0) when nbytes is not 1..ID_BYTES_MAX or out is too small. */
int id_random(const char *prefix, size_t nbytes, char *out, size_t outlen);

#endif
