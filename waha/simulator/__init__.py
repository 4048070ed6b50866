"""WAHA-compatible simulator with a fake WhatsApp network (stdlib + qrcode + pypng only)."""

WAHA_VERSION = "2024.10.8"
ENGINE_NAME = "WEBJS"
BROWSER = "/usr/bin/chromium"
