"""Analytical roofline estimates (issue 16, first part): how long a transformer's prefill and decode
should take on a device, each part bounded by compute (FLOPs / peak x flops efficiency) or memory
(bytes / bandwidth x memory efficiency), whichever is larger. Pure Python: no torch, no numpy.

    models.py     model shapes (LLaMA, Llama 2 with grouped-query attention, ...)
    precision.py  the precision schemes (w16a16e16, w4a16e16, ...): bytes of weights, activations,
                  embeddings and the KV cache
    devices.py    the devices' datasheet figures
    inference.py  prefill and decode latency with their breakdown, memory, the largest batch
    training.py   one training step: forward, backward, AdamW
    seed.py       the published figures the estimates are checked against
    cli.py        ``pytest-llmperf roofline``
"""
