/* avro_codec.c: placeholder while the module is written. */
