"""llama2.c support: model files, the reference runner, builds and runs of compiled binaries."""
