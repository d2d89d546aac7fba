"""pytest-llmperf: performance regression testing of LLM workloads as pytest tests."""

__version__ = "0.1.0"
