#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <stdlib.h>
#include <stdint.h>
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

static inline const char *chiredis_reader_error(const redisReader *reader) { return reader->errstr; }

// A reader that builds no reply objects: hiredis's parser calls the functions below, which append each reply
// element to one growing byte tape instead of allocating a `redisReply` (and its string) per element. Swift copies
// the records of the complete replies, then drops them from the tape. Elements arrive in pre-order (an array
// before its elements), so the tape needs no pointers. Record: type (a REDIS_REPLY_* value, 1 byte), value (8 bytes, native order: the
// length of a string, the element count of an array, the integer), then a string's bytes.

enum { CHIREDIS_TAPE_HEADER = 9 };

typedef struct chiredis_tape {
    unsigned char *bytes;
    size_t count;
    size_t capacity;
    redisReplyObjectFunctions functions;  // hiredis keeps a pointer to them: they live as long as the reader
} chiredis_tape;

static inline int chiredis_tape_reserve(chiredis_tape *tape, size_t extra) {
    if (tape->capacity - tape->count >= extra) return 1;
    size_t capacity = tape->capacity < 256 ? 256 : tape->capacity;
    while (capacity - tape->count < extra) {
        if (capacity > SIZE_MAX / 2) return 0;
        capacity *= 2;
    }
    unsigned char *bytes = (unsigned char *)realloc(tape->bytes, capacity);
    if (bytes == NULL) return 0;
    tape->bytes = bytes;
    tape->capacity = capacity;
    return 1;
}

static inline void *chiredis_tape_append(const redisReadTask *task, int type, long long value, const char *string,
                                         size_t length) {
    chiredis_tape *tape = (chiredis_tape *)task->privdata;
    if (length > SIZE_MAX - CHIREDIS_TAPE_HEADER || !chiredis_tape_reserve(tape, CHIREDIS_TAPE_HEADER + length)) {
        return NULL;  // hiredis reports "Out of memory"
    }
    unsigned char *record = tape->bytes + tape->count;
    record[0] = (unsigned char)type;
    memcpy(record + 1, &value, sizeof(value));
    if (length > 0) memcpy(record + CHIREDIS_TAPE_HEADER, string, length);
    tape->count += CHIREDIS_TAPE_HEADER + length;
    return tape;  // any non-NULL pointer: hiredis only hands it back as "the reply"
}

static inline void *chiredis_tape_string(const redisReadTask *task, char *string, size_t length) {
    return chiredis_tape_append(task, task->type, (long long)length, string, length);
}

static inline void *chiredis_tape_array(const redisReadTask *task, int elements) {
    return chiredis_tape_append(task, REDIS_REPLY_ARRAY, elements, NULL, 0);
}

static inline void *chiredis_tape_integer(const redisReadTask *task, long long value) {
    return chiredis_tape_append(task, REDIS_REPLY_INTEGER, value, NULL, 0);
}

static inline void *chiredis_tape_nil(const redisReadTask *task) {
    return chiredis_tape_append(task, REDIS_REPLY_NIL, 0, NULL, 0);
}

static inline void chiredis_tape_free_object(void *object) { (void)object; }

/// A reader whose replies go to a tape (see above); NULL if out of memory. Free with `chiredis_tape_reader_free`.
static inline redisReader *chiredis_tape_reader_create(void) {
    chiredis_tape *tape = (chiredis_tape *)calloc(1, sizeof(chiredis_tape));
    if (tape == NULL) return NULL;
    tape->functions.createString = chiredis_tape_string;
    tape->functions.createArray = chiredis_tape_array;
    tape->functions.createInteger = chiredis_tape_integer;
    tape->functions.createNil = chiredis_tape_nil;
    tape->functions.freeObject = chiredis_tape_free_object;
    redisReader *reader = redisReaderCreateWithFunctions(&tape->functions);
    if (reader == NULL) {
        free(tape);
        return NULL;
    }
    reader->privdata = tape;
    return reader;
}

static inline chiredis_tape *chiredis_reader_tape(const redisReader *reader) {
    return (chiredis_tape *)reader->privdata;
}

/// Drops the first `prefix` bytes of the tape (the complete replies just read) and keeps what follows them: the
/// elements hiredis already parsed of a reply that is not complete yet. Gives the memory back when nothing follows
/// and the tape grew past `keep` bytes (an unusually large batch).
static inline void chiredis_tape_drop(chiredis_tape *tape, size_t prefix, size_t keep) {
    if (prefix > tape->count) prefix = tape->count;
    size_t rest = tape->count - prefix;
    if (rest > 0 && prefix > 0) memmove(tape->bytes, tape->bytes + prefix, rest);
    tape->count = rest;
    if (rest == 0 && tape->capacity > keep) {
        free(tape->bytes);
        tape->bytes = NULL;
        tape->capacity = 0;
    }
}

static inline void chiredis_tape_reader_free(redisReader *reader) {
    chiredis_tape *tape = chiredis_reader_tape(reader);
    redisReaderFree(reader);
    if (tape != NULL) {
        free(tape->bytes);
        free(tape);
    }
}

/// Takes the next complete reply onto the tape, after those already there: 1 when there is one, 0 when more bytes
/// are needed (the tape may then end with elements of the incomplete reply), -1 on a protocol error (see
/// `chiredis_reader_error`). Read the complete replies, then `chiredis_tape_drop` them.
static inline int chiredis_tape_reader_next(redisReader *reader) {
    void *object = NULL;
    if (redisReaderGetReply(reader, &object) != REDIS_OK) return -1;
    return object != NULL ? 1 : 0;
}

/// Keeps the reader's buffer after it is consumed instead of freeing it whenever it is empty and larger than
/// 16 KiB (hiredis's default), which would re-allocate on every large pipelined batch.
static inline void chiredis_reader_set_max_buffer(redisReader *reader, size_t bytes) { reader->maxbuf = bytes; }

#endif
