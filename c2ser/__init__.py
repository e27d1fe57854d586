"""c2ser: speech emotion recognition with audio language models (C2SER, Emotion2Vec-S, EmoBox)."""

__version__ = "0.1.0"
