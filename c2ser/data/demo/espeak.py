"""Minimal ctypes binding to libespeak-ng as shipped by the PyPI package ``espeakng-loader``.

Only what the demo corpus needs: synchronous synthesis into memory with rate, pitch, pitch range
and word gap set per call.

Determinism: libespeak-ng keeps static state between utterances (pitch flutter phase and the
like), which survives ``espeak_Terminate``/``espeak_Initialize``. The same call then gives
slightly different audio depending on what was spoken before. So every :func:`synthesize` call
loads a private copy of the library, speaks once and unloads it again (about 20 ms), which makes
each utterance depend only on its own arguments. The copy lives in a temporary directory for the
duration of the call only, so nothing is left behind in ``/tmp``. The breathy variants ``f2``,
``f3`` and ``f5`` stay nondeterministic even so, and the demo corpus does not use them.
"""

from __future__ import annotations

import _ctypes
import ctypes
import shutil
import tempfile
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 22_050
_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    pass


@lru_cache(maxsize=1)
def _library_paths() -> tuple[str, bytes]:
    import espeakng_loader

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path().encode()


def synthesize(
    text: str,
    voice: str = "en-us",
    *,
    rate: int = 175,
    volume: int = 100,
    pitch: int = 50,
    range: int = 50,
    wordgap: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak ``text`` -> (float32 waveform in [-1, 1], sample rate 22050).

    ``rate`` in words per minute, ``volume`` 0-200, ``pitch`` and ``range`` 0-99, ``wordgap`` in
    units of 10 ms; ``voice`` is an espeak voice name with an optional variant (``cmn+f3``).
    """
    library, data_path = _library_paths()
    with tempfile.TemporaryDirectory(prefix="c2ser-espeak-") as tmp:
        # a private copy: dlopen of the shared path would share (and keep) its static state
        lib = ctypes.CDLL(shutil.copy(library, tmp))
        try:
            params = dict(rate=rate, volume=volume, pitch=pitch, range=range, wordgap=wordgap)
            chunks = _speak(lib, data_path, text, voice, params)
        finally:
            _ctypes.dlclose(lib._handle)
    if not chunks:
        raise EspeakError(f"espeak produced no audio for {text!r}")
    return np.concatenate(chunks).astype(np.float32) / 32768.0, SAMPLE_RATE


def _speak(
    lib: ctypes.CDLL, data_path: bytes, text: str, voice: str, params: dict[str, int]
) -> list[np.ndarray]:
    """One initialise-speak-terminate cycle of a freshly loaded library; the raw int16 chunks."""
    chunks: list[np.ndarray] = []

    def collect(wav, n, _events):  # espeak calls this for every synthesised chunk
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    if lib.espeak_Initialize(_SYNCHRONOUS, 0, data_path, 0) != SAMPLE_RATE:
        raise EspeakError("espeak_Initialize failed")
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise EspeakError(f"unknown espeak voice {voice!r}")
    for name, value in params.items():
        lib.espeak_SetParameter(_PARAMS[name], int(value), 0)
    buf = text.encode("utf-8") + b"\0"
    err = lib.espeak_Synth(
        buf, ctypes.c_size_t(len(buf)), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
    )
    if err != 0:
        raise EspeakError(f"espeak_Synth failed ({err}) for {text!r}")
    lib.espeak_Synchronize()
    lib.espeak_Terminate()
    return chunks
