#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

// Swift-friendly entry points. hiredis is used only for RESP (command formatting and reply parsing); the
// socket I/O is SwiftNIO's. Debian 12 ships hiredis 0.14.1: no RESP3, no redisConnectWithOptions.

/// Formats a command whose `argc` arguments lie back to back in `base` with lengths `lens` (so Swift passes
/// two flat buffers instead of an array of pointers). On success stores a malloc'ed buffer in `*out` (free it
/// with `chiredis_free_command`) and returns its length; returns -1 on failure.
static inline long long chiredis_format_command(int argc, const void *base, const size_t *lens, char **out) {
    const char *stackArgv[32];
    const char **argv = argc <= 32 ? stackArgv : (const char **)malloc(sizeof(char *) * (size_t)argc);
    if (argv == NULL) return -1;
    const char *cursor = (const char *)base;
    for (int i = 0; i < argc; i++) {
        argv[i] = cursor;
        cursor += lens[i];
    }
    int length = redisFormatCommandArgv(out, argc, argv, lens);
    if (argv != stackArgv) free((void *)argv);
    return length;
}

static inline void chiredis_free_command(char *command) { redisFreeCommand(command); }

/// Feeds bytes to the reader. Returns REDIS_OK or REDIS_ERR.
static inline int chiredis_reader_feed(redisReader *reader, const void *bytes, size_t length) {
    return redisReaderFeed(reader, (const char *)bytes, length);
}

/// Takes the next complete reply: 1 and `*reply` set when there is one, 0 when more bytes are needed, -1 on a
/// protocol error (see `chiredis_reader_error`).
static inline int chiredis_reader_next(redisReader *reader, redisReply **reply) {
    void *object = NULL;
    if (redisReaderGetReply(reader, &object) != REDIS_OK) return -1;
    *reply = (redisReply *)object;
    return object != NULL ? 1 : 0;
}

static inline const char *chiredis_reader_error(const redisReader *reader) { return reader->errstr; }

static inline void chiredis_free_reply(redisReply *reply) { freeReplyObject(reply); }

/// Keeps the reader's buffer after it is consumed instead of freeing it whenever it is empty and larger than
/// 16 KiB (hiredis's default), which would re-allocate on every large pipelined batch.
static inline void chiredis_reader_set_max_buffer(redisReader *reader, size_t bytes) { reader->maxbuf = bytes; }

#endif
