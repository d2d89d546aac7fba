"""PyTorch workloads: the transformer LM of the training benchmarks and the Llama-style decoder
of the decoding benchmarks, their device helpers and the profiler wrapper.

Importing this package imports nothing heavy; each module imports torch itself, and the plugin
imports those modules only when a test asks for a torch fixture."""
