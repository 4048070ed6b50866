"""WAHA-compatible simulator with a fake WhatsApp network (stdlib + qrcode + pypng only)."""

# The versions it answers as: Core imitates the real 2024.10.8 (../shared/waha-core); Plus a
# release whose session proxy takes SOCKS5 too (the free image has Plus features since 2026.6.1).
WAHA_VERSION = "2024.10.8"
PLUS_VERSION = "2026.6.1"
ENGINE_NAME = "WEBJS"
BROWSER = "/usr/bin/chromium"
