"""Fakes for what we do not own: local HTTP servers speaking the LLM providers' wire formats."""

from .providers import Failure, FakeAnthropic, FakeGemini, FakeOpenAI, FakeProvider, RecordedRequest

__all__ = [
           "Failure",
           "FakeAnthropic",
           "FakeGemini",
           "FakeOpenAI",
           "FakeProvider",
           "RecordedRequest",
]
