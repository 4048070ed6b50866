"""Signals other apps subscribe to; proxies never imports them."""
from django.dispatch import Signal

# Sent after an assignment's egress changed (a new sticky session, another proxy or another
# provider), once the change is committed. Arguments: assignment (ProxyAssignment) and
# reason ("rotated", "proxy_unhealthy", "proxy_disabled"). chips restarts the WAHA session
# named assignment.session_name with services.waha_proxy_config(assignment).
assignment_changed = Signal()
