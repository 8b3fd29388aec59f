/* kafka_conf.c: placeholder while the module is written. */
