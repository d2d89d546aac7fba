"""Native tooling shared by the features, part of the pure core (no pytest): the cache directory
(cache.py), the content-addressed C build cache (build.py) and the node's memory-bandwidth probe
with its node-info file (bandwidth.py, bwprobe.c). llama2c builds its binaries with it, the
profilers their exit-status wrapper, and the torch decode suite's MBU reads the bandwidth."""
