/* libFuzzer harness: the frame splitter and the field parser on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/linebuf.h"
#include "common/proto.h"

static int on_frame(void *ctx, enum linebuf_kind kind, const char *line, size_t len)
{
    size_t *frames = ctx;
    (*frames)++;
    if (kind != LINEBUF_LINE || proto_validate(line, len) != PROTO_OK)
        return 0;
    struct proto_slice rest = {line, len}, field;
    size_t fields = 0;
    while (proto_next_field(&rest, &field)) {
        uint64_t v;
        (void)proto_is_tag(field);
        (void)proto_is_name(field);
        (void)proto_parse_u64(field, &v);
        if (++fields > len + 1)
            abort(); /* the splitter must always advance */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct linebuf lb;
    linebuf_init(&lb, 64 + data[0]);
    size_t frames = 0;
    /* Feed in uneven pieces so frames straddle reads. */
    size_t off = 1;
    size_t step = 1;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        if (linebuf_feed(&lb, (const char *)data + off, n, on_frame, &frames) != 0)
            abort();
        if (linebuf_pending(&lb) >= lb.max_line)
            abort(); /* the limit holds */
        off += n;
        step = step * 3 % 97 + 1;
    }
    linebuf_free(&lb);
    return 0;
}
