/* The transports the loader knows (engine/transport.h): one line per source
 * type and per sink type. */
#include <stddef.h>

#include "../engine/transport.h"

extern const struct ink_source_type ink_source_zmq, ink_source_file, ink_source_kafka;
extern const struct ink_sink_type ink_sink_zmq, ink_sink_file, ink_sink_kafka;
extern const struct ink_source_type ink_source_mqtt;
extern const struct ink_sink_type ink_sink_mqtt;
#ifdef INK_TEST_TRANSPORTS /* test builds only: tests/src_testfd.c */
extern const struct ink_source_type ink_source_testfd;
extern const struct ink_sink_type ink_sink_testfd;
#endif

const struct ink_node_type *const ink_source_types[] = {
    &ink_source_zmq.type,
    &ink_source_file.type,
    &ink_source_kafka.type,
    &ink_source_mqtt.type,
#ifdef INK_TEST_TRANSPORTS
    &ink_source_testfd.type,
#endif
    NULL,
};

const struct ink_node_type *const ink_sink_types[] = {
    &ink_sink_zmq.type,
    &ink_sink_file.type,
    &ink_sink_kafka.type,
    &ink_sink_mqtt.type,
#ifdef INK_TEST_TRANSPORTS
    &ink_sink_testfd.type,
#endif
    NULL,
};
