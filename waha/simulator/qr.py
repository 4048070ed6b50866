"""QR codes: WAHA-like raw values and their PNG rendering (qrcode for the matrix, pypng for the file)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import io

import png
import qrcode

BOX = 8


def raw_value(seed: bytes, index: int) -> str:
    """The raw pairing string for rotation number `index` (shaped like WhatsApp's 'ref,key,key,key')."""

    def part(label: str, size: int) -> str:
        digest = hmac.new(seed, f"{label}:{index}".encode(), hashlib.sha256).digest()
        while len(digest) < size:
            digest += hashlib.sha256(digest).digest()
        return base64.b64encode(digest[:size]).decode()

    ref = "2@" + part("ref", 60).replace("/", "A").replace("+", "B")
    return ",".join([ref, part("noise", 32), part("identity", 32), part("adv", 32)])


def png_bytes(value: str) -> bytes:
    """Render `value` as a black-on-white PNG QR code."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(value)
    code.make(fit=True)
    matrix = code.get_matrix()
    rows = []
    for line in matrix:
        row = []
        for dark in line:
            row.extend([0 if dark else 1] * BOX)
        for _ in range(BOX):
            rows.append(row)
    size = len(matrix) * BOX
    out = io.BytesIO()
    png.Writer(width=size, height=size, greyscale=True, bitdepth=1).write(out, rows)
    return out.getvalue()
