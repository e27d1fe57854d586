"""The embedded demo corpus (espeak-ng speech with emotion-specific prosody)."""

from c2ser.data.demo.corpus import build_demo_corpus

__all__ = ["build_demo_corpus"]
